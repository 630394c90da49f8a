"""The one exception tree of `migrate`, and the exit code each branch maps to (docs/contract.md A5).

    MigrateError                      base; exit 1 only if a bare MigrateError ever escapes
    ├── UsageError                    2  bad flags or arguments
    ├── PlanError                     3  plan, saved plan, bundle or input file unusable
    │   ├── UntrustedJSONError        3  too big/deep, duplicate keys, NaN, bad UTF-8, cut short
    │   ├── BundleError               3  manifest unreadable, file missing/extra/tampered
    │   ├── InsecureURLError          3  plain http to a non-loopback host (2 when from a flag)
    │   └── LocalFileError            3  state dir, journal or lock unusable; journal write failed
    ├── PayloadInvalidError           4  payloads fail the dashboard schema (carries violations)
    ├── EndpointError                 5  a Databrain endpoint answered badly or not at all
    │   ├── AuthError                 5  bad or missing credentials (names the env var only)
    │   ├── WorkspaceNotFoundError    5  WORKSPACE_ID_ERROR (names it and the workspaces that exist)
    │   ├── DashboardNotFoundError    5  export of (or embed for) a dashboard that is not there
    │   ├── EmbedNotFoundError        5  the data app holds no embed with that id
    │   ├── WorkspaceExistsError      5  creating a workspace whose name is taken
    │   ├── RequestRejectedError      5  other 4xx: INVALID_REQUEST_BODY, unknown codes
    │   ├── RateLimitedError          5  429 beyond the retry budget or Retry-After cap
    │   │   └── AnnouncedWaitError    5  the server announced a wait beyond --max-wait: run stops
    │   ├── ServerError               5  5xx
    │   ├── BadResponseError          5  HTML, non-JSON or mis-shaped body, body over the size cap
    │   │   └── CredentialEchoError       5  an answer holds a credential we sent: never written
    │   └── TransportError            5  connection refused, reset, dropped, timed out
    ├── PartialError                  6  apply finished but not every dashboard succeeded
    │   └── RunInterruptedError       6  Ctrl-C / SIGTERM: in-flight requests finish, none start
    └── RefusedError                  7  refused to start
        ├── StalePlanError            7  a saved plan no longer matches source or target
        └── LockHeldError             7  another run holds the target's lock

Exceptions carry data (url, workspace, dashboard id, status, code, violations), never a console;
`migrate.cli` renders them. Messages say what happened and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MigrateError(Exception):
    """Root of every error `migrate` raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class UsageError(MigrateError):
    """Bad command-line usage."""

    exit_code = 2


class PlanError(MigrateError):
    """A plan, saved plan, bundle or input file cannot be used; located when possible."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        super().__init__(message, hint=hint)

    @property
    def location(self) -> str:
        """`file:line:column`, as much of it as is known."""
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.file or self.line else self.message
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class UntrustedJSONError(PlanError):
    """JSON from a file or the network refused before it could do harm."""


class BundleError(PlanError):
    """A bundle is incomplete, has extra files, or was changed after export."""


class InsecureURLError(PlanError):
    """Plain http to a host that is not loopback, without --allow-insecure-http."""


class LocalFileError(PlanError):
    """A local file or folder the run needs (state dir, journal, lock) cannot be used.

    Raised before the first import when the state dir is unusable; raised mid-run when the
    journal cannot be written (disk full), and then no further import starts.
    """


@dataclass(frozen=True)
class Violation:
    """One schema violation: where (`data.metrics[3].query`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PayloadInvalidError(MigrateError):
    """One or more payloads fail the dashboard schema."""

    exit_code = 4

    def __init__(
        self, message: str, *, violations: Sequence[Violation] = (), source: str | None = None
    ) -> None:
        self.violations = tuple(violations)
        self.source = source
        super().__init__(message)


class EndpointError(MigrateError):
    """A Databrain endpoint is unusable or answered a request with an error."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
        uncertain: bool = False,
    ) -> None:
        self.url = url
        self.status = status
        self.code = code
        # True when a write may have taken effect although it failed (sent, then no answer).
        self.uncertain = uncertain
        self.attempts = 1
        super().__init__(message, hint=hint)

    @property
    def error_code(self) -> str:
        """A stable code for reports: the server's code if it gave one, else the class's."""
        return self.code or type(self).__name__.removesuffix("Error").upper()


class AuthError(EndpointError):
    """Credentials missing or refused; names where the token came from, never the token."""


class WorkspaceNotFoundError(EndpointError):
    """The named workspace does not exist on this endpoint."""

    def __init__(
        self, message: str, *, workspace: str, available: Sequence[str] = (), **kw: object
    ) -> None:
        self.workspace = workspace
        self.available = tuple(available)
        super().__init__(message, **kw)  # type: ignore[arg-type]  # kw are EndpointError's


class DashboardNotFoundError(EndpointError):
    """The dashboard asked for is not in the workspace."""

    def __init__(self, message: str, *, dashboard_id: str, workspace: str, **kw: object) -> None:
        self.dashboard_id = dashboard_id
        self.workspace = workspace
        super().__init__(message, **kw)  # type: ignore[arg-type]  # kw are EndpointError's


class RequestRejectedError(EndpointError):
    """The server refused the request (a 4xx other than auth/workspace); carries code + message."""


class RateLimitedError(EndpointError):
    """429 beyond what the retry policy will wait for."""

    retry_after: float | None = None


class AnnouncedWaitError(RateLimitedError):
    """The server announced a wait (Retry-After, a rate-limit reset, a pace) beyond --max-wait.

    Not retried and not one dashboard's failure: the whole run stops, naming what was announced.
    """


class ServerError(EndpointError):
    """The server failed (5xx)."""


class BadResponseError(EndpointError):
    """The server answered something that is not the documented JSON."""


class CredentialEchoError(BadResponseError):
    """An answer holds a credential this process sent (echoed back): refused, never written."""


class TransportError(EndpointError):
    """No usable HTTP exchange: refused, reset, dropped, timed out."""


class PartialError(MigrateError):
    """Apply finished, but some dashboards did not reach created/unchanged/skipped."""

    exit_code = 6


class RunInterruptedError(PartialError):
    """The run was interrupted (Ctrl-C / SIGTERM): no new request starts."""


class RefusedError(MigrateError):
    """Refused to start."""

    exit_code = 7


class StalePlanError(RefusedError):
    """A saved plan no longer matches the source or the target."""


class LockHeldError(RefusedError):
    """Another run holds the target's lock."""


class EmbedNotFoundError(EndpointError):
    """The data app holds no embed with this id (answered 400 "Embed not found").

    After a delete whose first answer was lost, this is what the retry hears: confirm through
    the data app's embed listing before concluding anything.
    """

    def __init__(self, message: str, *, embed_id: str, data_app: str, **kw: object) -> None:
        self.embed_id = embed_id
        self.data_app = data_app
        super().__init__(message, **kw)  # type: ignore[arg-type]  # kw are EndpointError's


class WorkspaceExistsError(EndpointError):
    """A workspace could not be created because the name is taken (confirmed by listing)."""

    def __init__(self, message: str, *, workspace: str, **kw: object) -> None:
        self.workspace = workspace
        super().__init__(message, **kw)  # type: ignore[arg-type]  # kw are EndpointError's
