"""Progress callbacks: the core reports what it does through these; `migrate.cli` renders them.

The base class ignores everything, so the core runs silently when nobody listens (tests, library
use). Callbacks must be cheap and must not raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.diff import Change
from migrate.models import Action, EmbedChange, Result


@dataclass(frozen=True)
class ErrorInfo:
    """An error as reports show it: a stable code and a message."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The A5 report shape."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Outcome:
    """What apply did with one dashboard (one row of the A5 report)."""

    id: str
    target_id: str
    result: Result
    attempts: int = 0
    duration_s: float = 0.0
    error: ErrorInfo | None = None
    blocked_by: tuple[str, ...] = ()
    changes: tuple[Change, ...] = field(default=())  # where the content differs, when it does
    name: str = ""
    embeds: tuple[EmbedChange, ...] = ()  # a replaced dashboard's embeds (docs/contract.md A7)
    # The snapshots (docs/contract.md A9) of the target's copy right after the import, and of
    # what a replace removed: digests in the target's history, for its deploy record.
    snapshot: str | None = None
    snapshot_before: str | None = None


class Progress:
    """Receives progress from the core. Override what you want to show."""

    def stage(self, message: str) -> None:
        """A phase of the run began (listing, exporting, comparing, importing)."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the run."""

    def planned(self, dashboard_id: str, action: Action) -> None:
        """One dashboard was classified."""

    def started(self, dashboard_id: str) -> None:
        """One dashboard's import began."""

    def finished(self, outcome: Outcome) -> None:
        """One dashboard reached its final result."""
