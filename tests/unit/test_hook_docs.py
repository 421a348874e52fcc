"""Meta-test: every hook is documented in the spec and in docs/hooks.md, and exercised by a test."""

import inspect
import re

import pytest

from tests.conftest import ROOT
from veena.platform import hookspecs

DOCS = (ROOT / "docs" / "hooks.md").read_text()
TESTS = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py")
                  if p.name != "test_hook_docs.py")


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_is_documented_in_spec(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: parameter {param} undocumented"
    assert ":return:" in doc, f"{name}: return undocumented"
    assert "Called" in doc, f"{name}: when/how it is called is undocumented"


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_is_documented_in_docs(name):
    assert f"## `{name}`" in DOCS, f"docs/hooks.md lacks a section for {name}"
    summary = inspect.getdoc(getattr(hookspecs, name)).splitlines()[0]
    assert summary in DOCS, f"docs/hooks.md section of {name} is out of date"


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_has_a_test(name):
    assert re.search(rf"\b{name}\b", TESTS), f"no test mentions {name}"


def test_there_are_hooks_for_every_stage():
    for stage in ("authenticate", "normalize_text", "chunk_text", "synthesize", "process_audio",
                  "encode", "request_finished", "register_codecs", "register_synthesizers",
                  "register_normalizers", "register_speakers"):
        assert f"veena_{stage}" in hookspecs.HOOK_NAMES
