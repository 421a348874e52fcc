"""The pronunciation lexicon: operators' word lists and a request's ``pronunciations`` say how
names, brands and terms are spoken, before the rule engine reads numbers and symbols.

Normalizer ``lexicon`` (order 30: after ``unicode``, before ``text``). See
docs/text-processing.md ("Pronunciation lexicon").
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import msgspec

from veena.platform.hookspecs import hookimpl
from veena.platform.job import Job
from veena.platform.runtime import Runtime
from veena.platform.schemas import Pronunciation
from veena.platform.textmap import record
from veena.plugins.lexicon.files import LexiconFile
from veena.plugins.lexicon.matcher import Entry, Matcher
from veena.plugins.lexicon.rewrite import Edit, EditMap, Layer, apply_edits, find_edits
from veena.plugins.normalize.engine import Languages
from veena.plugins.normalize.script import language_hint

log = logging.getLogger("veena.lexicon")
PLUGIN = "lexicon"


class FileConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One ``[[plugins.lexicon.files]]`` table."""

    path: str
    """A ``.toml`` file, or ``word<TAB>spoken form`` lines (any other suffix); relative paths
    are taken from the server's working directory."""
    language: Literal["en", "hi", "te"] | None = None
    """Only sentences in this language (by script, as the ``text`` normalizer decides); none:
    every sentence."""
    case_sensitive: bool = False
    """The file's default; a TOML entry or a TSV third column can say otherwise."""


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """``[plugins.lexicon]``"""

    files: list[FileConfig] = []
    """Lexicon files; language-bound ones are looked at before those for every language, each
    group in the order listed. A request's ``pronunciations`` come before all of them."""


class LexiconNormalizer:
    """Normalizer ``lexicon``: whole-word replacements from the request, then from the files."""

    name = "lexicon"
    order = 30

    def __init__(self, config: Config | None = None) -> None:
        config = config or Config()
        files = [LexiconFile(f.path, f.language, f.case_sensitive) for f in config.files]
        self.files = [f for f in files if f.language] + [f for f in files if not f.language]
        self._requests: OrderedDict[tuple[Pronunciation, ...], Matcher] = OrderedDict()

    def normalize(self, text: str, job: Job) -> str:
        try:
            edits = self.edits(text, job.pronunciations, job.language)
        except Exception:  # a normalizer never fails a request: the text goes on as it is
            log.warning("lexicon failed; text left as it was", exc_info=True)
            return text
        if not edits:
            return text
        out = apply_edits(text, edits)
        # the exact map of this step, so word times of a spoken form name the word it replaced
        record(job.state, text, out, EditMap(text, edits))
        return out

    def edits(self, text: str, pronunciations: Sequence[Pronunciation] = (),
              language: str | None = None) -> list[Edit]:
        """The replacements for ``text``: the request's entries first, then the files'."""
        layers = [Layer(f.current(), f.language) for f in self.files]
        if pronunciations:
            layers.insert(0, Layer(self._request_matcher(tuple(pronunciations))))
        if not any(layer.matcher for layer in layers):
            return []
        langs = Languages(text, language_hint(language), "en")
        return find_edits(text, layers, langs.at)

    def _request_matcher(self, key: tuple[Pronunciation, ...]) -> Matcher:
        """Compiled once per distinct list (a WebSocket session sends the same one with every
        segment); the 128 most recent are kept."""
        matcher = self._requests.get(key)
        if matcher is None:
            matcher = Matcher(Entry(p.word, p.spoken, p.case_sensitive) for p in key)
            self._requests[key] = matcher
            if len(self._requests) > 128:
                self._requests.popitem(last=False)
        else:
            self._requests.move_to_end(key)
        return matcher


@hookimpl
def veena_register_normalizers(runtime: Runtime):
    return [LexiconNormalizer(runtime.plugin_config(PLUGIN))]
