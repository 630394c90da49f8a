"""Databrain error answers translated into the error tree: pure, no HTTP library here.

The API's documented codes (AUTH_ERROR and friends, WORKSPACE_ID_ERROR, INVALID_REQUEST_BODY),
its undocumented ones, and bodies that are not JSON at all each become one `EndpointError`
subclass whose message names the URL and what to do — never the token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrate.errors import (
    AuthError,
    BadResponseError,
    DashboardNotFoundError,
    EmbedNotFoundError,
    EndpointError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    WorkspaceNotFoundError,
)
from migrate.models import Operation
from migrate.retry import WRITES, parse_retry_after

AUTH_CODES = frozenset(
    {"AUTH_ERROR", "AUTHENTICATION_ERROR", "INVALID_SERVICE_TOKEN", "INVALID_DATA_APP_API_KEY"}
)


@dataclass(frozen=True)
class ErrorAnswer:
    """A non-2xx HTTP answer: status, parsed body (None if not JSON), headers, raw bytes."""

    status: int
    body: Any
    headers: Mapping[str, str]
    raw: bytes


@dataclass(frozen=True)
class FailedRequest:
    """What the failed request was: where, which call, for which workspace and dashboard."""

    url: str
    base_url: str
    op: Operation
    workspace: str | None
    dashboard_id: str | None
    token_source: str


def error_fields(body: Any) -> tuple[str | None, str | None]:
    """The (code, message) of a Databrain error body, tolerant of the shapes seen in the wild."""
    if not isinstance(body, dict):
        return None, None
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        message = err.get("message")
        return (str(code) if code is not None else None, str(message) if message else None)
    if isinstance(err, str) and err:
        return None, err
    message = body.get("message")
    return None, str(message) if isinstance(message, str) else None


def html_note(answer: ErrorAnswer) -> str:
    if answer.raw and answer.body is None:
        return f" ({'an HTML page' if answer.raw.lstrip()[:1] == b'<' else 'a non-JSON body'})"
    return ""


def translate_error(
    answer: ErrorAnswer, request: FailedRequest, *, available: Sequence[str] = ()
) -> EndpointError:
    """The EndpointError for a non-2xx answer; `available` names the workspaces that exist
    (listed by the caller when `error_fields` says WORKSPACE_ID_ERROR)."""
    url = request.url
    status = answer.status
    workspace = request.workspace
    op = request.op
    code, message = error_fields(answer.body)
    said = f"{code}: {message}" if code and message else (message or code or "")
    detail = f" ({said})" if said else html_note(answer)
    if status in (401, 403) or (status in (400, 401) and code in AUTH_CODES):
        return AuthError(
            f"{url} refused the token from {request.token_source}{detail}",
            url=url,
            status=status,
            code=code,
            hint=f"check that {request.token_source} holds a valid Databrain service token"
            " (Settings → Service Tokens) for this endpoint",
        )
    if status == 429:
        err = RateLimitedError(
            f"{url} is rate-limiting this client (HTTP 429){detail}",
            url=url,
            status=status,
            code=code,
            hint="lower --concurrency or set --max-rps / settings.max_rps",
        )
        err.retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        return err
    if status >= 500:
        return ServerError(
            f"{url} failed with HTTP {status}{detail}",
            url=url,
            status=status,
            code=code,
            uncertain=op in WRITES,
        )
    if code == "WORKSPACE_ID_ERROR" and workspace is not None:
        where = f"; workspaces here: {', '.join(available)}" if available else ""
        return WorkspaceNotFoundError(
            f"workspace {workspace!r} not found at {request.base_url}{where}",
            workspace=workspace,
            available=tuple(available),
            url=url,
            status=status,
            code=code,
            hint="workspace names match exactly, case included; fix `workspace:` in the plan",
        )
    if op == "export" and status in (400, 404) and code != "INVALID_REQUEST_BODY":
        return DashboardNotFoundError(
            f"dashboard {request.dashboard_id} not found in workspace {workspace}{detail}",
            dashboard_id=request.dashboard_id or "",
            workspace=workspace or "",
            url=url,
            status=status,
            code=code,
        )
    if code == "INVALID_REQUEST_BODY":
        return RequestRejectedError(
            f"{url} rejected the request body: {message or 'no detail given'}",
            url=url,
            status=status,
            code=code,
        )
    if 300 <= status < 400:
        return BadResponseError(
            f"{url} redirected (HTTP {status}) to {answer.headers.get('Location', '?')};"
            " redirects are not followed so the token never reaches another host",
            url=url,
            status=status,
            hint="use the final API URL in the plan",
        )
    return RequestRejectedError(
        f"{url} refused the request with HTTP {status}{detail}",
        url=url,
        status=status,
        code=code or f"HTTP_{status}",
    )


# ---- data-app (embed) calls ---------------------------------------------------------------

EMBED_ID_OPERATIONS: frozenset[Operation] = frozenset(
    {"export_embed", "update_embed", "rename_embed", "delete_embed"}
)


@dataclass(frozen=True)
class DataAppRequest:
    """What a failed data-app call was about, beyond what `translate_error` knew."""

    data_app: str
    key_source: str
    op: Operation
    embed_id: str | None = None
    workspace: str | None = None
    dashboard_id: str | None = None


def refine_data_app_error(error: EndpointError, request: DataAppRequest) -> EndpointError:
    """`error` (from `translate_error`) made specific to a data-app call, or `error` itself.

    A refused key becomes "bad credentials for data app X" (naming where the key came from,
    never the key); a 400 for an embed id becomes `EmbedNotFoundError`; INVALID_DASHBOARD_ID
    "Dashboard not found" on creation becomes `DashboardNotFoundError`, INVALID_WORKSPACE_NAME
    a `WorkspaceNotFoundError`.
    """
    url, status, code = error.url, error.status, error.code
    app = request.data_app
    refined: EndpointError | None = None
    if isinstance(error, AuthError):
        said = f" ({code})" if code else ""
        refined = AuthError(
            f"bad credentials for data app {app!r}: {url} refused the API key from"
            f" {request.key_source}{said}",
            url=url,
            status=status,
            code=code,
            hint=f"check that {request.key_source} holds the API key of data app {app!r}"
            " (Databrain: Data App → API key), not a service token",
        )
    elif not isinstance(error, RequestRejectedError) or code == "INVALID_REQUEST_BODY":
        return error
    elif request.op in EMBED_ID_OPERATIONS and status in (400, 404):
        refined = EmbedNotFoundError(
            f"data app {app!r} holds no embed {request.embed_id!r} ({url} answered"
            f" HTTP {status}{f', {code}' if code else ''})",
            embed_id=request.embed_id or "",
            data_app=app,
            url=url,
            status=status,
            code=code,
            hint="list the data app's embeds to see which exist",
        )
    elif (
        request.op == "create_embed"
        and code == "INVALID_DASHBOARD_ID"
        and "not found" in error.message.lower()
    ):
        refined = DashboardNotFoundError(
            f"cannot embed dashboard {request.dashboard_id!r}: it is not in workspace"
            f" {request.workspace!r}",
            dashboard_id=request.dashboard_id or "",
            workspace=request.workspace or "",
            url=url,
            status=status,
            code=code,
        )
    elif request.op == "create_embed" and code in ("INVALID_WORKSPACE_NAME", "WORKSPACE_ID_ERROR"):
        refined = WorkspaceNotFoundError(
            f"cannot embed into workspace {request.workspace!r}: it does not exist ({url})",
            workspace=request.workspace or "",
            url=url,
            status=status,
            code=code,
            hint="workspace names match exactly, case included",
        )
    if refined is None:
        return error
    refined.attempts = error.attempts
    refined.uncertain = error.uncertain
    return refined
