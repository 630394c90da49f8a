"""What `migrate validate` does, offline: plans, export files and bundles checked, nothing sent.

Each file is classified by its content, never its extension: a plan has `version` plus
`target`/`dashboards` (or another plan key), an export file has `_meta`/`data`. Plans are loaded
exactly as `apply` would load them (so an unset `${VAR}` is the same exit 3); export files are
checked against the dashboard schema, plus every `settings.payload_schema` of the plans given in
the same call. No network, no token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from migrate.bundle import load_manifest
from migrate.errors import PlanError, Violation
from migrate.jsontext import parse_json
from migrate.models import Plan
from migrate.plan import MAX_PLAN_BYTES, load_plan, read_plan_document
from migrate.schema import PayloadValidator, check_export_meta
from migrate.storage import read_input

FileKind = Literal["plan", "export", "bundle", "unknown"]

_PLAN_KEYS = frozenset({"version", "source", "target", "settings", "dashboards"})
_EXPORT_KEYS = frozenset({"_meta", "data"})


@dataclass(frozen=True)
class FileReport:
    """What validation found in one file (or bundle)."""

    path: str
    kind: FileKind
    problems: tuple[Violation | str, ...] = ()
    unusable: PlanError | None = None
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        """True when the file is usable and has no problems."""
        return self.unusable is None and not self.problems


@dataclass(frozen=True)
class ValidationReport:
    """Every file's result, in the order given (plans and exports, then schemas, then a bundle)."""

    files: tuple[FileReport, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every file is usable and has no problems."""
        return all(f.ok for f in self.files)


def validate_paths(files: Sequence[Path], *, bundle: Path | None = None) -> ValidationReport:
    """Validate plan and export files (and a bundle); never touches the network."""
    results: list[FileReport | None] = []
    exports: dict[int, Any] = {}  # position in `results` → parsed export document
    plans: list[Plan] = []
    for path in files:
        try:
            kind, document = _classify(path)
        except PlanError as exc:
            results.append(FileReport(str(path), "unknown", unusable=exc))
            continue
        if kind == "plan":
            report = _validate_plan(path)
            if report.plan is not None:
                plans.append(report.plan)
            results.append(report)
        else:
            exports[len(results)] = document
            results.append(None)  # filled in once every plan's payload_schema is known
    validators, schema_errors = _payload_validators(plans)
    for index, document in exports.items():
        found: list[Violation] = []
        for validator in validators:
            found.extend(validator.validate_export(document))
        results[index] = FileReport(str(files[index]), "export", problems=tuple(_unique(found)))
    done = [r for r in results if r is not None]
    done.extend(schema_errors)
    if bundle is not None:
        done.append(_validate_bundle(bundle, validators))
    return ValidationReport(tuple(done))


def _classify(path: Path) -> tuple[FileKind, Any]:
    """Read `path` and tell a plan from an export file by its keys."""
    name = str(path)
    raw = read_input(path, what="file")
    text = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"{", b"[")):
        document = parse_json(raw, source=name)  # JSON, however it is named
    else:
        if len(raw) > MAX_PLAN_BYTES:
            raise PlanError(
                f"{len(raw):,} bytes and not JSON: neither a plan nor an export file",
                file=name,
                hint="validate takes plan files (YAML/JSON) and export files (JSON)",
            )
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(f"not valid UTF-8 (byte {exc.start})", file=name) from exc
        document = read_plan_document(decoded, path=name)
    if isinstance(document, dict):
        keys = set(document)
        if keys & _EXPORT_KEYS and "version" not in keys:
            return "export", document
        if keys & _PLAN_KEYS:
            return "plan", document
    raise PlanError(
        "neither a plan nor a dashboard export file",
        file=name,
        line=1,
        hint="a plan has `version`, `target` and `dashboards`; an export file has `_meta` and "
        "`data` (as the export-dashboard API returns it)",
    )


def _validate_plan(path: Path) -> FileReport:
    try:
        plan = load_plan(path)
    except PlanError as exc:
        return FileReport(str(path), "plan", unusable=exc)
    return FileReport(str(path), "plan", plan=plan)


def _payload_validators(plans: Sequence[Plan]) -> tuple[list[PayloadValidator], list[FileReport]]:
    """The built-in validator plus one per distinct `payload_schema` of the plans given."""
    validators = [PayloadValidator()]
    problems: list[FileReport] = []
    seen: set[str] = set()
    for plan in plans:
        extra = plan.settings.payload_schema
        if extra is None or extra in seen:
            continue
        seen.add(extra)
        try:
            validators.append(PayloadValidator(Path(extra)))
        except PlanError as exc:
            problems.append(FileReport(extra, "unknown", unusable=exc))
    return validators, problems


def _validate_bundle(bundle: Path, validators: Sequence[PayloadValidator]) -> FileReport:
    """The bundle's manifest and sha256s checked, then each export file it lists validated, and
    its `_meta` checked against the manifest's id and workspace, as `apply --bundle` does."""
    name = str(bundle)
    try:
        manifest = load_manifest(bundle)
        found: list[Violation | str] = []
        for entry in manifest.entries:
            path = Path(bundle) / entry.file
            document = parse_json(read_input(path, what="bundle file"), source=str(path))
            violations = [
                v for validator in validators for v in validator.validate_export(document)
            ]
            violations += check_export_meta(
                document, dashboard_id=entry.id, workspace=manifest.source.workspace
            )
            found.extend(Violation(f"{path.name}: {v.path}", v.message) for v in violations)
    except PlanError as exc:
        return FileReport(name, "bundle", unusable=exc)
    except OSError as exc:
        return FileReport(
            name, "bundle", unusable=PlanError(f"cannot read bundle: {exc}", file=name)
        )
    return FileReport(name, "bundle", problems=tuple(found))


def _unique(items: Sequence[Violation]) -> list[Violation]:
    return list(dict.fromkeys(items))
