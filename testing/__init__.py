"""Contract suites a third party runs on its own implementations: ``veena.testing.codecs``
(``CodecContract``), ``veena.testing.synthesizers`` (``SynthesizerContract``) and
``veena.testing.stores`` (key store, credit ledger, sentence store)."""
