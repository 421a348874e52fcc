"""Contract suites a third party runs on its own implementations (``veena.testing.stores``)."""
