"""Format-name parsing and the codec catalog's metadata."""

from __future__ import annotations

import pluggy
import pytest

from veena.codecs.base import Codec, default_rate
from veena.codecs.catalog import CODECS
from veena.codecs.formats import parse_format


@pytest.mark.parametrize(("text", "expected"), [
    ("mp3", ("mp3", None, None)),
    ("opus", ("opus", None, None)),
    ("aac", ("aac", None, None)),
    ("flac", ("flac", None, None)),
    ("wav", ("wav", None, None)),
    ("pcm", ("pcm", None, None)),
    ("mp3_44100_128", ("mp3", 44100, 128_000)),
    ("mp3_22050_32", ("mp3", 22050, 32_000)),
    ("pcm_16000", ("pcm", 16000, None)),
    ("pcm_44100", ("pcm", 44100, None)),
    ("ulaw_8000", ("ulaw", 8000, None)),
    ("alaw_8000", ("alaw", 8000, None)),
    ("opus_48000_64", ("opus", 48000, 64_000)),
    ("  MP3_44100_192 ", ("mp3", 44100, 192_000)),
    ("Opus", ("opus", None, None)),
    ("g711_ulaw", ("g711_ulaw", None, None)),
    ("g711_alaw_8000", ("g711_alaw", 8000, None)),
    ("pcm_mulaw", ("pcm_mulaw", None, None)),
    # Pure parsing: unknown names and odd rates pass through for the caller to reject.
    ("vorbis_44100", ("vorbis", 44100, None)),
    ("mp3_123", ("mp3", 123, None)),
    ("mp3_", ("mp3_", None, None)),
    ("", ("", None, None)),
])
def test_parse_format(text, expected):
    assert parse_format(text) == expected


def test_catalog_has_the_eight_formats_with_their_media_types():
    media = {c.name: c.media_type for c in CODECS}
    assert media == {
        "wav": "audio/wav", "pcm": "audio/pcm", "mulaw": "audio/basic",
        "alaw": "audio/x-alaw-basic", "opus": "audio/ogg; codecs=opus", "mp3": "audio/mpeg",
        "flac": "audio/flac", "aac": "audio/aac"}
    assert all(isinstance(c, Codec) for c in CODECS)


def test_names_and_aliases_are_unique_lowercase_and_resolve():
    names = [n for c in CODECS for n in (c.name, *c.aliases)]
    assert len(names) == len(set(names))
    assert all(n == n.lower() for n in names)
    aliases = {a: c.name for c in CODECS for a in c.aliases}
    for alias, name in {"ulaw": "mulaw", "g711_ulaw": "mulaw", "pcm_mulaw": "mulaw",
                        "g711_alaw": "alaw", "ogg": "opus", "adts": "aac", "mpeg": "mp3"}.items():
        assert aliases[alias] == name


def test_every_parsed_elevenlabs_format_is_served():
    by_name = {n: c for c in CODECS for n in (c.name, *c.aliases)}
    for text in ("mp3_22050_32", "mp3_44100_128", "mp3_44100_192", "pcm_16000", "pcm_22050",
                 "pcm_24000", "pcm_44100", "ulaw_8000", "alaw_8000", "opus_48000_64"):
        name, rate, _ = parse_format(text)
        assert rate in by_name[name].sample_rates, text


def test_sample_rates_and_defaults():
    codecs = {c.name: c for c in CODECS}
    assert codecs["opus"].sample_rates == (8000, 12000, 16000, 24000, 48000)
    assert codecs["mulaw"].default_sample_rate == codecs["alaw"].default_sample_rate == 8000
    assert set(codecs["mulaw"].sample_rates) == {8000, 16000}
    for name in ("wav", "pcm", "flac", "opus", "mp3", "aac"):
        assert codecs[name].default_sample_rate is None
    for name in ("wav", "pcm", "flac", "opus", "mp3", "aac"):
        assert 16000 in codecs[name].sample_rates and 24000 in codecs[name].sample_rates


def test_plugin_registers_all_codecs_through_the_hook():
    import veena.plugins.codecs
    from veena.platform import hookspecs
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(veena.plugins.codecs, name="codecs")
    [registered] = pm.hook.veena_register_codecs(runtime=None)
    assert sorted(c.name for c in registered) == sorted(
        ["wav", "pcm", "mulaw", "alaw", "opus", "mp3", "flac", "aac"])


@pytest.mark.parametrize(("name", "voice_rate", "rate"), [
    ("wav", 16000, 16000), ("wav", 22050, 22050), ("flac", 48000, 48000),
    ("opus", 22050, 24000), ("opus", 44100, 48000), ("opus", 96000, 48000),
    # mp3 and aac frames are long: below their floors the lag would pass 100 ms.
    ("mp3", 16000, 24000), ("mp3", 22050, 24000), ("mp3", 48000, 48000),
    ("aac", 16000, 32000), ("aac", 24000, 32000), ("aac", 44100, 44100),
    # G.711 is 8 kHz unless asked otherwise, whatever the voice.
    ("mulaw", 16000, 8000), ("alaw", 48000, 8000)])
def test_default_rate(name, voice_rate, rate):
    assert default_rate({c.name: c for c in CODECS}[name], voice_rate) == rate
