"""Saved plans (`plan --out`, `apply --plan`): exactly what was reviewed, so apply can refuse
(exit 7) when the source payloads or the target inventory changed since."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from migrate.errors import PlanError, StalePlanError
from migrate.jsontext import parse_json
from migrate.models import Plan
from migrate.planner import MigrationPlan
from migrate.storage import read_input, write_private

SAVED_PLAN_FORMAT = "migrate-saved-plan"


def inventory_digest(ids: frozenset[str]) -> str:
    """A digest of a target inventory (order-independent)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def saved_plan_document(migration: MigrationPlan) -> dict[str, Any]:
    """The saved-plan JSON: plan digest, endpoints, target inventory digest, per-dashboard action
    and source payload hash. Holds no token and no payload."""
    return {
        "format": SAVED_PLAN_FORMAT,
        "version": 1,
        "plan": {"path": migration.plan.path, "sha256": migration.plan.digest},
        "selectors": list(migration.selectors),
        "source": migration.source,
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


def load_saved_plan(path: Path) -> dict[str, Any]:
    """Read a saved plan; PlanError (exit 3) when it is not one."""
    doc = parse_json(read_input(path, what="saved plan"), source=str(path))
    if not isinstance(doc, dict) or doc.get("format") != SAVED_PLAN_FORMAT:
        raise PlanError(
            'not a saved plan (no "format": "migrate-saved-plan")',
            file=str(path),
            hint="make one with: migrate plan PLAN --out SAVED.json",
        )
    if not isinstance(doc.get("dashboards"), list) or not isinstance(doc.get("plan"), dict):
        raise PlanError("saved plan is incomplete", file=str(path), hint="make it again")
    return doc


def check_saved_plan_header(saved: dict[str, Any], plan: Plan) -> tuple[str, ...]:
    """The saved plan's selectors, after checking it was made from this plan file and target.

    StalePlanError (exit 7) when the plan file changed since.
    """
    if saved["plan"].get("sha256") != plan.digest:
        raise StalePlanError(
            f"the saved plan was made from a different version of {plan.path}",
            hint="review a fresh plan: migrate plan PLAN --out SAVED.json",
        )
    if saved.get("target") != plan.target.describe():
        raise StalePlanError(
            "the saved plan was made for another target",
            hint="review a fresh plan: migrate plan PLAN --out SAVED.json",
        )
    selectors = saved.get("selectors") or []
    return tuple(str(s) for s in selectors)


def check_saved_plan(saved: dict[str, Any], migration: MigrationPlan) -> None:
    """Refuse (StalePlanError, exit 7) unless planning now finds exactly what was saved."""
    problems: list[str] = []
    if saved.get("target_inventory_sha256") != inventory_digest(migration.target_inventory):
        problems.append("the target's dashboard inventory changed")
    then = {d["id"]: d for d in saved["dashboards"] if isinstance(d, dict) and "id" in d}
    now = {d.id: d for d in migration.dashboards}
    for dash_id in sorted(then.keys() - now.keys()):
        problems.append(f"{dash_id} was planned and is no longer")
    for dash_id in sorted(now.keys() - then.keys()):
        problems.append(f"{dash_id} is planned now and was not")
    for dash_id in sorted(then.keys() & now.keys()):
        old, new = then[dash_id], now[dash_id]
        if old.get("source_sha256") != new.source_sha256:
            problems.append(f"{dash_id}: the source payload changed")
        if old.get("action") != new.action.value:
            problems.append(f"{dash_id}: was {old.get('action')}, is now {new.action.value}")
        if old.get("target_id") != new.target_id:
            problems.append(f"{dash_id}: target id changed")
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise StalePlanError(
            f"the saved plan is stale: {shown}{more}",
            hint="review a fresh plan: migrate plan PLAN --out SAVED.json",
        )
