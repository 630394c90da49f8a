"""From a plan `Endpoint` to a ready `DatabrainClient`: URL policy, token, embedded sandbox.

`sandbox://NAME` runs the sandbox app in-process on a seeded SQLite database kept in the state
directory, so a newcomer needs no account and no token, and a second run sees the first one's
imports. Every other URL must be https, or http to a loopback host, unless the user explicitly
allows plain http.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import re
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from migrate.client import ClientOptions, DataAppClient, DatabrainClient
from migrate.credentials import Token, read_data_app_key, read_token, register_secret
from migrate.errors import EndpointError, InsecureURLError, PlanError, UsageError
from migrate.models import SANDBOX_SCHEME, ConnectionPolicy, Endpoint
from migrate.retry import Pacer
from migrate.storage import PRIVATE_FILE, NotRegularFileError, ensure_private_dir, file_kind
from migrate.transport import Transport, asgi_transport

__all__ = [
    "ConnectionPolicy",
    "canonical_url",
    "check_url",
    "embedded_app",
    "is_loopback",
    "open_client",
    "open_data_app",
    "sandbox_name",
    "target_key",
]

_embedded_apps: dict[Path, Any] = {}


_SANDBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The spellings the C resolver reads as IPv4 (inet_aton): 127.1, 0x7f.0.0.1, 2130706433.
_NUMERIC_HOST = re.compile(r"[0-9][0-9A-Fa-fXx.]*")


def _ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells, as the system resolver would read it; None for a name."""
    host = host.strip("[]").partition("%")[0]  # an IPv6 zone id does not change the address
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and every spelling of a loopback address.

    127.0.0.0/8 in any form the resolver accepts (`127.1`, `0x7f.1`, `2130706433`), `::1`, and
    IPv4-mapped loopback (`::ffff:127.0.0.1`).
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _ip_of(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _shown(url: str) -> str:
    """`url` fit for a message: any `user:password@` replaced by `***@`."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}" if sep else url


def sandbox_name(url: str, *, origin: str = "the plan") -> str:
    """The NAME of `sandbox://NAME`; PlanError unless it is a plain name.

    The name becomes a file name in the state directory, so `..`, slashes and dots are refused:
    `sandbox://../../x` would otherwise create a database outside it.
    """
    name = url.removeprefix(SANDBOX_SCHEME).strip("/")
    if not name:
        raise PlanError(
            f"{url!r} in {origin} names no sandbox", hint="use sandbox://NAME, e.g. sandbox://demo"
        )
    if not _SANDBOX_NAME.fullmatch(name):
        raise PlanError(
            f"sandbox name {name!r} in {origin} is not a plain name",
            hint="use letters, digits, - and _ only (at most 64), e.g. sandbox://demo",
        )
    return name


def check_url(url: str, *, allow_insecure_http: bool, origin: str = "the plan") -> None:
    """Refuse URLs this tool will not send a token to; PlanError (exit 3) says why.

    Refused: anything but http(s) and `sandbox://NAME`, a URL carrying `user:password@` (the
    message never repeats the password, which is also redacted from later output), a port
    outside 1-65535, and (InsecureURLError) plain http to a host that is not loopback.
    """
    if url.startswith(SANDBOX_SCHEME):
        sandbox_name(url, origin=origin)
        return
    shown = _shown(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        if "@" in url.partition("://")[2].partition("/")[0]:
            _refuse_userinfo(url, shown, origin)
        what = str(exc).replace("Port out of range 0-65535", "its port is outside 1-65535")
        raise PlanError(
            f"URL {shown!r} in {origin} cannot be used: {what}",
            hint="write it as https://HOST[:PORT][/PATH], a port from 1 to 65535",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanError(
            f"URL {shown!r} in {origin} is not an http(s) URL",
            hint="use https://api.usedatabrain.com, your self-hosted https URL, or sandbox://demo",
        )
    if "@" in parts.netloc:
        _refuse_userinfo(url, shown, origin)
    if port == 0:
        raise PlanError(
            f"URL {shown!r} in {origin} cannot be used: port 0 is not a port to connect to",
            hint="use a port from 1 to 65535, or none for the scheme's default",
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise InsecureURLError(
            f"refusing plain http to {parts.hostname}: the service token would cross the"
            " network unencrypted",
            hint="use https, or pass --allow-insecure-http if this network is trusted",
        )


def _refuse_userinfo(url: str, shown: str, origin: str) -> NoReturn:
    userinfo = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
    register_secret(userinfo.partition(":")[2])  # whatever prints the URL later redacts it
    raise PlanError(
        f"URL {shown!r} in {origin} carries a user name and password; they are never sent",
        hint="remove `user:password@` from the URL: the service token comes from token_env or"
        " token_file",
    )


def canonical_url(url: str) -> str:
    """One spelling per target, for keying locks, journals and history; never for connecting.

    Scheme and host lowercased; every loopback spelling (`127.0.0.1`, `127.1`, `::1`,
    `localhost.`) becomes `localhost`; an address in its standard form; the scheme's default
    port and trailing slashes dropped, as are user info and fragment. `sandbox://NAME/` becomes
    `sandbox://NAME`. A URL that does not parse comes back as written, less any user info.
    """
    if url.startswith(SANDBOX_SCHEME):
        return SANDBOX_SCHEME + url.removeprefix(SANDBOX_SCHEME).strip("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _shown(url)
    host = parts.hostname
    if host is None:
        return _shown(url)
    address = _ip_of(host)
    if is_loopback(host):
        host = "localhost"
    elif isinstance(address, ipaddress.IPv6Address):
        host = f"[{address.compressed}]"
    elif address is not None:
        host = str(address)
    else:
        host = host.rstrip(".")
    netloc = host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def target_key(endpoint: Endpoint) -> str:
    """The key of one target (URL + workspace) for its lock, journal and history."""
    return f"{canonical_url(endpoint.url)}#{endpoint.workspace}"


def embedded_app(state_dir: Path, name: str) -> Any:
    """The in-process sandbox app for `sandbox://name`, one per database file in this process."""
    from migrate.sandbox import SandboxConfig, create_app  # noqa: PLC0415  # only sandbox:// runs need it

    name = sandbox_name(SANDBOX_SCHEME + name)  # a file name: never `..` or a path
    ensure_private_dir(state_dir)
    db = (ensure_private_dir(state_dir / "sandbox") / f"{name}.db").resolve()
    if db not in _embedded_apps:
        # Created owner-only before SQLite opens it; SQLite gives its -wal/-shm files the same mode.
        os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE))
        _embedded_apps[db] = create_app(SandboxConfig(db_path=db, seed="demo"))
    return _embedded_apps[db]


def _ca_file(path: str, origin: str, url: str) -> str:
    """`path` once it is known to hold CA certificates; else a clean error naming it.

    A bad `--ca-bundle` is a usage error (exit 2); a bad `SSL_CERT_FILE` leaves the endpoint
    unusable before any work (EndpointError, exit 5). Only a regular file is loaded: a device
    such as /dev/zero would never end.
    """
    try:
        mode = Path(path).stat().st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"it is a {file_kind(mode)}")
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        problem = "it holds no PEM certificate"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    else:
        return path
    message = f"{origin} {path} cannot be used as CA certificates: {problem}"
    if origin.startswith("--"):
        raise UsageError(message, hint=f"give {origin} a PEM file of CA certificates")
    raise EndpointError(
        message,
        url=url,
        code="CA_FILE",
        hint=f"point {origin} at a PEM file of CA certificates, or unset it to use the system's",
    )


@dataclass(frozen=True)
class _Route:
    """Where a client of `endpoint` sends its requests, and how."""

    base_url: str
    options: ClientOptions
    transport: Transport | None  # the embedded sandbox's; None: the network, TLS verified
    sandbox: bool


def _route(endpoint: Endpoint, policy: ConnectionPolicy, options: ClientOptions | None) -> _Route:
    """The URL policy checked (PlanError when refused), server-announced waits capped at
    --max-wait, and either the embedded sandbox or the network with what TLS trusts."""
    check_url(endpoint.url, allow_insecure_http=policy.allow_insecure_http)
    options = options or ClientOptions()
    options = dataclasses.replace(
        options, retry=dataclasses.replace(options.retry, retry_after_cap_s=policy.max_wait_s)
    )
    if endpoint.is_sandbox:
        name = sandbox_name(endpoint.url)
        transport = asgi_transport(embedded_app(policy.state_dir, name))
        return _Route(f"http://{name}.sandbox.invalid", options, transport, sandbox=True)
    verify = _verify(policy, endpoint.url)
    return _Route(endpoint.url, dataclasses.replace(options, verify=verify), None, sandbox=False)


def open_client(
    endpoint: Endpoint,
    *,
    policy: ConnectionPolicy,
    options: ClientOptions | None = None,
    pacer: Pacer | None = None,
) -> DatabrainClient:
    """A client for `endpoint`; raises PlanError for a refused URL, AuthError for no token."""
    route = _route(endpoint, policy, options)
    if route.sandbox:
        from migrate.sandbox import DEFAULT_TOKEN  # noqa: PLC0415  # only sandbox:// runs need it

        token = Token(DEFAULT_TOKEN, "the embedded sandbox")
    else:
        token = read_token(endpoint)
    return DatabrainClient(
        route.base_url,
        token.value,
        token_source=token.source,
        transport=route.transport,
        options=route.options,
        pacer=pacer,
    )


def _verify(policy: ConnectionPolicy, url: str) -> str | bool:
    """What TLS verification trusts: `--ca-bundle`, else `SSL_CERT_FILE`, else the defaults."""
    if policy.ca_bundle:
        return _ca_file(str(policy.ca_bundle), "--ca-bundle", url)
    if os.environ.get("SSL_CERT_FILE"):
        return _ca_file(os.environ["SSL_CERT_FILE"], "SSL_CERT_FILE", url)
    return True


def open_data_app(
    endpoint: Endpoint,
    *,
    policy: ConnectionPolicy,
    options: ClientOptions | None = None,
    pacer: Pacer | None = None,
) -> DataAppClient:
    """A client for the embed calls of `endpoint.data_app`, authenticated by its API key.

    The key is read like a service token (env var or owner-only file, registered for
    redaction); AuthError (exit 5) names where it was looked for. Under `sandbox://` the demo's
    fixed local key of that data app is used unless the plan's key_env/key_file gives one.
    """
    app = endpoint.data_app
    assert app is not None
    route = _route(endpoint, policy, options)
    given = (app.key_env and os.environ.get(app.key_env, "").strip()) or app.key_file
    if route.sandbox and not given:
        from migrate.sandbox.seed import DEMO_DATA_APPS  # noqa: PLC0415  # only sandbox:// runs

        demo = {app_name: value for app_name, _, value in DEMO_DATA_APPS}
        # An unknown name gets a key no data app holds: the sandbox answers 401, as it should.
        key = Token(demo.get(app.name, "no-such-data-app"), "the embedded sandbox")
    else:
        key = _data_app_key(endpoint)
    return DataAppClient(
        route.base_url,
        key.value,
        data_app=app.name,
        key_source=key.source,
        transport=route.transport,
        options=route.options,
        pacer=pacer,
    )


def _data_app_key(endpoint: Endpoint) -> Token:
    app = endpoint.data_app
    assert app is not None
    return read_data_app_key(app.name, key_env=app.key_env, key_file=app.key_file, url=endpoint.url)
