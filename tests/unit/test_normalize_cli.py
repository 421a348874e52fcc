"""``veena normalize`` and a third-party normalizer from a real installed distribution.

A throwaway distribution (``veena-percent``) is built into a wheel and installed into a folder
that only the ``veena`` subprocesses see (``PYTHONPATH``); its entry point registers a
normalizer that reads "%" the British way, "per cent". Where it runs relative to the built-in
``text`` normalizer is decided by ``[stages] normalizers`` alone: before it, "50%" becomes
"fifty per cent"; after it, the built-in has already said "fifty percent".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.thirdparty import build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with the throwaway distribution veena-percent installed from its wheel."""
    return build_site(tmp_path_factory.mktemp("thirdparty"))


def veena(site: Path, tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "veena.toml"
    cfg.write_text(textwrap.dedent(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "veena.platform.cli", "normalize", *args,
                           "--config", str(cfg)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


QUIET = 'disable = ["espeak"]\n[stages]\nsynthesizer = "quiet"\n'
"""The silent voice; no other needs to be installed or started."""


@pytest.mark.parametrize(("order", "expected"), [
    ('["unicode", "percent", "text"]', "Sale: fifty per cent off"),
    ('["unicode", "text", "percent"]', "Sale: fifty percent off"),
    ("[]", "Sale: fifty percent off"),  # unlisted third-party normalizers run after built-ins
])
def test_third_party_normalizer_runs_where_config_puts_it(site, tmp_path, order, expected):
    out = veena(site, tmp_path, QUIET + f"normalizers = {order}\n", "Sale: 50% off")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_cli_prints_normalized_text_in_the_language_around_it(site, tmp_path):
    out = veena(site, tmp_path, QUIET, "₹2,50,000 की कीमत है।", "--lang", "te")  # script wins
    assert out.stdout.strip() == "दो लाख पचास हज़ार रुपये की कीमत है।", out.stderr


def test_cli_prints_chunks_one_a_line(site, tmp_path):
    config = QUIET + "[plugins.chunk]\nmin_chars = 0\nshort_chars = 0\n"
    out = veena(site, tmp_path, config, "Dr. Rao paid ₹500. <laugh> Then he left! वह गया।",
                "--chunks")
    assert out.stdout.splitlines() == ["Doctor Rao paid five hundred rupees.",
                                       "<laugh> Then he left!", "वह गया।"], out.stderr


def test_cli_follows_the_config_switches(site, tmp_path):
    out = veena(site, tmp_path, QUIET + '[defaults]\nnormalize = false\n', "Sale: 50% off")
    assert out.stdout.strip() == "Sale: 50% off", out.stderr
    out = veena(site, tmp_path, QUIET + '[plugins.normalize]\nunknown_tags = "keep"\n',
                "<Stage Left> Hi [laughs]")
    assert out.stdout.strip() == "<stage_left> Hi <laugh>", out.stderr


def test_cli_lexicon_flag_shows_its_effect(site, tmp_path):
    (tmp_path / "names.tsv").write_text("Veena\tवीणा\nAI\tA I\tcase_sensitive\n",
                                        encoding="utf-8")
    (tmp_path / "more.toml").write_text('[words]\n"Dr. Rao" = "Daktar Raao"\n',
                                        encoding="utf-8")
    text = "Veena AI and ai: Dr. Rao paid ₹5."
    plain = veena(site, tmp_path, QUIET, text)
    assert plain.stdout.strip() == "Veena AI and ai: Doctor Rao paid five rupees.", plain.stderr
    out = veena(site, tmp_path, QUIET, text, "--lexicon", "names.tsv", "--lexicon", "more.toml")
    assert out.stdout.strip() == "वीणा A I and ai: Daktar Raao paid five rupees.", out.stderr
    # the flag adds to the files of the config, it does not replace them
    config = QUIET + f'[[plugins.lexicon.files]]\npath = "{tmp_path / "names.tsv"}"\n'
    out = veena(site, tmp_path, config, text, "--lexicon", "more.toml")
    assert out.stdout.strip() == "वीणा A I and ai: Daktar Raao paid five rupees.", out.stderr
    missing = veena(site, tmp_path, QUIET, text, "--lexicon", "nope.tsv")
    assert missing.returncode == 2 and "nope.tsv" in missing.stderr
