"""Saved plans (`plan --out`, `apply --plan`): exactly what was reviewed, so apply can refuse
(exit 7) when the source payloads or the target inventory changed since."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from migrate.planner import MigrationPlan
from migrate.storage import write_private

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
