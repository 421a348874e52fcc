"""Built-in plugins, one folder each, registered through the ``veena`` entry-point group."""
