"""Maps the repository's top-level folders onto the ``veena`` package.

``platform/`` and ``codecs/`` share names with standard-library modules, so they carry no
``__init__.py`` of their own and install as ``veena.platform`` and ``veena.codecs``; from the
repository root ``import platform`` and ``import codecs`` still give the standard library.
"""

from pathlib import Path

from setuptools import setup

ROOTS = {"platform": "veena.platform", "codecs": "veena.codecs",
         "plugins": "veena.plugins", "speakers": "veena.speakers", "testing": "veena.testing"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder, name in ROOTS.items():
        package_dir[name] = folder
        for path in sorted(Path(folder).rglob("*.py")):
            rel = path.parent.relative_to(folder).parts
            if "__pycache__" in rel:
                continue
            pkg = ".".join((name, *rel))
            if pkg not in packages:
                packages.append(pkg)
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"veena.speakers": ["voices/*.toml"], "veena.platform": ["migrations/*.sql"],
                  "veena.plugins.page": ["static/*"]},
    include_package_data=False,
)
