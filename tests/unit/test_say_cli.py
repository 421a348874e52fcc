"""``veena say`` prints one summary line; the server's warnings only with ``--verbose``."""

import subprocess
import sys
import wave


def _say(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "veena.platform.cli", "say", "Hello there.",
                           "-o", str(tmp_path / "out.wav"), *extra],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "VEENA_DATA_DIR": str(tmp_path / "data")})


def test_say_is_quiet_unless_verbose(tmp_path):
    quiet = _say(tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    (line,) = quiet.stderr.strip().splitlines()
    assert " s of wav at 22050 Hz (kavya, " in line
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getnframes() > 10000
    loud = _say(tmp_path, "--verbose")
    assert "REDIS_URL" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == line
