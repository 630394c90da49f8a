"""docs/plan-reference.md documents every key of the plan schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrate.schema import load_schema

DOC = (Path(__file__).parent.parent / "docs" / "plan-reference.md").read_text()


def property_names(node: Any) -> set[str]:
    """Every property name anywhere in a schema."""
    names: set[str] = set()
    if isinstance(node, dict):
        names |= set(node.get("properties", {}))
        for value in node.values():
            names |= property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= property_names(value)
    return names


def test_every_plan_key_is_documented() -> None:
    """Each property of the plan schema appears as `key` in the reference."""
    missing = [k for k in sorted(property_names(load_schema("plan"))) if f"`{k}`" not in DOC]
    assert missing == []


def test_validate_exit_codes_documented() -> None:
    """The reference lists validate's exit codes 0, 3 and 4."""
    for code in ("| 0 |", "| 3 |", "| 4 |"):
        assert code in DOC
