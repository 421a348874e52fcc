"""The admin API: what ``veena keys`` and ``veena db export`` do, over HTTP, for admin keys.

Routes under ``/v1/admin`` (``routes.py``) create, list, revoke and credit keys, read a key's
usage for a period (JSON or CSV) and export stored sentences for a period (JSON or CSV). They
run ``veena.plugins.auth.operations``, the code the CLI runs, on the stores the auth and
storage plugins opened. A key needs the ``admin`` scope (or ``*``): none is a 401, another key
a 403 ``insufficient_scope``, even while the service is otherwise open. Every action, and every
refusal, is an audit log line (``veena.audit``): who (key id and prefix), what, never a secret.
"""

from __future__ import annotations

from veena.platform.hookspecs import hookimpl
from veena.platform.runtime import Runtime


@hookimpl
def veena_register_routes(runtime: Runtime):
    from veena.plugins.admin.routes import HANDLERS

    return HANDLERS
