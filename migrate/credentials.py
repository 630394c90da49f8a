"""Service tokens and data-app API keys: read only from an env var or an owner-only file, held
in one place, redacted.

Every token the process reads is registered here, so `redact` can strip it from anything the tool
writes (console, reports, journals, tracebacks). A `Token` never prints its value: its `repr` and
`str` name where it came from.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from migrate.errors import AuthError
from migrate.models import Endpoint

_REDACTED = "***"
_known_secrets: set[str] = set()


@dataclass(frozen=True)
class Token:
    """A bearer token and a description of where it came from (`env var X`, `file F`)."""

    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"<token from {self.source}>"


def register_secret(value: str) -> None:
    """Remember `value` so that `redact` removes it from output."""
    # Very short values would redact ordinary words; no real service token is this short.
    if len(value) >= 4:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def read_token(endpoint: Endpoint, *, environ: Mapping[str, str] | None = None) -> Token:
    """The token for `endpoint`, from its `token_env` variable or its `token_file`.

    Raises AuthError (exit 5) naming the variable or file — never a value — when it is unset,
    empty, unreadable, or (for a file) readable by group or others.
    """
    env = os.environ if environ is None else environ
    if endpoint.token_env:
        value = env.get(endpoint.token_env, "").strip()
        if not value:
            raise AuthError(
                f"env var {endpoint.token_env} is not set, so there is no token for {endpoint.url}",
                url=endpoint.url,
                hint=f"export {endpoint.token_env}=<service token> (Databrain: Settings → Service "
                "Tokens), or set token_file in the plan",
            )
        register_secret(value)
        return Token(value, f"env var {endpoint.token_env}")
    if endpoint.token_file:
        return _read_file(endpoint.token_file, url=endpoint.url, what="token")
    raise AuthError(
        f"no token configured for {endpoint.url}",
        url=endpoint.url,
        hint="add token_env: VAR_NAME (or token_file: PATH) to this endpoint in the plan",
    )


def _read_file(path_text: str, *, url: str, what: str) -> Token:
    """A secret from an owner-only file, registered for redaction; AuthError otherwise."""
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthError(
                f"{what} file {path} is readable by group or others",
                url=url,
                hint=f"chmod 600 {path}",
            )
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AuthError(f"cannot read {what} file {path}: {exc.strerror}", url=url) from None
    if not value:
        raise AuthError(f"{what} file {path} is empty", url=url)
    register_secret(value)
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
        return Token(value, f"env var {key_env}")
    if key_file:
        return _read_file(key_file, url=url, what=f"data app {data_app!r} key")
    raise AuthError(
        f"no API key configured for data app {data_app!r}",
        url=url,
        hint="add key_env: VAR_NAME (or key_file: PATH) to the data_app in the plan",
    )
