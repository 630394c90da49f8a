"""Plan defaults live in one place, `models.Settings`: the plan schema's `default` values, its
descriptions and docs/plan-reference.md are held to it, so none can drift."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from pathlib import Path
from typing import Any

import pytest

from migrate.models import Endpoint, Plan, Settings
from migrate.plan import parse_plan, plan_to_document
from migrate.schema import load_schema

DOC = (Path(__file__).parent.parent / "docs" / "plan-reference.md").read_text()
PROPERTIES: dict[str, Any] = load_schema("plan")["$defs"]["settings"]["properties"]
FIELDS = [f.name for f in dataclasses.fields(Settings)]
NONE = object()  # "none" in prose: no value, or an empty list


def _json(value: Any) -> Any:
    """A Settings value as the plan's JSON would write it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def _prose(text: str) -> Any:
    """A default as prose writes it (`8`, `skip`, `""`, empty, none, null) as a JSON value."""
    text = text.strip().strip("`")
    if text == "none":
        return NONE
    if text == "empty":
        return ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _same(prose: Any, value: Any) -> bool:
    return value in ([], None) if prose is NONE else bool(prose == value)


def _reference_defaults() -> dict[str, str]:
    """key → default column of the `settings` table in the reference."""
    section = DOC.split("## `settings`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| [^|]*(?:\\\|[^|]*)* \| ([^|]*) \|", section, re.MULTILINE)
    return {key: default for key, default in rows}


def test_the_schema_describes_exactly_the_settings() -> None:
    """Every Settings field is a schema property with a default, and nothing else is."""
    assert sorted(PROPERTIES) == sorted(FIELDS)
    assert all("default" in PROPERTIES[name] for name in FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_schema_default_is_the_settings_default(name: str) -> None:
    """The schema's `default` is the dataclass default, in JSON."""
    assert PROPERTIES[name]["default"] == _json(getattr(Settings(), name))


@pytest.mark.parametrize("name", FIELDS)
def test_schema_description_states_the_settings_default(name: str) -> None:
    """The description's closing `Default X.` names the dataclass default."""
    found = re.search(r"Default ([^.]+)\.$", PROPERTIES[name]["description"])
    assert found, PROPERTIES[name]["description"]
    assert _same(_prose(found.group(1)), _json(getattr(Settings(), name)))


@pytest.mark.parametrize("name", FIELDS)
def test_reference_states_the_settings_default(name: str) -> None:
    """docs/plan-reference.md's settings table gives the dataclass default."""
    documented = _reference_defaults()
    assert name in documented
    assert _same(_prose(documented[name]), _json(getattr(Settings(), name)))


def test_a_plan_without_settings_gets_the_settings_defaults() -> None:
    """The loader fills every missing setting from Settings, not from defaults of its own."""
    plan = parse_plan(
        "version: 1\ntarget: {url: 'sandbox://demo', workspace: W}\ndashboards: []\n",
        environ={},
    )
    assert plan.settings == Settings()
    empty = parse_plan(
        "version: 1\ntarget: {url: 'sandbox://demo', workspace: W}\nsettings: {}\ndashboards: []\n",
        environ={},
    )
    assert empty.settings == Settings()


def test_plan_to_document_writes_every_setting() -> None:
    """Every `Settings` field reaches the written plan (saved plans hash it: a field left out
    would let a changed value pass as fresh)."""
    document = plan_to_document(Plan(target=Endpoint("sandbox://demo", "W")))
    assert set(document["settings"]) == {f.name for f in dataclasses.fields(Settings)}
