"""The deploy log of one target: what each apply or rollback wrote, and when (docs/contract.md A9).

A target's history is a folder (`snapshots.target_folder`) holding `deploys.jsonl`, one deploy
record per line (schema `deploy.schema.json`), and the content-addressed `snapshots/` it
names. A record is appended in one write and fsynced, owner-only whatever the umask, redacted
on its way out; the caller holds the target's lock, so two runs cannot interleave records. A
torn last line (a crash mid-write) is skipped when read, and the next append starts on a line
of its own. The history answers three questions: what was deployed (and from which plan,
bundle and commit), what the target held right after (drift), and what to go back to
(rollback).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.diff import normalize_for_digest
from migrate.errors import LocalFileError, MigrateError, PlanError, UntrustedJSONError
from migrate.filters import canonical_filters
from migrate.jsontext import dump_json_canonical, load_trusted, parse_json
from migrate.models import Action, Result
from migrate.redaction import redact
from migrate.schema import format_problems
from migrate.snapshots import SnapshotStore, default_history_dir, refuse_links, target_folder
from migrate.storage import (
    FileTooLargeError,
    ensure_private_dir,
    fsync_dir,
    read_regular,
)

if TYPE_CHECKING:
    from migrate.events import Outcome
    from migrate.planner import MigrationPlan

LOG_NAME = "deploys.jsonl"
LOG_CAP = 256 * 1024 * 1024  # a history larger than this is not read whole
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Results that mean the run wrote to the target for that dashboard (a failed replace restored
# its snapshot, or a failed import may have landed): such a run is a deploy.
_WROTE = (Result.CREATED, Result.UPDATED)

__all__ = [
    "Deploy",
    "DeployedDashboard",
    "History",
    "content_sha256",
    "default_history_dir",
    "new_deploy_id",
    "provenance",
]


def new_deploy_id(now: float | None = None) -> str:
    """A deploy id: UTC time to the millisecond, then 6 random hex digits (sortable, unique)."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return f"{stamp}Z-{secrets.token_hex(3)}"


def iso(ts: float) -> str:
    """`ts` as ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def content_sha256(data: Any) -> str:
    """sha256 of a dashboard's `data` normalized as every comparison does (minted ids aliased,
    filters canonical, keys sorted): two copies that compare equal have the same digest.

    Records keep these digests across versions of the tool, so the text hashed is fixed: the
    canonical JSON of `normalize_for_compare(canonical_filters(data))`.
    """
    normalized = normalize_for_digest(canonical_filters(data))
    return hashlib.sha256(dump_json_canonical(normalized)).hexdigest()


def provenance(note: str | None, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """(commit, actor) of a deploy: `--note`, else GITHUB_SHA, else CI_COMMIT_SHA; the actor
    from GITHUB_ACTOR or GITLAB_USER_LOGIN, else the local user."""
    env = os.environ if env is None else env
    commit = note or env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA") or None
    actor = env.get("GITHUB_ACTOR") or env.get("GITLAB_USER_LOGIN")
    if not actor:
        try:
            actor = getpass.getuser()
        except (OSError, KeyError):
            actor = "unknown"
    return commit, actor


@dataclass(frozen=True)
class DeployedDashboard:
    """One dashboard of a deploy record."""

    id: str
    target_id: str
    result: str
    sha256: str | None = None
    snapshot: str | None = None  # the target's copy right after the import
    snapshot_before: str | None = None  # what a replace removed
    embeds: tuple[dict[str, str | None], ...] = ()

    def as_record(self) -> dict[str, Any]:
        """The deploy-schema shape."""
        return {
            "id": self.id,
            "target_id": self.target_id,
            "result": self.result,
            "sha256": self.sha256,
            "snapshot": self.snapshot,
            "snapshot_before": self.snapshot_before,
            "embeds": [dict(e) for e in self.embeds],
        }


@dataclass(frozen=True)
class Deploy:
    """One record of `deploys.jsonl`."""

    deploy_id: str
    started_at: str
    finished_at: str
    plan_sha256: str
    bundle_manifest_sha256: str | None
    commit: str | None
    actor: str | None
    dashboards: tuple[DeployedDashboard, ...]
    target: dict[str, str] = field(default_factory=dict)
    rollback_of: str | None = None

    def counts(self) -> dict[str, int]:
        """result → number of dashboards, in Result order."""
        found: dict[str, int] = {}
        for result in Result:
            n = sum(1 for d in self.dashboards if d.result == result.value)
            if n:
                found[result.value] = n
        return found

    @property
    def touched(self) -> list[DeployedDashboard]:
        """The dashboards this deploy left a known copy of in the target (a snapshot)."""
        return [d for d in self.dashboards if d.snapshot is not None]

    def as_record(self) -> dict[str, Any]:
        """The deploy-schema shape (one line of deploys.jsonl)."""
        record: dict[str, Any] = {
            "deploy_id": self.deploy_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "plan_sha256": self.plan_sha256,
            "bundle_manifest_sha256": self.bundle_manifest_sha256,
            "commit": self.commit,
            "actor": self.actor,
            "rollback_of": self.rollback_of,
            "dashboards": [d.as_record() for d in self.dashboards],
        }
        if self.target:
            record["target"] = dict(self.target)
        return record

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> Deploy:
        """A record that passed the deploy schema."""
        return Deploy(
            deploy_id=record["deploy_id"],
            started_at=record["started_at"],
            finished_at=record["finished_at"],
            plan_sha256=record["plan_sha256"],
            bundle_manifest_sha256=record["bundle_manifest_sha256"],
            commit=record["commit"],
            actor=record["actor"],
            target=dict(record.get("target") or {}),
            rollback_of=record.get("rollback_of"),
            dashboards=tuple(
                DeployedDashboard(
                    id=d["id"],
                    target_id=d["target_id"],
                    result=d["result"],
                    sha256=d["sha256"],
                    snapshot=d["snapshot"],
                    snapshot_before=d["snapshot_before"],
                    embeds=tuple(dict(e) for e in d["embeds"]),
                )
                for d in record["dashboards"]
            ),
        )


@dataclass(frozen=True)
class Deployed:
    """What the history says a deploy left in the target for one dashboard (for drift)."""

    deploy_id: str
    data: Any


DeployedLookup = Callable[[str], "Deployed | None"]  # target id -> the last deployed copy


def wrote(results: Iterable[tuple[Result, int]]) -> bool:
    """True when a run with these (result, attempts) wrote to the target: something was
    created or replaced, or an import that failed was sent (it may have landed)."""
    return any(r in _WROTE or (r is Result.FAILED and attempts > 0) for r, attempts in results)


class History:
    """The deploy log and snapshots of one target (`key`: `connection.target_key`)."""

    def __init__(self, history_dir: Path, key: str) -> None:
        self.folder = target_folder(history_dir, key)
        self.log = self.folder / LOG_NAME
        self.snapshots = SnapshotStore(history_dir, key)
        # snapshot digest -> content sha256 of its `data`, for the snapshots this process kept
        # or read: a snapshot is immutable (named by its bytes), so neither changes.
        self._content: dict[str, str] = {}

    def keep(self, raw: bytes, data: Any = None, *, text: bytes | None = None) -> str:
        """Store the export file `raw` (a target's copy as read back) as a snapshot and note
        the content sha256 of its `data` for the deploy record; returns the snapshot's digest.

        Give the copy's `data` when it is parsed, or its compact JSON `text` (written by this
        process; a read-back proven to hold it); else `raw` is parsed. Blocking (fsync, a walk
        of the copy): call it from a worker thread while the dashboard finishes, so the record
        at the end of the run is only assembled. The snapshot's bytes are durable on return and
        its name by the time a record naming it is (`append`). OSError or MigrateError when it
        cannot be stored; a copy whose hash cannot be taken is stored without one (`content`
        then tries again from the snapshot, as for any other).
        """
        digest = self.snapshots.put(raw, sync_dir=False)
        try:
            if data is None:
                if text is not None:
                    data = load_trusted(text)
                else:
                    document = parse_json(raw, source=f"snapshot {digest[:12]}")
                    data = document.get("data") if isinstance(document, dict) else None
            if data is not None:
                self._content[digest] = content_sha256(data)
        except MigrateError:
            pass
        return digest

    def content(self, digest: str) -> str | None:
        """The content sha256 of snapshot `digest`'s `data`, or None when the snapshot is
        missing or unreadable."""
        known = self._content.get(digest)
        if known is not None:
            return known
        data = self.deployed_data(digest)
        if data is None:
            return None
        found = self._content[digest] = content_sha256(data)
        return found

    def append(self, deploy: Deploy) -> None:
        """Append `deploy` as one line, durably (LocalFileError, exit 3, when it cannot be).

        The caller holds the target's lock. The snapshots it names are made durable first. A
        torn last line left by a crash is closed first, so the new record starts on a line of
        its own.
        """
        record = deploy.as_record()
        problems = format_problems("deploy", record)
        assert not problems, problems  # built here from typed fields: a failure is a bug
        line = redact(json.dumps(record, ensure_ascii=True, separators=(",", ":"))) + "\n"
        refuse_links(self.folder)
        try:
            self.snapshots.sync()  # the names `keep` left to fsync, before a record names them
            ensure_private_dir(self.folder)
            fd = os.open(self.log, os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line
                os.write(fd, line.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.folder)
        except OSError as exc:
            raise LocalFileError(
                f"cannot record the deploy in the history: {exc.strerror or exc}",
                file=str(self.log),
                hint="the target was written; free space or fix the history folder, then"
                " keep it: the next plan compares against the last deploy it records",
            ) from None

    def deploys(self) -> list[Deploy]:
        """Every readable record, oldest first; a torn or corrupt line is skipped."""
        refuse_links(self.folder)
        try:
            raw = read_regular(self.log, limit=LOG_CAP, follow_symlinks=False)
        except FileNotFoundError:
            return []
        except (OSError, FileTooLargeError) as exc:
            raise PlanError(
                f"cannot read the deploy history: {exc.strerror or exc}",
                file=str(self.log),
                hint="restore the history folder from where CI keeps it",
            ) from None
        found: list[Deploy] = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = parse_json(line, source=str(self.log))
            except UntrustedJSONError:
                continue
            if isinstance(record, dict) and not format_problems("deploy", record):
                found.append(Deploy.from_record(record))
        return found

    def find(self, deploy_id: str) -> Deploy:
        """The deploy `deploy_id`; PlanError (exit 3) naming it when the history has none."""
        known = self.deploys()
        for deploy in known:
            if deploy.deploy_id == deploy_id:
                return deploy
        recent = ", ".join(d.deploy_id for d in reversed(known[-5:])) or "none recorded"
        raise PlanError(
            f"deploy {deploy_id!r} is not in the history of this target",
            file=str(self.log),
            hint=f"`migrate history PLAN` lists the deploys (latest: {recent}); pass --history"
            " if CI keeps the history elsewhere",
        )

    def last_deployed(self) -> dict[str, tuple[str, DeployedDashboard]]:
        """target id → (deploy id, record) of the newest copy of it a deploy left in the
        target."""
        latest: dict[str, tuple[str, DeployedDashboard]] = {}
        for deploy in self.deploys():
            for dashboard in deploy.touched:
                latest[dashboard.target_id] = (deploy.deploy_id, dashboard)
        return latest

    def lookup(self) -> DeployedLookup:
        """The planner's view of this history: target id → the copy the last deploy of it
        left (None without one, or when its snapshot is missing). A snapshot that is there
        but altered, not a regular file or not an export file is PlanError (exit 3): read as
        "no deploy known", it would silently turn drift detection off for that dashboard."""
        latest = self.last_deployed()

        def deployed(target_id: str) -> Deployed | None:
            entry = latest.get(target_id)
            if entry is None or entry[1].snapshot is None:
                return None
            digest = entry[1].snapshot
            if not os.path.lexists(self.snapshots.path(digest)):
                return None
            raw = self.snapshots.get(digest)  # PlanError when altered or not a regular file
            document = parse_json(raw, source=f"snapshot {digest[:12]}")  # PlanError if not JSON
            if not isinstance(document, dict) or "data" not in document:
                raise PlanError(
                    f"snapshot {digest[:12]} of {target_id} is not an export file",
                    file=str(self.snapshots.path(digest)),
                    hint="restore the history folder from where CI keeps it",
                )
            return Deployed(entry[0], document["data"])

        return deployed

    def deployed_data(self, digest: str) -> Any:
        """The `data` of snapshot `digest`, or None when it is missing or unreadable."""
        try:
            raw = self.snapshots.get(digest)
            document = parse_json(raw, source=f"snapshot {digest[:12]}")
        except (PlanError, UntrustedJSONError):
            return None
        return document.get("data") if isinstance(document, dict) else None


def later_creations(deploys: Sequence[Deploy], after: str, kept: set[str]) -> list[str]:
    """Target ids created by deploys newer than `after` and not in `kept` (sorted)."""
    found: set[str] = set()
    seen = False
    for deploy in deploys:
        if seen:
            found.update(d.target_id for d in deploy.dashboards if d.result == Result.CREATED.value)
        if deploy.deploy_id == after:
            seen = True
    return sorted(found - kept)


def record_run(
    history: History,
    migration: MigrationPlan,
    outcomes: Sequence[Outcome],
    *,
    started: float,
    note: str | None = None,
    rollback_of: str | None = None,
) -> Deploy | None:
    """Append the deploy record of an apply that wrote to the target (also when it failed
    part-way), and returns it. A run that wrote nothing appends nothing and returns None,
    unless it found `unchanged` dashboards (equal to the source) whose target copy differs
    from the one the history last recorded (an interrupted run of ours wrote them): the record
    then adopts those copies, so they are not taken for edits made in the target later."""
    observed = {
        d.id: d.observed
        for d in migration.dashboards
        if d.observed is not None and d.action is Action.UNCHANGED
    }
    if not wrote((o.result, o.attempts) for o in outcomes) and not observed:
        return None
    commit, actor = provenance(note)
    dashboards = []
    for outcome in outcomes:
        snapshot = outcome.snapshot
        if snapshot is None and outcome.result is Result.UNCHANGED and outcome.id in observed:
            try:
                snapshot = history.keep(observed[outcome.id])
            except (OSError, MigrateError):
                snapshot = None
        # Kept by this run: noted when it was stored; else read back from the snapshot.
        content = history.content(snapshot) if snapshot else None
        dashboards.append(
            DeployedDashboard(
                id=outcome.id,
                target_id=outcome.target_id,
                result=outcome.result.value,
                sha256=content,
                snapshot=snapshot if content is not None else None,
                snapshot_before=outcome.snapshot_before,
                embeds=tuple(e.as_dict() for e in outcome.embeds),
            )
        )
    deploy = Deploy(
        deploy_id=new_deploy_id(started),
        started_at=iso(started),
        finished_at=iso(time.time()),
        plan_sha256=migration.plan.digest,
        bundle_manifest_sha256=migration.source.manifest_sha256,
        commit=commit,
        actor=actor,
        dashboards=tuple(dashboards),
        target=dict(migration.target),
        rollback_of=rollback_of,
    )
    history.append(deploy)
    return deploy
