"""Running the sandbox app under uvicorn: `serve` (blocking, for `migrate sandbox`) and
`running_server` (a background thread, for end-to-end tests). Both bind loopback by default.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette

from migrate.sandbox.app import create_app
from migrate.sandbox.config import SandboxConfig

log = logging.getLogger("migrate.sandbox")


def _log_config() -> dict[str, Any]:
    # uvicorn's own config plus our logger; uvicorn's start-up chatter is dropped in favour of
    # our single line, its errors (tracebacks of dropped connections included) are kept.
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["uvicorn"]["level"] = "WARNING"
    config["loggers"]["migrate.sandbox"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets whose protocol
    # says TCP, and an accepted connection takes the listener's. With it on, an answer written
    # in two small parts (head, then body: every import's) waited ~40 ms for the client's
    # delayed ACK, so the sandbox answered in latency + 40 ms, not latency.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(app: Starlette, *, quiet: bool) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_config=None if quiet else _log_config(),
        log_level="warning" if quiet else None,
        access_log=False,  # the request log lives on Sandbox.request_log
        lifespan="off",
        server_header=False,
    )
    return uvicorn.Server(config)


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve the sandbox until interrupted (Ctrl-C / SIGTERM).

    Logs one line naming the URL and the database, never the token. `port=0` picks a free port.
    """
    app = create_app(config)
    sock = _bind(host, port)
    server = _server(app, quiet=False)
    logging.config.dictConfig(_log_config())
    workspaces = ", ".join(app.state.sandbox.workspaces()) or "none"
    log.info(
        "Databrain sandbox on %s (db %s; workspaces: %s)",
        _url(host, sock),
        config.db_path,
        workspaces,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        app.state.sandbox.close()


@contextmanager
def running_server(
    app_or_config: Starlette | SandboxConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Run the sandbox in a background thread; yields its base URL, stops it on exit.

    Pass an app to keep a handle on `app.state.sandbox`. Port 0 (default) picks a free port.
    """
    app = app_or_config if isinstance(app_or_config, Starlette) else create_app(app_or_config)
    sock = _bind(host, port)
    server = _server(app, quiet=True)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.005)
        yield _url(host, sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
