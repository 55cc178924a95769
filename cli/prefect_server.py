"""Prefect's temporary server, started while a command that runs flows still imports them.

With no `PREFECT_API_URL`, the first flow run starts Prefect's temporary (ephemeral) server and waits for it: about
4 s on a 2-core machine, most of it the server process importing Prefect. `prestart()` starts that same server
(Prefect's own `SubprocessASGIServer`, which the flow engine then finds running) on a background thread as soon as
the command's config has passed its checks, so the server comes up on the other core while the command imports the
flows; the command joins the thread before the first flow. If the start fails, the flow engine starts the server
itself as it always does and reports the error.
"""

from __future__ import annotations

import threading


def prestart() -> threading.Thread | None:
    """Start the temporary server in the background where a flow would start one (no PREFECT_API_URL); the thread
    to join before the first flow, or None."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    thread = threading.Thread(target=_start_ephemeral_server, name="prefect-server-start", daemon=True)
    thread.start()
    return thread


def _start_ephemeral_server() -> None:
    from prefect.server.api.server import SubprocessASGIServer

    try:
        SubprocessASGIServer().start()
    except Exception:  # noqa: BLE001  the flow engine starts it again and raises what went wrong
        pass
