"""From a plan `Endpoint` to a ready `DatabrainClient`: URL policy, token, embedded sandbox.

`sandbox://NAME` runs the sandbox app in-process on a seeded SQLite database kept in the state
directory, so a newcomer needs no account and no token, and a second run sees the first one's
imports. Every other URL must be https, or http to a loopback host, unless the user explicitly
allows plain http.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from migrate.client import ClientOptions, DatabrainClient
from migrate.credentials import read_token
from migrate.errors import InsecureURLError, PlanError
from migrate.models import SANDBOX_SCHEME, ConnectionPolicy, Endpoint
from migrate.retry import Pacer
from migrate.storage import PRIVATE_FILE, ensure_private_dir
from migrate.transport import asgi_transport

__all__ = ["ConnectionPolicy", "check_url", "embedded_app", "is_loopback", "open_client"]

_embedded_apps: dict[Path, Any] = {}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_insecure_http: bool, origin: str = "the plan") -> None:
    """Refuse URLs this tool will not send a token to; InsecureURLError (exit 3) says why."""
    if url.startswith(SANDBOX_SCHEME):
        if not url.removeprefix(SANDBOX_SCHEME).strip("/"):
            raise PlanError(
                f"{url!r} names no sandbox", hint="use sandbox://NAME, e.g. sandbox://demo"
            )
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanError(
            f"URL {url!r} in {origin} is not an http(s) URL",
            hint="use https://api.usedatabrain.com, your self-hosted https URL, or sandbox://demo",
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise InsecureURLError(
            f"refusing plain http to {parts.hostname}: the service token would cross the"
            " network unencrypted",
            hint="use https, or pass --allow-insecure-http if this network is trusted",
        )


def embedded_app(state_dir: Path, name: str) -> Any:
    """The in-process sandbox app for `sandbox://name`, one per database file in this process."""
    from migrate.sandbox import SandboxConfig, create_app  # noqa: PLC0415  # only sandbox:// runs need it

    ensure_private_dir(state_dir)
    db = (ensure_private_dir(state_dir / "sandbox") / f"{name}.db").resolve()
    if db not in _embedded_apps:
        # Created owner-only before SQLite opens it; SQLite gives its -wal/-shm files the same mode.
        os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE))
        _embedded_apps[db] = create_app(SandboxConfig(db_path=db, seed="demo"))
    return _embedded_apps[db]


def open_client(
    endpoint: Endpoint,
    *,
    policy: ConnectionPolicy,
    options: ClientOptions | None = None,
    pacer: Pacer | None = None,
) -> DatabrainClient:
    """A client for `endpoint`; raises PlanError for a refused URL, AuthError for no token."""
    check_url(endpoint.url, allow_insecure_http=policy.allow_insecure_http)
    options = options or ClientOptions()
    options = dataclasses.replace(
        options, retry=dataclasses.replace(options.retry, retry_after_cap_s=policy.max_wait_s)
    )
    if endpoint.is_sandbox:
        from migrate.sandbox import DEFAULT_TOKEN  # noqa: PLC0415  # only sandbox:// runs need it

        name = endpoint.url.removeprefix(SANDBOX_SCHEME).strip("/")
        return DatabrainClient(
            f"http://{name}.sandbox.invalid",
            DEFAULT_TOKEN,
            token_source="the embedded sandbox",  # noqa: S106  # a description, not a token
            transport=asgi_transport(embedded_app(policy.state_dir, name)),
            options=options,
            pacer=pacer,
        )
    token = read_token(endpoint)
    verify: str | bool = True
    if policy.ca_bundle:
        verify = str(policy.ca_bundle)
    elif os.environ.get("SSL_CERT_FILE"):
        verify = os.environ["SSL_CERT_FILE"]
    return DatabrainClient(
        endpoint.url,
        token.value,
        token_source=token.source,
        options=dataclasses.replace(options, verify=verify),
        pacer=pacer,
    )
