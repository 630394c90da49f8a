"""Service tokens and data-app API keys: read only from an env var or an owner-only file, held
in one place, redacted.

Every token the process reads is registered (`migrate.redaction`), so `redact` can strip it from
anything the tool writes (console, reports, journals, tracebacks). A `Token` never prints its
value: its `repr` and `str` name where it came from.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from migrate.errors import AuthError
from migrate.models import Endpoint
from migrate.redaction import _known_secrets, redact, register_secret
from migrate.storage import FileTooLargeError, read_regular

__all__ = [
    "Token",
    "_known_secrets",
    "read_data_app_key",
    "read_token",
    "redact",
    "register_configured",
    "register_secret",
]

_TOKEN_FILE_CAP = 64 * 1024  # far above any real token; a bigger file is not a token file


@dataclass(frozen=True)
class Token:
    """A bearer token and a description of where it came from (`env var X`, `file F`)."""

    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"<token from {self.source}>"


def _check_token(value: str, where: str, url: str, *, fix: str) -> None:
    """Refuse a token no HTTP header can carry; the message names `where`, never the value.

    A bearer token is printable ASCII without spaces (RFC 6750's b64token is narrower still). A
    newline or other control character pasted in from a secret store would otherwise surface in
    an HTTP library's error, value included; a non-ASCII one would fail to encode.
    """
    if all("!" <= char <= "~" for char in value):
        return
    index, char = next((i, c) for i, c in enumerate(value) if not "!" <= c <= "~")
    if char.isspace():
        what = "a line break" if char in "\r\n" else "whitespace"
    elif not char.isascii():
        what = "a non-ASCII character"
    else:
        what = "a control character"
    raise AuthError(
        f"{where} holds {what} at position {index + 1} of the token: not a usable token",
        url=url,
        hint=f"{fix} the service token alone: printable ASCII, no spaces or line breaks"
        " (check how the secret was stored)",
    )


def read_token(endpoint: Endpoint, *, environ: Mapping[str, str] | None = None) -> Token:
    """The token for `endpoint`, from its `token_env` variable or its `token_file`.

    Raises AuthError (exit 5) naming the variable or file — never a value — when it is unset,
    empty, unreadable, not a token (anything but printable ASCII inside, once surrounding
    whitespace is stripped), or (for a file) readable by group or others or not a regular file.
    """
    env = os.environ if environ is None else environ
    if endpoint.token_env:
        value = env.get(endpoint.token_env, "").strip()
        if not value:
            state = "is empty" if endpoint.token_env in env else "is not set"
            raise AuthError(
                f"env var {endpoint.token_env} {state}, so there is no token for {endpoint.url}",
                url=endpoint.url,
                hint=f"export {endpoint.token_env}=<service token> (Databrain: Settings → Service "
                "Tokens), or set token_file in the plan",
            )
        register_secret(value)
        _check_token(
            value, f"env var {endpoint.token_env}", endpoint.url, fix=f"set {endpoint.token_env} to"
        )
        return Token(value, f"env var {endpoint.token_env}")
    if endpoint.token_file:
        return _read_file(endpoint.token_file, url=endpoint.url, what="token")
    raise AuthError(
        f"no token configured for {endpoint.url}",
        url=endpoint.url,
        hint="add token_env: VAR_NAME (or token_file: PATH) to this endpoint in the plan",
    )


def _read_file(path_text: str, *, url: str, what: str) -> Token:
    """A secret from an owner-only regular file, checked and registered for redaction.

    AuthError (exit 5) naming the file — never its content — when it is too open, unreadable,
    too large, not text, empty or not a valid header value.
    """
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthError(
                f"{what} file {path} is readable by group or others",
                url=url,
                hint=f"chmod 600 {path}",
            )
        raw = read_regular(path, limit=_TOKEN_FILE_CAP)
    except FileTooLargeError:
        raise AuthError(
            f"{what} file {path} holds more than {_TOKEN_FILE_CAP:,} bytes: not a {what}",
            url=url,
            hint=f"the file must hold the {what} alone",
        ) from None
    except OSError as exc:
        raise AuthError(f"cannot read {what} file {path}: {exc.strerror}", url=url) from None
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise AuthError(
            f"{what} file {path} is not text: a {what} is printable ASCII",
            url=url,
            hint=f"write the {what} alone into the file",
        ) from None
    if not value:
        raise AuthError(f"{what} file {path} is empty", url=url)
    register_secret(value)
    _check_token(value, f"{what} file {path}", url, fix=f"write into {path}")
    return Token(value, f"file {path}")


def read_data_app_key(
    data_app: str,
    *,
    key_env: str | None,
    key_file: str | None,
    url: str,
    environ: Mapping[str, str] | None = None,
) -> Token:
    """The API key of data app `data_app`, from env var `key_env` or owner-only `key_file`.

    Registered for redaction like a service token. Raises AuthError (exit 5) naming the
    variable or file — never a value — when it is unset, empty, unreadable or too open.
    """
    env = os.environ if environ is None else environ
    if key_env:
        value = env.get(key_env, "").strip()
        if not value:
            raise AuthError(
                f"env var {key_env} is not set, so there is no API key for data app {data_app!r}",
                url=url,
                hint=f"export {key_env}=<the data app's API key> (Databrain: Data App → API key)",
            )
        register_secret(value)
        _check_token(value, f"env var {key_env}", url, fix=f"set {key_env} to")
        return Token(value, f"env var {key_env}")
    if key_file:
        return _read_file(key_file, url=url, what=f"data app {data_app!r} key")
    raise AuthError(
        f"no API key configured for data app {data_app!r}",
        url=url,
        hint="add key_env: VAR_NAME (or key_file: PATH) to the data_app in the plan",
    )


def register_configured(
    endpoints: Iterable[Endpoint], *, environ: Mapping[str, str] | None = None
) -> None:
    """Register for redaction every token and data-app key `endpoints` name that can be read
    now, and nothing more: a command that only reads local files it did not write alone (the
    deploy history) still never prints them. One that cannot be read is skipped, not an error.
    """
    for endpoint in endpoints:
        with contextlib.suppress(AuthError):
            read_token(endpoint, environ=environ)
        app = endpoint.data_app
        if app is not None:
            with contextlib.suppress(AuthError):
                read_data_app_key(
                    app.name,
                    key_env=app.key_env,
                    key_file=app.key_file,
                    url=endpoint.url,
                    environ=environ,
                )
