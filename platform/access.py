"""Secure by default: whether this process may serve without authentication where it is bound."""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from veena.platform.errors import ConfigError

if TYPE_CHECKING:
    from veena.platform.runtime import Runtime

log = logging.getLogger("veena.app")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_open_access(runtime: Runtime) -> None:
    """Secure by default: unless a plugin enforces authentication (``veena_auth_enforced``:
    no API key exists, or no auth plugin), serve only on a loopback address, unless
    ``server.allow_open_access`` says otherwise.

    :raises ConfigError: bound elsewhere without authentication and without that setting.
    """
    if any(runtime.pm.hook.veena_auth_enforced(runtime=runtime)):
        return
    server = runtime.config.server
    if _is_loopback(server.host):
        log.warning("no API key is configured: serving without authentication on %s "
                    "(loopback only)", server.host)
        return
    if server.allow_open_access:
        log.warning("serving WITHOUT authentication on %s (server.allow_open_access = true)",
                    server.host)
        return
    message = (f"refusing to serve without authentication on {server.host}: create an API key "
               "(`veena keys create --owner NAME`) or set `server.allow_open_access = true`")
    log.error(message)
    raise ConfigError(message)
