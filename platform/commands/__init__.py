"""Sub-commands of ``veena`` beyond the core ones; every module here is loaded by the CLI.

A module registers its commands with ``veena.platform.cli.command``.
"""
