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
    EndpointError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    WorkspaceNotFoundError,
)
from migrate.retry import Operation, parse_retry_after

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
            uncertain=op == "import",
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
