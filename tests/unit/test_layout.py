"""The folders install as veena.* and never shadow the standard library."""

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def _run(code: str, cwd=ROOT) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_stdlib_platform_and_codecs_win_from_repository_root():
    # "-c" puts the current directory (the repository root) first on sys.path.
    out = _run("import platform, codecs; print(platform.__file__); print(codecs.__file__); "
               "print(platform.system()); print(codecs.lookup('utf-8').name)")
    lines = out.splitlines()
    assert "/lib/python3" in lines[0] and lines[0].endswith("platform.py")
    assert "/lib/python3" in lines[1] and lines[1].endswith("codecs.py")
    assert lines[2] == "Linux" and lines[3] == "utf-8"


def test_project_packages_import_under_veena():
    out = _run("import veena.platform.app, veena.codecs.base, veena.plugins.core, veena.speakers;"
               "print(veena.platform.app.__file__)")
    assert out.startswith(str(ROOT / "platform"))


def test_wheel_contains_veena_packages(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("veena-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "veena/platform/app.py" in names
    assert "veena/codecs/base.py" in names
    assert "veena/speakers/voices/kavya.toml" in names
    assert not any(n.startswith(("platform/", "codecs/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "[veena]" in zipfile.ZipFile(wheel).read(entry_points).decode()
