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
    DashboardSpec,
    Endpoint,
    OnConflict,
    Plan,
    SchemaPair,
    Settings,
    Verify,
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
_SAFE_SECRET_KEYS = ("token_env", "token_file")


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
    plan = _build(doc, name, hashlib.sha256(raw).hexdigest())
    return _check_dashboards(plan, doc, name)


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
    if kind == "pattern" and path[-1:] == ("token_env",):
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
    return Endpoint(
        url=value["url"],
        workspace=value["workspace"],
        token_env=value.get("token_env"),
        token_file=value.get("token_file"),
    )


def _build(doc: _Document, name: str, digest: str) -> Plan:
    data = doc.data
    raw = data.get("settings") or {}
    default = Settings()  # the one place plan defaults live
    max_rps = raw.get("max_rps", default.max_rps)
    if max_rps is not None and not math.isfinite(float(max_rps)):
        line, column = doc.where(("settings", "max_rps")) or (None, None)
        raise PlanError(
            f"`settings.max_rps` must be a finite number above 0, not {max_rps}",
            file=name,
            line=line,
            column=column,
            hint="write a number of requests per second such as 5, or null for no cap",
        )
    settings = Settings(
        concurrency=int(raw.get("concurrency", default.concurrency)),
        on_conflict=OnConflict(raw.get("on_conflict", default.on_conflict)),
        id_prefix=raw.get("id_prefix", default.id_prefix),
        id_suffix=raw.get("id_suffix", default.id_suffix),
        schema_pairs=_pairs(raw.get("schema_pairs", default.schema_pairs)),
        infer_dependencies=raw.get("infer_dependencies", default.infer_dependencies),
        compare_ignore=tuple(raw.get("compare_ignore", default.compare_ignore)),
        payload_schema=raw.get("payload_schema", default.payload_schema),
        max_rps=None if max_rps is None else float(max_rps),
        verify=Verify(raw.get("verify", default.verify)),
    )
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
    target = _endpoint(data["target"])
    assert target is not None
    return Plan(
        target=target,
        source=_endpoint(data.get("source")),
        settings=settings,
        dashboards=dashboards,
        path=name,
        digest=digest,
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
        if e is None or e.token_file is None:
            return e
        return Endpoint(e.url, e.workspace, e.token_env, fix(e.token_file))

    settings = plan.settings
    if settings.payload_schema is not None:
        settings = Settings(**{**settings.__dict__, "payload_schema": fix(settings.payload_schema)})
    target = endpoint(plan.target)
    assert target is not None
    return Plan(
        **{**plan.__dict__, "source": endpoint(plan.source), "target": target, "settings": settings}
    )


# --- writing ----------------------------------------------------------------------------------


def plan_to_document(plan: Plan) -> dict[str, Any]:
    """The plan as plain data that `parse_plan` reads back into an equal Plan (`$` escaped)."""

    def esc(value: str) -> str:
        return value.replace("$", "$$")

    def endpoint(e: Endpoint) -> dict[str, Any]:
        out = {"url": esc(e.url), "workspace": esc(e.workspace)}
        if e.token_env is not None:
            out["token_env"] = esc(e.token_env)
        if e.token_file is not None:
            out["token_file"] = esc(e.token_file)
        return out

    def pairs(items: tuple[SchemaPair, ...]) -> list[dict[str, str]]:
        return [{"replace": esc(p.replace), "target": esc(p.target)} for p in items]

    s = plan.settings
    doc: dict[str, Any] = {"version": 1}
    if plan.source is not None:
        doc["source"] = endpoint(plan.source)
    doc["target"] = endpoint(plan.target)
    doc["settings"] = {
        "concurrency": s.concurrency,
        "on_conflict": s.on_conflict.value,
        "id_prefix": esc(s.id_prefix),
        "id_suffix": esc(s.id_suffix),
        "schema_pairs": pairs(s.schema_pairs),
        "infer_dependencies": s.infer_dependencies,
        "compare_ignore": [esc(p) for p in s.compare_ignore],
        "payload_schema": None if s.payload_schema is None else esc(s.payload_schema),
        "max_rps": s.max_rps,
        "verify": s.verify.value,
    }
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
