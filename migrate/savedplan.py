"""Saved plans (`plan --out`, `apply --plan`): exactly what was reviewed, so apply can refuse
(exit 7) when the source payloads or the target inventory changed since.

The file's shape is `migrate schema saved-plan`; a file that fails it is refused (exit 3) with
each problem located by its JSON path, and a valid one is loaded into a `SavedPlan`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.errors import PlanError, StalePlanError
from migrate.jsontext import parse_json
from migrate.models import Action, Plan, SourceInfo
from migrate.plan import plan_to_document
from migrate.planner import MigrationPlan
from migrate.schema import format_problems
from migrate.storage import read_input, write_private

SAVED_PLAN_FORMAT = "migrate-saved-plan"
SAVED_PLAN_VERSION = 1
_MAX_SHOWN = 10
_FRESH_PLAN = "review a fresh plan: migrate plan PLAN --out SAVED.json"


@dataclass(frozen=True)
class SavedDashboard:
    """One dashboard as the saved plan decided it."""

    id: str
    target_id: str
    action: Action
    source_sha256: str | None
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class SavedPlan:
    """A loaded saved plan: what was reviewed, and against which plan file and endpoints."""

    plan_path: str
    plan_sha256: str
    expanded_sha256: str
    selectors: tuple[str, ...]
    source: SourceInfo
    target: dict[str, str]  # url and workspace, as `Endpoint.describe` says them
    target_inventory_sha256: str
    dashboards: tuple[SavedDashboard, ...]


def inventory_digest(ids: frozenset[str]) -> str:
    """A digest of a target inventory (order-independent)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def expanded_digest(plan: Plan) -> str:
    """A digest of the plan as read: after `${VAR}` expansion and defaults.

    The file's bytes alone do not say what was reviewed: `schema_pairs`, a workspace or
    `on_conflict` may come from the environment, which can differ when the plan is applied.
    """
    text = json.dumps(plan_to_document(plan), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def saved_plan_document(migration: MigrationPlan) -> dict[str, Any]:
    """The saved-plan JSON: plan digests (file bytes, and the plan after `${VAR}` expansion),
    endpoints, target inventory digest, per-dashboard action and source payload hash. Holds no
    token and no payload."""
    return {
        "format": SAVED_PLAN_FORMAT,
        "version": SAVED_PLAN_VERSION,
        "plan": {
            "path": migration.plan.path,
            "sha256": migration.plan.digest,
            "expanded_sha256": expanded_digest(migration.plan),
        },
        "selectors": list(migration.selectors),
        "source": migration.source.as_dict(),
        "target": migration.target,
        "target_inventory_sha256": inventory_digest(migration.target_inventory),
        "dashboards": [
            {
                "id": d.id,
                "target_id": d.target_id,
                "action": d.action.value,
                "source_sha256": d.source_sha256,
                "depends_on": list(d.depends_on),
            }
            for d in migration.dashboards
        ],
    }


def write_saved_plan(migration: MigrationPlan, path: Path) -> None:
    """Write the saved plan atomically, owner-only."""
    write_private(path, json.dumps(saved_plan_document(migration), indent=2) + "\n")


def load_saved_plan(path: Path) -> SavedPlan:
    """Read a saved plan; PlanError (exit 3) naming the file and each problem's JSON path when it
    is not one."""
    doc = parse_json(read_input(path, what="saved plan"), source=str(path))
    if not isinstance(doc, dict) or doc.get("format") != SAVED_PLAN_FORMAT:
        raise PlanError(
            'not a saved plan (no "format": "migrate-saved-plan")',
            file=str(path),
            hint="make one with: migrate plan PLAN --out SAVED.json",
        )
    problems = format_problems("saved-plan", doc)
    if problems:
        shown = "; ".join(str(p) for p in problems[:_MAX_SHOWN])
        more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
        raise PlanError(
            f"not a valid saved plan: {shown}{more}",
            file=str(path),
            hint="never edit a saved plan; make it again: migrate plan PLAN --out SAVED.json",
        )
    source = doc["source"]
    return SavedPlan(
        plan_path=doc["plan"]["path"],
        plan_sha256=doc["plan"]["sha256"],
        expanded_sha256=doc["plan"]["expanded_sha256"],
        selectors=tuple(doc["selectors"]),
        source=SourceInfo(
            source["url"],
            source["workspace"],
            bundle=source.get("bundle"),
            manifest_sha256=source.get("manifest_sha256"),
        ),
        target={"url": doc["target"]["url"], "workspace": doc["target"]["workspace"]},
        target_inventory_sha256=doc["target_inventory_sha256"],
        dashboards=tuple(
            SavedDashboard(
                d["id"],
                d["target_id"],
                Action(d["action"]),
                d["source_sha256"],
                tuple(d["depends_on"]),
            )
            for d in doc["dashboards"]
        ),
    )


def check_saved_plan_header(saved: SavedPlan, plan: Plan) -> tuple[str, ...]:
    """The saved plan's selectors, after checking it was made from this plan file and target.

    StalePlanError (exit 7) when the plan file changed since, or reads differently now because
    a `${VAR}` it uses has another value.
    """
    if saved.plan_sha256 != plan.digest:
        raise StalePlanError(
            f"the saved plan was made from a different version of {plan.path}", hint=_FRESH_PLAN
        )
    if saved.expanded_sha256 != expanded_digest(plan):
        raise StalePlanError(
            f"{plan.path} reads differently than when the saved plan was made: an environment"
            " variable it uses (`${VAR}`) has another value now",
            hint="apply with the environment the plan was reviewed in, or " + _FRESH_PLAN,
        )
    if saved.target != plan.target.describe():
        raise StalePlanError("the saved plan was made for another target", hint=_FRESH_PLAN)
    return saved.selectors


def check_saved_plan(saved: SavedPlan, migration: MigrationPlan) -> None:
    """Refuse (StalePlanError, exit 7) unless planning now finds exactly what was saved."""
    problems: list[str] = []
    if saved.target_inventory_sha256 != inventory_digest(migration.target_inventory):
        problems.append("the target's dashboard inventory changed")
    then = {d.id: d for d in saved.dashboards}
    now = {d.id: d for d in migration.dashboards}
    for dash_id in sorted(then.keys() - now.keys()):
        problems.append(f"{dash_id} was planned and is no longer")
    for dash_id in sorted(now.keys() - then.keys()):
        problems.append(f"{dash_id} is planned now and was not")
    for dash_id in sorted(then.keys() & now.keys()):
        old, new = then[dash_id], now[dash_id]
        if old.source_sha256 != new.source_sha256:
            problems.append(f"{dash_id}: the source payload changed")
        if old.action is not new.action:
            problems.append(f"{dash_id}: was {old.action.value}, is now {new.action.value}")
        if old.target_id != new.target_id:
            problems.append(f"{dash_id}: target id changed")
    if problems:
        shown = "; ".join(problems[:_MAX_SHOWN])
        more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
        raise StalePlanError(f"the saved plan is stale: {shown}{more}", hint=_FRESH_PLAN)
