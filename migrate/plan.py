"""Migration plans (docs/contract.md A2): YAML or JSON in, a validated frozen `Plan` out.

The only module that imports PyYAML. Loading runs in this order, each failure a `PlanError`
(exit 3) naming the file, the line and column, and the fix:

1. YAML/JSON syntax, duplicate keys, size and alias-expansion caps;
2. literal secrets (`token: ...`) refused before anything echoes them;
3. `${VAR}` / `${VAR:-default}` / `$$` expansion in string values;
4. the plan JSON Schema (`migrate schema plan`), the same file editors use for completion;
5. what a schema cannot say: duplicate ids, unknown `depends_on`, dependency cycles.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrate.errors import PlanError
from migrate.graph import find_cycle
from migrate.jsonpath import format_path
from migrate.jsontext import JSONLimits, parse_json
from migrate.models import (
    ColumnRef,
    ConnectionType,
    DashboardSpec,
    DataApp,
    EmbedsMode,
    Endpoint,
    FilterBindingRule,
    NamedTarget,
    OnConflict,
    OnDrift,
    Plan,
    SchemaPair,
    Settings,
    Verify,
    WorkspaceBinding,
)
from migrate.schema import SchemaProblem, plan_problems
from migrate.storage import read_input

MAX_PLAN_BYTES = 4 * 1024 * 1024
MAX_PLAN_NODES = 50_000  # YAML aliases can expand a small file enormously ("billion laughs")

PathKey = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line, column

_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|(\{))")
_VAR_BODY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?$", re.DOTALL)
_SECRET_KEY = re.compile(
    r"(^|_)(token|password|passwd|pwd|secret|api_?key|apikey|access_?key|private_?key"
    r"|credentials?|bearer)(_|$)"
)
_SAFE_SECRET_KEYS = ("token_env", "token_file", "key_env", "key_file")


@dataclass
class _Document:
    """A parsed plan document with the position of every key and value."""

    data: Any
    keys: dict[PathKey, Position] = field(default_factory=dict)
    values: dict[PathKey, Position] = field(default_factory=dict)
    expanded: set[PathKey] = field(default_factory=set)

    def where(self, path: PathKey, *, key: bool = False) -> Position | None:
        """Position of the value at `path` (or its key), else of the nearest enclosing value."""
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            table = self.keys if key and depth == len(path) else self.values
            if prefix in table:
                return table[prefix]
        return None


def load_plan(path: Path, *, environ: Mapping[str, str] | None = None) -> Plan:
    """Read, expand and validate the plan at `path`; relative paths in it become plan-relative."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_BYTES:
            raise PlanError(
                f"plan is {size:,} bytes, over the {MAX_PLAN_BYTES:,}-byte limit",
                file=name,
                hint="is this really a plan? plans are a few kilobytes",
            )
    except OSError as exc:
        raise PlanError(
            f"cannot read plan: {exc.strerror or exc}",
            file=name,
            hint="check the path and its permissions",
        ) from exc
    raw = read_input(path, what="plan")
    plan = _parse(raw, name, environ)
    return _relative_to(plan, path.parent)


def parse_plan(
    text: str, *, path: str = "<plan>", environ: Mapping[str, str] | None = None
) -> Plan:
    """Like `load_plan`, from text; `path` only names the plan in errors and in `Plan.path`."""
    return _parse(text.encode("utf-8", "surrogatepass"), path, environ)


def read_plan_document(text: str, *, path: str = "<plan>") -> Any:
    """The plain data of a YAML/JSON document (no expansion, no schema): for sniffing file kinds."""
    return _compose(text, path).data


def _parse(raw: bytes, name: str, environ: Mapping[str, str] | None) -> Plan:
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"plan is over the {MAX_PLAN_BYTES:,}-byte limit", file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"plan is not valid UTF-8 (byte {exc.start})",
            file=name,
            hint="save the plan as UTF-8",
        ) from exc
    doc = _compose(text, name)
    if doc.data is None:
        raise PlanError(
            "plan is empty",
            file=name,
            line=1,
            hint="start from plans/demo.yaml: version, target and dashboards are required",
        )
    _refuse_secrets(doc, name)
    _expand(doc, name, os.environ if environ is None else environ)
    _check_schema(doc, name)
    _check_target_keys(doc, name)
    plan = _build(doc, name, hashlib.sha256(raw).hexdigest())
    _check_embeds(plan, doc, name)
    if not plan.targets:
        return _check_dashboards(plan, doc, name)
    views = tuple(
        NamedTarget(t.name, _check_dashboards(t.plan, doc, name), t.create_workspace)
        for t in plan.targets
    )
    return _check_dashboards(Plan(**{**plan.__dict__, "targets": views}), doc, name)


def _check_embeds(plan: Plan, doc: _Document, name: str) -> None:
    """`embeds: mirror` needs a data app on the source and on every target that mirrors."""
    views = [(t.name, t.plan) for t in plan.targets] or [("target", plan)]
    for target_name, view in views:
        if view.settings.embeds is not EmbedsMode.MIRROR:
            continue
        if view.source is None or view.source.data_app is None:
            raise _located(
                doc,
                name,
                ("source",),
                "`embeds: mirror` needs `source.data_app` (where the embeds to mirror are)",
                "add `data_app: {name: ..., key_env: VAR}` to source, or set `embeds: none`",
            )
        if view.target.data_app is None:
            where: PathKey = ("targets", target_name) if plan.targets else ("target",)
            raise _located(
                doc,
                name,
                where,
                f"`embeds: mirror` needs a `data_app` on {_place(where)}",
                "add `data_app: {name: ..., key_env: VAR}` there, or set `embeds: none` in"
                " its settings",
            )


def _check_target_keys(doc: _Document, name: str) -> None:
    """A plan has `target` or `targets` (A8), never both and never neither."""
    data = doc.data
    if not isinstance(data, dict):
        return  # the schema check explains what a plan is
    if "target" in data and "targets" in data:
        raise _located(
            doc,
            name,
            ("targets",),
            "the plan has both `target` and `targets`",
            "keep one: `target:` for one workspace, or move it under `targets:` as"
            " `targets: {NAME: {url, workspace, ...}}`",
            key=True,
        )
    if "target" not in data and "targets" not in data:
        raise _located(
            doc,
            name,
            (),
            "the plan is missing required key `target`",
            "add `target:` (url and workspace of one target workspace), or `targets:` for several",
        )


# --- 1. syntax --------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader: plain data only, no Python objects."""


# YAML 1.2 reads `1e-3` as a number; PyYAML (YAML 1.1) would read it as a string.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _compose(text: str, name: str) -> _Document:
    try:
        return _compose_yaml(text, name)
    except PlanError:
        if not text.lstrip("\ufeff \t\r\n").startswith("{"):
            raise
    # JSON that PyYAML rejects (tabs, `"a":1`): parse it as JSON, without value positions.
    data = parse_json(text, source=name, limits=JSONLimits(max_bytes=MAX_PLAN_BYTES))
    return _Document(data)


def _compose_yaml(text: str, name: str) -> _Document:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = _Document(None)
        if node is not None:
            doc.data = _Builder(loader, doc, name).build(node, ())
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        hint = "fix the syntax at that position (indentation, a missing ':' or quote)"
        line_text = (
            text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        )
        if "${" in line_text:
            hint = 'inside [ ] or { }, quote values that use ${VAR}: "${VAR}"'
        raise PlanError(
            f"YAML syntax error: {problem}",
            file=name,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint=hint,
        ) from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"YAML syntax error: {exc}", file=name) from exc
    except RecursionError as exc:
        raise PlanError(
            "plan nests too deeply to read", file=name, hint="a plan is at most a few levels deep"
        ) from exc
    finally:
        loader.dispose()


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions and refusing duplicates."""

    def __init__(self, loader: _Loader, doc: _Document, name: str) -> None:
        self.loader = loader
        self.doc = doc
        self.name = name
        self.count = 0

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_PLAN_NODES:
            raise PlanError(
                f"plan expands to more than {MAX_PLAN_NODES:,} values",
                file=self.name,
                hint="remove YAML aliases (*name) that repeat large sections",
            )
        self.doc.values[path] = _position(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise PlanError(
                        "a key must be a plain name",
                        file=self.name,
                        line=_position(key_node)[0],
                        column=_position(key_node)[1],
                        hint="write keys as simple words such as `id:`",
                    )
                key = str(key_node.value)
                if key in result:
                    first = self.doc.keys[(*path, key)]
                    line, column = _position(key_node)
                    raise PlanError(
                        f"duplicate key `{key}` (first at line {first[0]})",
                        file=self.name,
                        line=line,
                        column=column,
                        hint=f"keep one `{key}:` in this mapping",
                    )
                self.doc.keys[(*path, key)] = _position(key_node)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(value: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, Any]]:
    """Every (path, value) below `value`, parents first, without recursion."""
    stack: list[tuple[PathKey, Any]] = [(path, value)]
    while stack:
        here, node = stack.pop()
        yield here, node
        if isinstance(node, dict):
            stack.extend(((*here, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*here, i), v) for i, v in reversed(list(enumerate(node))))


def _located(
    doc: _Document, name: str, path: PathKey, message: str, hint: str, *, key: bool = False
) -> PlanError:
    line, column = doc.where(path, key=key) or (None, None)
    return PlanError(message, file=name, line=line, column=column, hint=hint)


# --- 2. secrets -------------------------------------------------------------------------------


def _refuse_secrets(doc: _Document, name: str) -> None:
    for path, value in _walk(doc.data):
        if not path or not isinstance(path[-1], str):
            continue
        key = path[-1].lower().replace("-", "_")
        if key in _SAFE_SECRET_KEYS or not _SECRET_KEY.search(key):
            continue
        if difflib.get_close_matches(key, _SAFE_SECRET_KEYS, n=1, cutoff=0.8):
            continue  # a typo of token_env/token_file: the schema suggests the right key
        if value is None or value == "" or isinstance(value, (dict, list)):
            continue
        # Never put the value in the message: it is a credential.
        raise _located(
            doc,
            name,
            path,
            f"`{format_path(path, '')}` holds a literal secret; a plan must never contain a token",
            "delete it, put the token in an environment variable and name that variable with "
            "`token_env: VAR_NAME` (or `token_file: PATH`) under source/target",
            key=True,
        )


# --- 3. ${VAR} expansion ----------------------------------------------------------------------


def _expand(doc: _Document, name: str, environ: Mapping[str, str]) -> None:
    for path, value in list(_walk(doc.data)):
        if isinstance(value, str) and "$" in value and path:
            new = _expand_text(value, environ, lambda m, h, p=path: _located(doc, name, p, m, h))
            if new != value:
                _assign(doc.data, path, new)
                doc.expanded.add(path)


def _expand_text(text: str, environ: Mapping[str, str], fail: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        if match.group(3) is not None:
            raise fail(
                "unterminated `${` in a value",
                "close it: ${VAR} or ${VAR:-default}; $$ is a literal $",
            )
        body = _VAR_BODY.match(match.group(2))
        if body is None:
            raise fail(
                f"`${{{match.group(2)}}}` is not a variable reference",
                "use ${VAR} or ${VAR:-default} (letters, digits and _ in VAR); $$ is a literal $",
            )
        var, operator, default = body.groups()
        value = environ.get(var)
        if operator == ":-" and not value:
            return str(default)
        if operator == "-" and value is None:
            return str(default)
        if value is None:
            raise fail(
                f"environment variable {var} is not set",
                f"export {var}=..., or give a default: ${{{var}:-value}}",
            )
        return value

    return _VAR.sub(replace, text)


def _assign(data: Any, path: PathKey, value: Any) -> None:
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value


def _coerce(text: str) -> Any:
    """How YAML would read `text` had it been written in the plan (for `${N:-8}` and friends)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


# --- 4. schema --------------------------------------------------------------------------------


def _check_schema(doc: _Document, name: str) -> None:
    problems = plan_problems(doc.data)
    coerced = False
    for problem in problems:
        if problem.kind == "type" and problem.path in doc.expanded:
            value = _get(doc.data, problem.path)
            if isinstance(value, str):
                _assign(doc.data, problem.path, _coerce(value))
                coerced = True
    if coerced:
        problems = plan_problems(doc.data)
    if not problems:
        return
    errors = [_explain(p, doc, name) for p in problems]
    # An unknown key is usually a misspelt expected one: name it first, with the suggestion.
    order = {id(e): p.kind != "additionalProperties" for e, p in zip(errors, problems, strict=True)}
    errors.sort(key=lambda e: (order[id(e)], e.line or 0, e.column or 0))
    first = errors[0]
    if len(errors) > 1:
        first.message += f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})"
    raise first


def _get(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _place(path: PathKey) -> str:
    return f"`{format_path(path, '')}`" if path else "the plan"


def _explain(problem: SchemaProblem, doc: _Document, name: str) -> PlanError:
    path, kind = problem.path, problem.kind
    what = _place(path)
    if kind == "additionalProperties" and problem.keys:
        key = problem.keys[0]
        close = difflib.get_close_matches(key, problem.allowed, n=1, cutoff=0.6)
        hint = (
            f"did you mean `{close[0]}`?"
            if close
            else "valid keys here: " + ", ".join(problem.allowed)
        )
        return _located(doc, name, (*path, key), f"unknown key `{key}` in {what}", hint, key=True)
    if kind == "required" and problem.keys:
        key = problem.keys[0]
        described = f" ({problem.description.strip()})" if problem.description.strip() else ""
        return _located(
            doc, name, path, f"{what} is missing required key `{key}`", f"add `{key}:`{described}"
        )
    if kind == "type":
        if not path:
            return _located(
                doc,
                name,
                path,
                f"the plan must be a mapping, not {_article(problem.got)}",
                "a plan is a mapping with version, target and dashboards (see plans/demo.yaml)",
            )
        return _located(
            doc,
            name,
            path,
            f"{what} must be {problem.expected}, not {_article(problem.got)}",
            f"write {problem.expected} for {what}: {problem.description}".rstrip(": "),
        )
    if kind == "const" and path == ("version",):
        return _located(
            doc, name, path, "`version` must be 1", "set `version: 1`, the only plan format"
        )
    if kind == "oneOf" and len(path) == 2 and path[0] == "dashboards":
        return _explain_entry(doc, name, path)
    if kind == "not" and len(path) == 1:
        return _located(
            doc,
            name,
            path,
            f"{what} sets both `token_env` and `token_file`",
            "keep exactly one of them",
        )
    if kind == "pattern" and path[-1:] in (("token_env",), ("key_env",)):
        return _located(
            doc,
            name,
            path,
            f"{what} must be the NAME of an environment variable (letters, digits, _)",
            "put the token itself in that variable, never in the plan",
        )
    if kind == "pattern":
        return _located(
            doc, name, path, f"{what} is not valid: expected {problem.expected}", problem.expected
        )
    return _located(
        doc,
        name,
        path,
        f"{what} must be {problem.expected}" if kind != "oneOf" else f"{what} is not valid",
        problem.description or f"change {what} to {problem.expected}",
    )


def _explain_entry(doc: _Document, name: str, path: PathKey) -> PlanError:
    entry = _get(doc.data, path)
    what = _place(path)
    if not isinstance(entry, dict):
        return _located(
            doc, name, path, f"{what} must be a mapping", "write `- id: <dashboard id>`"
        )
    if "id" in entry and "match" in entry:
        return _located(
            doc,
            name,
            path,
            f"{what} has both `id` and `match`",
            "keep one: `id` selects one dashboard, `match` a glob of them",
        )
    if "match" in entry and "target_id" in entry:
        return _located(
            doc,
            name,
            (*path, "target_id"),
            f"{what} sets `target_id` on a `match` entry",
            "a glob selects many dashboards: use settings.id_prefix/id_suffix, or list it by `id`",
            key=True,
        )
    return _located(
        doc,
        name,
        path,
        f"{what} has neither `id` nor `match`",
        'add `id: <dashboard id>` or `match: "<glob>"`',
    )


# --- 5. build and cross-check -----------------------------------------------------------------


def _pairs(items: Any) -> tuple[SchemaPair, ...]:
    return tuple(SchemaPair(p["replace"], p["target"]) for p in items or ())


def _endpoint(value: Any) -> Endpoint | None:
    if value is None:
        return None
    app = value.get("data_app")
    return Endpoint(
        url=value["url"],
        workspace=value["workspace"],
        token_env=value.get("token_env"),
        token_file=value.get("token_file"),
        data_app=None
        if app is None
        else DataApp(app["name"], key_env=app.get("key_env"), key_file=app.get("key_file")),
    )


def _column(text: str) -> ColumnRef:
    schema, table, column = text.split(".")
    return ColumnRef(schema, table, column)


def _binding(value: Any) -> WorkspaceBinding | None:
    if value is None:
        return None
    connection = ConnectionType(value["connection_type"])
    name = value.get("datamart") if "datamart" in value else value["datasource"]
    return WorkspaceBinding(connection, name)


def _check_replace(
    doc: _Document, name: str, settings: Settings, target: Endpoint, where: tuple[str, ...]
) -> None:
    """`on_conflict: replace` needs the target's data app: PlanError naming the fix if absent."""
    if settings.on_conflict is not OnConflict.REPLACE or target.data_app is not None:
        return
    line, column = doc.where(where) or (None, None)
    raise PlanError(
        "`settings.on_conflict: replace` needs the target's data app: the only way to"
        " delete a dashboard goes through one of its embeds (docs/contract.md A7)",
        file=name,
        line=line,
        column=column,
        hint="add `data_app: {name: <data app>, key_env: <VAR holding its API key>}` under"
        " the target (or key_file: PATH), or set on_conflict to skip or fail",
    )


def _build(doc: _Document, name: str, digest: str) -> Plan:
    data = doc.data
    raw = data.get("settings") or {}
    settings = _settings(doc, name, raw, ("settings",))
    dashboards = tuple(
        DashboardSpec(
            id=entry.get("id"),
            match=entry.get("match"),
            target_id=entry.get("target_id"),
            name=entry.get("name"),
            depends_on=tuple(entry.get("depends_on", ())),
            schema_pairs=_pairs(entry.get("schema_pairs")),
            line=(doc.where(("dashboards", i)) or (None, None))[0],
        )
        for i, entry in enumerate(data["dashboards"])
    )
    source = _endpoint(data.get("source"))
    if "targets" not in data:
        target = _endpoint(data["target"])
        assert target is not None
        _check_replace(doc, name, settings, target, ("settings", "on_conflict"))
        return Plan(
            target=target,
            source=source,
            settings=settings,
            dashboards=dashboards,
            path=name,
            digest=digest,
        )
    views: list[NamedTarget] = []
    for target_name, value in data["targets"].items():
        # A target's `settings` keys replace the plan's keys of the same name, whole.
        merged = {**raw, **(value.get("settings") or {})}
        endpoint = _endpoint(value)
        assert endpoint is not None
        view_settings = _settings(doc, name, merged, ("targets", target_name, "settings"))
        where = (
            ("targets", target_name, "settings", "on_conflict")
            if "on_conflict" in (value.get("settings") or {})
            else ("settings", "on_conflict")
        )
        _check_replace(doc, name, view_settings, endpoint, where)
        view = Plan(
            target=endpoint,
            source=source,
            settings=view_settings,
            dashboards=dashboards,
            path=name,
            digest=digest,
        )
        views.append(NamedTarget(target_name, view, _binding(value.get("create_workspace"))))
    return Plan(
        target=views[0].plan.target,
        source=source,
        settings=settings,
        dashboards=dashboards,
        path=name,
        digest=digest,
        targets=tuple(views),
        waves=_waves(doc, name, [v.name for v in views]),
    )


def _waves(doc: _Document, name: str, names: list[str]) -> tuple[tuple[str, ...], ...]:
    """The plan's waves, checked: every target in exactly one; default one wave of all."""
    raw = doc.data.get("waves")
    if raw is None:
        return (tuple(names),)
    seen: dict[str, int] = {}
    for i, wave in enumerate(raw):
        for j, target_name in enumerate(wave):
            if target_name not in names:
                close = difflib.get_close_matches(target_name, names, n=1, cutoff=0.6)
                hint = f"did you mean `{close[0]}`? " if close else ""
                raise _located(
                    doc,
                    name,
                    ("waves", i, j),
                    f"wave {i + 1} names `{target_name}`, which is not one of `targets`",
                    hint + "targets: " + ", ".join(names),
                )
            if target_name in seen:
                raise _located(
                    doc,
                    name,
                    ("waves", i, j),
                    f"target `{target_name}` is in wave {seen[target_name] + 1} and wave {i + 1}",
                    "put each target in exactly one wave",
                )
            seen[target_name] = i
    missing = [n for n in names if n not in seen]
    if missing:
        raise _located(
            doc,
            name,
            ("waves",),
            f"`waves` leaves out {', '.join(missing)}",
            "put every target in a wave (or drop `waves` for one wave of every target)",
        )
    return tuple(tuple(wave) for wave in raw)


def _settings(doc: _Document, name: str, raw: Any, where: PathKey) -> Settings:
    default = Settings()  # the one place plan defaults live
    max_rps = raw.get("max_rps", default.max_rps)
    if max_rps is not None and not math.isfinite(float(max_rps)):
        line, column = doc.where((*where, "max_rps")) or (None, None)
        raise PlanError(
            f"`settings.max_rps` must be a finite number above 0, not {max_rps}",
            file=name,
            line=line,
            column=column,
            hint="write a number of requests per second such as 5, or null for no cap",
        )
    return Settings(
        concurrency=int(raw.get("concurrency", default.concurrency)),
        on_conflict=OnConflict(raw.get("on_conflict", default.on_conflict)),
        on_drift=OnDrift(raw.get("on_drift", default.on_drift)),
        id_prefix=raw.get("id_prefix", default.id_prefix),
        id_suffix=raw.get("id_suffix", default.id_suffix),
        schema_pairs=_pairs(raw.get("schema_pairs", default.schema_pairs)),
        infer_dependencies=raw.get("infer_dependencies", default.infer_dependencies),
        compare_ignore=tuple(raw.get("compare_ignore", default.compare_ignore)),
        payload_schema=raw.get("payload_schema", default.payload_schema),
        max_rps=None if max_rps is None else float(max_rps),
        embeds=EmbedsMode(raw.get("embeds", default.embeds)),
        embed_access=dict(raw.get("embed_access", default.embed_access)),
        filter_bindings=tuple(
            FilterBindingRule(_column(rule["from"]), _column(rule["to"]))
            for rule in raw.get("filter_bindings", default.filter_bindings)
        ),
        verify=Verify(raw.get("verify", default.verify)),
    )


def _check_dashboards(plan: Plan, doc: _Document, name: str) -> Plan:
    explicit: dict[str, int] = {}
    targets: dict[str, str] = {}
    s = plan.settings
    for i, spec in enumerate(plan.dashboards):
        if spec.id is None:
            continue
        if spec.id in explicit:
            first = plan.dashboards[explicit[spec.id]].line
            raise _located(
                doc,
                name,
                ("dashboards", i, "id"),
                f"dashboard `{spec.id}` is listed twice (first at line {first})",
                "remove one of the two entries",
            )
        explicit[spec.id] = i
        target_id = spec.target_id or f"{s.id_prefix}{spec.id}{s.id_suffix}"
        if target_id in targets:
            raise _located(
                doc,
                name,
                ("dashboards", i),
                f"`{targets[target_id]}` and `{spec.id}` would both become `{target_id}`",
                "give one of them a different `target_id`",
            )
        targets[target_id] = spec.id
    has_globs = any(spec.match is not None for spec in plan.dashboards)
    deferred: list[str] = []
    for i, spec in enumerate(plan.dashboards):
        for j, dep in enumerate(spec.depends_on):
            if dep in explicit:
                continue
            if has_globs:
                # A glob entry may select `dep`; only the source inventory can tell (runner checks).
                if dep not in deferred:
                    deferred.append(dep)
                continue
            close = difflib.get_close_matches(dep, list(explicit), n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise _located(
                doc,
                name,
                ("dashboards", i, "depends_on", j),
                f"`{spec.id}` depends on `{dep}`, which is not in the plan",
                hint + f"add `- id: {dep}` to dashboards, or remove it from depends_on",
            )
    cycle = find_cycle(
        {
            spec.id: [d for d in spec.depends_on if d in explicit]
            for spec in plan.dashboards
            if spec.id
        }
    )
    if cycle:
        raise _located(
            doc,
            name,
            ("dashboards", explicit[cycle[0]]),
            "dependency cycle: " + " → ".join(cycle),
            "remove one of these depends_on entries: dashboards in a cycle cannot be ordered",
        )
    if deferred:
        return Plan(**{**plan.__dict__, "deferred_depends_on": tuple(deferred)})
    return plan


def _relative_to(plan: Plan, base: Path) -> Plan:
    """Resolve relative `token_file`/`payload_schema` paths against the plan's directory."""

    def fix(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute():
            return None if value is None else str(Path(value).expanduser())
        return str(base / value)

    def endpoint(e: Endpoint | None) -> Endpoint | None:
        if e is None:
            return e
        app = e.data_app
        if app is not None and app.key_file is not None:
            app = dataclasses.replace(app, key_file=fix(app.key_file))
        return dataclasses.replace(e, token_file=fix(e.token_file), data_app=app)

    settings = plan.settings
    if settings.payload_schema is not None:
        settings = Settings(**{**settings.__dict__, "payload_schema": fix(settings.payload_schema)})
    target = endpoint(plan.target)
    assert target is not None
    views = tuple(
        NamedTarget(t.name, _relative_to(t.plan, base), t.create_workspace) for t in plan.targets
    )
    return Plan(
        **{
            **plan.__dict__,
            "source": endpoint(plan.source),
            "target": target,
            "settings": settings,
            "targets": views,
        }
    )


# --- writing ----------------------------------------------------------------------------------


def plan_to_document(plan: Plan) -> dict[str, Any]:
    """The plan as plain data that `parse_plan` reads back into an equal Plan (`$` escaped)."""

    def esc(value: str) -> str:
        return value.replace("$", "$$")

    def endpoint(e: Endpoint) -> dict[str, Any]:
        out: dict[str, Any] = {"url": esc(e.url), "workspace": esc(e.workspace)}
        if e.token_env is not None:
            out["token_env"] = esc(e.token_env)
        if e.token_file is not None:
            out["token_file"] = esc(e.token_file)
        if e.data_app is not None:
            app: dict[str, Any] = {"name": esc(e.data_app.name)}
            if e.data_app.key_env is not None:
                app["key_env"] = esc(e.data_app.key_env)
            if e.data_app.key_file is not None:
                app["key_file"] = esc(e.data_app.key_file)
            out["data_app"] = app
        return out

    def pairs(items: tuple[SchemaPair, ...]) -> list[dict[str, str]]:
        return [{"replace": esc(p.replace), "target": esc(p.target)} for p in items]

    def column(c: ColumnRef) -> str:
        return esc(f"{c.schema}.{c.table}.{c.column}")

    def settings(s: Settings) -> dict[str, Any]:
        return {
            "concurrency": s.concurrency,
            "on_conflict": s.on_conflict.value,
            "on_drift": s.on_drift.value,
            "id_prefix": esc(s.id_prefix),
            "id_suffix": esc(s.id_suffix),
            "schema_pairs": pairs(s.schema_pairs),
            "infer_dependencies": s.infer_dependencies,
            "compare_ignore": [esc(p) for p in s.compare_ignore],
            "payload_schema": None if s.payload_schema is None else esc(s.payload_schema),
            "max_rps": s.max_rps,
            "embeds": s.embeds.value,
            "embed_access": _escaped(s.embed_access, esc),
            "filter_bindings": [
                {"from": column(r.source), "to": column(r.target)} for r in s.filter_bindings
            ],
            "verify": s.verify.value,
        }

    doc: dict[str, Any] = {"version": 1}
    if plan.source is not None:
        doc["source"] = endpoint(plan.source)
    if plan.targets:
        targets: dict[str, Any] = {}
        for t in plan.targets:
            named = endpoint(t.plan.target)
            if t.create_workspace is not None:
                key = (
                    "datamart" if t.create_workspace.connection_type.uses_datamart else "datasource"
                )
                named["create_workspace"] = {
                    "connection_type": t.create_workspace.connection_type.value,
                    key: esc(t.create_workspace.name),
                }
            named["settings"] = settings(t.plan.settings)
            targets[t.name] = named
        doc["targets"] = targets
        doc["waves"] = [list(wave) for wave in plan.waves]
    else:
        doc["target"] = endpoint(plan.target)
    doc["settings"] = settings(plan.settings)
    entries = []
    for d in plan.dashboards:
        entry: dict[str, Any] = {}
        for key in ("id", "match", "target_id", "name"):
            value = getattr(d, key)
            if value is not None:
                entry[key] = esc(value)
        if d.depends_on:
            entry["depends_on"] = [esc(x) for x in d.depends_on]
        if d.schema_pairs:
            entry["schema_pairs"] = pairs(d.schema_pairs)
        entries.append(entry)
    doc["dashboards"] = entries
    return doc


def _escaped(value: Any, esc: Any) -> Any:
    """`value` with `$` escaped in every string (keys included)."""
    if isinstance(value, str):
        return esc(value)
    if isinstance(value, dict):
        return {esc(k): _escaped(v, esc) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v, esc) for v in value]
    return value
