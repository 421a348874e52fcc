"""Decodes any output format back to mono float samples with PyAV, for assertions: the decoder
third parties get with the codec contract suite (``veena.testing.codecs``)."""

from veena.testing.codecs import RAW_DEMUXERS, decode

__all__ = ["RAW_DEMUXERS", "decode"]
