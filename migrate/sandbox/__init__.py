"""A local, Databrain-compatible server for rehearsals and tests (docs/contract.md A6).

    create_app(SandboxConfig(db_path=":memory:", seed="demo"))  -> Starlette app
    serve(config, host, port)                                     -> blocking uvicorn server
    running_server(config)                                        -> context manager: base URL

`app.state.sandbox` is the `Sandbox`: direct data access, runtime fault knobs (`faults`,
`modes`) and statistics (`write_count`, `request_log`, `max_in_flight`). Embed calls take a
data app's API key (`SandboxConfig.data_apps`; the demo seed's are `DEMO_DATA_APPS`), the
other calls the service token. Shares only `migrate.models` and `migrate.errors` with the rest
of the project.
"""

from __future__ import annotations

from migrate.sandbox.app import create_app
from migrate.sandbox.config import (
    DEFAULT_TOKEN,
    EMBED_ID_SCHEMES,
    SandboxConfig,
    parse_data_app,
    parse_rate_limit,
)
from migrate.sandbox.faults import ConnectionDropped, Faults
from migrate.sandbox.seed import (
    DEMO_DATA_APPS,
    DEMO_DATASOURCES,
    NEXT_CHANGED,
    NEXT_WORKSPACE,
    SOURCE_WORKSPACE,
    TARGET_WORKSPACES,
    generate_workspace,
)
from migrate.sandbox.server import running_server, serve
from migrate.sandbox.state import Modes, RequestRecord, Sandbox

__all__ = [
    "DEFAULT_TOKEN",
    "DEMO_DATASOURCES",
    "DEMO_DATA_APPS",
    "EMBED_ID_SCHEMES",
    "NEXT_CHANGED",
    "NEXT_WORKSPACE",
    "SOURCE_WORKSPACE",
    "TARGET_WORKSPACES",
    "ConnectionDropped",
    "Faults",
    "Modes",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "create_app",
    "generate_workspace",
    "parse_data_app",
    "parse_rate_limit",
    "running_server",
    "serve",
]
