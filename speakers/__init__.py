"""The speaker catalog: one TOML file a voice, and the resolver that maps names to speakers."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from veena.platform.errors import ConfigError, invalid_choice

VOICES_DIR = Path(__file__).parent / "voices"


class Speaker(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One voice: its public name and, per synthesizer, the settings that realise it."""

    name: str
    aliases: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    gender: str = ""
    description: str = ""
    synthesizers: dict[str, dict[str, Any]] = {}

    def settings(self, synthesizer: str) -> dict[str, Any]:
        """This voice's settings for ``synthesizer`` (empty when it has none)."""
        return self.synthesizers.get(synthesizer, {})


def load_speaker(path: Path) -> Speaker:
    """Decodes one voice file; raises ConfigError naming the file and key on bad content."""
    try:
        return msgspec.convert(tomllib.loads(path.read_text("utf-8")), Speaker)
    except (msgspec.ValidationError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_catalog(folder: Path = VOICES_DIR) -> list[Speaker]:
    """All voices in ``folder``, sorted by file name."""
    return [load_speaker(p) for p in sorted(folder.glob("*.toml"))]


class SpeakerCatalog:
    """Resolves speaker names and aliases case-insensitively; rejects clashing names."""

    def __init__(self, speakers: Iterable[Speaker] = ()) -> None:
        self._by_name: dict[str, Speaker] = {}
        self._lookup: dict[str, Speaker] = {}
        for speaker in speakers:
            self.add(speaker)

    def add(self, speaker: Speaker) -> None:
        for key in (speaker.name, *speaker.aliases):
            k = key.strip().lower()
            if k in self._lookup:
                raise ConfigError(
                    f"speaker name {key!r} of {speaker.name!r} is already used by "
                    f"{self._lookup[k].name!r}")
            self._lookup[k] = speaker
        self._by_name[speaker.name.lower()] = speaker

    def resolve(self, name: str) -> Speaker:
        """The speaker called ``name`` (or an alias); 400 ``unknown_speaker`` otherwise."""
        speaker = self._lookup.get(name.strip().lower())
        if speaker is None:
            raise invalid_choice("unknown_speaker", "speaker", name, self.names())
        return speaker

    def names(self) -> list[str]:
        return sorted(s.name for s in self._by_name.values())

    def __iter__(self):
        return iter(sorted(self._by_name.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._by_name)
