"""Secure by default: without authentication, only a loopback address is served."""

from types import SimpleNamespace

import pluggy
import pytest

from veena.platform import hookspecs
from veena.platform.access import check_open_access
from veena.platform.config import ServerConfig
from veena.platform.errors import ConfigError
from veena.platform.hookspecs import hookimpl


class Auth:
    """Answers ``veena_auth_enforced`` as an auth plugin would."""

    def __init__(self, enforced):
        self.enforced = enforced

    @hookimpl
    def veena_auth_enforced(self, runtime):
        return self.enforced


def runtime(host, enforced=None, allow=False):
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(Auth(None), name="not-an-auth-plugin")  # abstains
    if enforced is not None:
        pm.register(Auth(enforced), name="auth")
    return SimpleNamespace(pm=pm, config=SimpleNamespace(
        server=ServerConfig(host=host, allow_open_access=allow)))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_open_on_loopback_is_allowed_and_logged(host, caplog):
    check_open_access(runtime(host, enforced=False))
    assert "without authentication" in caplog.text


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_open_elsewhere_is_refused(host):
    with pytest.raises(ConfigError, match="allow_open_access"):
        check_open_access(runtime(host, enforced=False))
    with pytest.raises(ConfigError):
        check_open_access(runtime(host))  # no auth plugin at all


def test_explicitly_opened_or_keys_required():
    check_open_access(runtime("0.0.0.0", enforced=False, allow=True))
    check_open_access(runtime("0.0.0.0", enforced=True))
