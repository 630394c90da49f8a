"""The command line: parse options, call one core function, render the result, exit.

With `render.py`, the only code that prints, and the only code that exits. `MigrateError`s
become a clean message and their A5 exit code; anything else is a bug (exit 1) and shows its
traceback only with `--debug`. All output passes through `credentials.redact`, so a token can
never reach the console.
"""

from __future__ import annotations

import functools
import json
import math
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from migrate import __version__
from migrate.cli.render import (
    INTERNAL_ERROR,
    INTERRUPTED,
    ConsoleProgress,
    GraphFormat,
    HistoryFormat,
    PlanFormat,
    ReportFiles,
    SchemaName,
    apply_exit_code,
    err,
    fleet_apply_exit_code,
    fleet_plan_exit_code,
    make_progress,
    out,
    plan_exit_code,
    printable,
    render_apply,
    render_fleet_apply,
    render_fleet_plan,
    render_history,
    render_plan,
    render_validation,
    shown,
    validate_exit_code,
)
from migrate.credentials import redact
from migrate.errors import MigrateError, PlanError, UsageError
from migrate.models import ConnectionPolicy, Endpoint, Plan

if TYPE_CHECKING:
    from migrate.fleet import FleetReport
    from migrate.models import Plan
    from migrate.runner import RunOptions

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help="Move Databrain dashboards between workspaces: plan, validate, order, import, report.",
    no_args_is_help=True,
    add_completion=False,
    # Locals in a traceback could hold a token: never show them.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich-formatted help costs ~0.15 s of imports on every --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    debug = False
    quiet = False
    policy = ConnectionPolicy()


STATE = _State()


def _fail(exc: MigrateError) -> NoReturn:
    err(f"error: {exc}")
    if STATE.debug:
        err(redact("".join(traceback.format_exception(exc))))
    raise typer.Exit(exc.exit_code)


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command, turning MigrateError into its exit code and any other error into exit 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MigrateError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            if STATE.debug:
                err(redact("".join(traceback.format_exception(exc))))
            else:
                err(
                    f"internal error (a bug in migrate): {type(exc).__name__}: {redact(str(exc))}"
                    "\n  rerun with --debug for the traceback, and report it"
                )
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        out(f"migrate {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Full tracebacks (tokens redacted).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")
    ] = False,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Journals, locks, embedded sandbox databases.")
    ] = Path(".migrate"),
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            help="CA bundle for TLS (else SSL_CERT_FILE, else system).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    allow_insecure_http: Annotated[
        bool,
        typer.Option("--allow-insecure-http", help="Allow plain http to a non-loopback host."),
    ] = False,
    max_wait: Annotated[
        float,
        typer.Option(
            "--max-wait",
            metavar="SECONDS",
            min=0,
            help="Longest wait a server may announce (Retry-After, rate-limit resets, pacing);"
            " a longer one stops the run with exit 5 instead of waiting.",
        ),
    ] = 300.0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Move Databrain dashboards between workspaces."""
    if not math.isfinite(max_wait):
        raise typer.BadParameter("must be a finite number of seconds", param_hint="--max-wait")
    STATE.debug = debug
    STATE.quiet = quiet
    STATE.policy = ConnectionPolicy(
        state_dir=state_dir,
        allow_insecure_http=allow_insecure_http,
        ca_bundle=ca_bundle,
        max_wait_s=max_wait,
    )


def _load(plan_path: Path) -> Plan:
    from migrate.plan import load_plan  # noqa: PLC0415  # YAML loads only for commands that need it

    return load_plan(plan_path)


def _check_outputs(paths: dict[str, Path | None]) -> None:
    """UsageError (exit 2) for an output flag whose file cannot be written: found before any
    work, not after every import, when the report would be lost."""
    from migrate.storage import output_problem  # noqa: PLC0415

    for flag, path in paths.items():
        if path is not None and (why := output_problem(path)) is not None:
            raise UsageError(
                f"{flag} {path}: cannot write there: {why}", hint=f"give {flag} a writable path"
            )


def _run(coro: Coroutine[Any, Any, R], progress: ConsoleProgress | None = None) -> R:
    """Run the core's coroutine to its end, then take down `progress` (however it ended)."""
    import asyncio  # noqa: PLC0415  # start-up: only commands that do I/O pay for asyncio

    try:
        return asyncio.run(coro)
    finally:
        if progress is not None:
            progress.close()


def _target_option() -> Any:
    return typer.Option(
        "--target",
        "-t",
        help="Only this target of the plan's `targets:` (name or glob; repeatable).",
    )


def _run_targets(
    plan: Plan, options: RunOptions, *, names: list[str] | None, dry_run: bool
) -> FleetReport:
    """Plan or apply a plan with `targets:` (docs/contract.md A8)."""
    from migrate.fleet import run_targets  # noqa: PLC0415

    progress = make_progress(quiet=STATE.quiet)
    return _run(
        run_targets(plan, options, progress, names=tuple(names or ()), dry_run=dry_run), progress
    )


def _history_option() -> Any:
    return typer.Option(
        "--history",
        help="Deploy history folder (docs/contract.md A9); default <state-dir>/history/.",
    )


def _note_option() -> Any:
    return typer.Option(
        "--note",
        help="The deploy's commit in the history (default: GITHUB_SHA, else CI_COMMIT_SHA).",
    )


def _select_option() -> Any:
    return typer.Option(
        "--select",
        "-s",
        help="Dashboard id or glob; +ID adds its dependencies, ID+ its dependents.",
    )


@app.command()
@handled
def plan(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan (YAML or JSON).")],
    fmt: Annotated[PlanFormat, typer.Option("--format", "-f")] = PlanFormat.TEXT,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write a saved plan.")] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 10 when there is work to do.")
    ] = False,
    select: Annotated[list[str] | None, _select_option()] = None,
    target: Annotated[list[str] | None, _target_option()] = None,
    history: Annotated[Path | None, _history_option()] = None,
) -> None:
    """Show what apply would do per dashboard; reads source and target, writes nothing."""
    from migrate.runner import RunOptions, run_plan  # noqa: PLC0415

    _check_outputs({"--out": out_file})
    loaded = _load(plan_file)
    started = time.time()
    options = RunOptions(selectors=tuple(select or ()), policy=STATE.policy, history_dir=history)
    if loaded.targets or target:
        if out_file is not None:
            raise UsageError("--out (a saved plan) is for a plan with one `target:`")
        report = _run_targets(loaded, options, names=target, dry_run=True)
        render_fleet_plan(report, fmt)
        raise typer.Exit(fleet_plan_exit_code(report, detailed_exitcode))
    migration = _run(run_plan(loaded, options, ConsoleProgress(quiet=STATE.quiet or fmt != "text")))
    render_plan(migration, fmt, started)
    if out_file is not None:
        from migrate.savedplan import write_saved_plan  # noqa: PLC0415

        write_saved_plan(migration, out_file)
    raise typer.Exit(plan_exit_code(migration, detailed_exitcode))


@app.command()
@handled
def apply(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan (YAML or JSON).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; zero writes.")] = False,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Requests in flight.")
    ] = None,
    max_rps: Annotated[
        float | None, typer.Option("--max-rps", min=0.01, help="Cap on requests per second.")
    ] = None,
    keep_going: Annotated[
        bool, typer.Option("--keep-going/--fail-fast", help="Continue independent dashboards.")
    ] = True,
    report_file: Annotated[Path | None, typer.Option("--report", help="A5 JSON report.")] = None,
    junit_file: Annotated[Path | None, typer.Option("--junit", help="JUnit XML.")] = None,
    summary_file: Annotated[
        Path | None, typer.Option("--summary", help="Markdown summary.")
    ] = None,
    select: Annotated[list[str] | None, _select_option()] = None,
    saved_plan: Annotated[
        Path | None,
        typer.Option("--plan", help="Apply exactly this saved plan; refuse if it is stale."),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="Read payloads from this bundle, not the source API."),
    ] = None,
    target: Annotated[list[str] | None, _target_option()] = None,
    history: Annotated[Path | None, _history_option()] = None,
    note: Annotated[str | None, _note_option()] = None,
) -> None:
    """Apply the plan: import what is missing, in dependency order."""
    from migrate.runner import RunOptions, run_apply, run_plan  # noqa: PLC0415

    _check_outputs({"--report": report_file, "--junit": junit_file, "--summary": summary_file})
    loaded = _load(plan_file)
    options = RunOptions(
        selectors=tuple(select or ()),
        concurrency=concurrency,
        max_rps=max_rps,
        fail_fast=not keep_going,
        bundle=bundle,
        policy=STATE.policy,
        history_dir=history,
        note=note,
    )
    if loaded.targets or target:
        if saved_plan is not None:
            raise UsageError("--plan (a saved plan) is for a plan with one `target:`")
        fleet = _run_targets(loaded, options, names=target, dry_run=dry_run)
        if dry_run:
            render_fleet_plan(fleet, PlanFormat.TEXT)
            raise typer.Exit(fleet_plan_exit_code(fleet, False))
        files = ReportFiles(report=report_file, junit=junit_file, summary=summary_file)
        render_fleet_apply(fleet, files, quiet=STATE.quiet, rerun=f"migrate apply {plan_file}")
        raise typer.Exit(fleet_apply_exit_code(fleet))
    if dry_run:  # exactly `plan`: a saved plan is not read
        started = time.time()
        progress = make_progress(quiet=STATE.quiet)
        migration = _run(run_plan(loaded, options, progress), progress)
        render_plan(migration, PlanFormat.TEXT, started)
        raise typer.Exit(plan_exit_code(migration, False))
    saved = None
    if saved_plan is not None:
        from migrate.savedplan import load_saved_plan  # noqa: PLC0415

        if select:
            raise UsageError("--select cannot be combined with --plan (it has its own selection)")
        saved = load_saved_plan(saved_plan)
    progress = make_progress(quiet=STATE.quiet)
    report = _run(run_apply(loaded, options, progress, saved=saved), progress)
    files = ReportFiles(report=report_file, junit=junit_file, summary=summary_file)
    render_apply(report, files, quiet=STATE.quiet, rerun=f"migrate apply {plan_file}")
    raise typer.Exit(apply_exit_code(report))


@app.command()
@handled
def export(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan (its source is read).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write.")],
    select: Annotated[list[str] | None, _select_option()] = None,
) -> None:
    """Write a bundle of the selected source dashboards, every payload validated first."""
    from migrate.runner import RunOptions, run_export  # noqa: PLC0415

    loaded = _load(plan_file)
    options = RunOptions(selectors=tuple(select or ()), policy=STATE.policy)
    summary = _run(run_export(loaded, out_dir, options, ConsoleProgress(quiet=STATE.quiet)))
    if not STATE.quiet:
        for entry in summary.dashboards:
            out(f"  {shown(entry.id)} → {entry.file}")
    out(
        f"Export: {len(summary.dashboards)} dashboards to {summary.manifest}"
        f" (manifest sha256 {summary.manifest_sha256})."
    )


@app.command()
@handled
def validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Plan files and export files (told apart by content)."),
    ] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="A bundle directory.")] = None,
) -> None:
    """Check plans, export files and bundles offline; no network, no token."""
    from migrate.validation import validate_paths  # noqa: PLC0415

    if not files and bundle is None:
        raise UsageError("nothing to validate", hint="pass plan or export files, or --bundle DIR")
    report = validate_paths(list(files or []), bundle=bundle)
    render_validation(report)
    raise typer.Exit(validate_exit_code(report))


@app.command()
@handled
def graph(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan.")],
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.TEXT,
    select: Annotated[list[str] | None, _select_option()] = None,
) -> None:
    """Show the dependency graph: explicit and inferred edges, and the import order."""
    from migrate.formats import render_graph  # noqa: PLC0415
    from migrate.runner import RunOptions, run_plan  # noqa: PLC0415

    loaded = _load(plan_file)
    options = RunOptions(selectors=tuple(select or ()), policy=STATE.policy)
    migration = _run(run_plan(loaded, options, ConsoleProgress(quiet=True), read_target=False))
    out(render_graph(migration.graph, fmt.value).rstrip())


@app.command()
@handled
def schema(
    name: Annotated[
        SchemaName, typer.Argument(help="plan, dashboard, bundle, saved-plan or deploy")
    ],
) -> None:
    """Print a JSON Schema: the plan, the dashboard payload, a bundle manifest or a saved plan."""
    from migrate.schema import load_schema  # noqa: PLC0415

    out(json.dumps(load_schema(name.value), indent=2, ensure_ascii=False))


@app.command()
@handled
def inventory(
    url: Annotated[str, typer.Option("--url", help="API base URL, or sandbox://NAME.")],
    workspace: Annotated[str, typer.Option("--workspace", help="Workspace name (exact).")],
    token_env: Annotated[
        str, typer.Option("--token-env", help="Env var holding the service token.")
    ] = "DATABRAIN_TOKEN",  # noqa: S107  # the NAME of an env var, not a token
    fmt: Annotated[PlanFormat, typer.Option("--format", "-f")] = PlanFormat.TEXT,
) -> None:
    """List a workspace's dashboards."""
    from migrate.connection import check_url, open_client  # noqa: PLC0415

    try:
        check_url(url, allow_insecure_http=STATE.policy.allow_insecure_http, origin="--url")
    except PlanError as exc:  # a URL from a flag is a usage error (A5), not a plan error
        raise UsageError(exc.message, hint=exc.hint) from exc
    endpoint = Endpoint(url=url, workspace=workspace, token_env=token_env)

    async def listing() -> list[Any]:
        async with open_client(endpoint, policy=STATE.policy) as client:
            return await client.list_dashboards(workspace)

    refs = _run(listing())
    if fmt is PlanFormat.JSON:
        out(json.dumps([{"id": r.id, "name": r.name} for r in refs], indent=2, ensure_ascii=False))
        return
    ids = [shown(r.id) for r in refs]
    width = max((len(i) for i in ids), default=2)
    for ref, shown_id in zip(refs, ids, strict=True):
        out(f"{shown_id:<{width}}  {printable(ref.name, lines=False)}")
    if not STATE.quiet:
        err(f"{len(refs)} dashboards in {workspace!r}")


@app.command()
@handled
def sandbox(
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8787,
    host: Annotated[
        str, typer.Option("--host", help="Bind address; loopback unless you say otherwise.")
    ] = "127.0.0.1",
    db: Annotated[Path, typer.Option("--db", help="SQLite file; state survives restarts.")] = Path(
        "sandbox.db"
    ),
    seed: Annotated[str | None, typer.Option("--seed", help="'demo' loads the demo data.")] = None,
    token_env: Annotated[
        str,
        typer.Option("--token-env", help="Env var with the token clients must send."),
    ] = "MIGRATE_SANDBOX_TOKEN",  # noqa: S107  # the NAME of an env var, not a token
    latency_ms: Annotated[float, typer.Option("--latency-ms", min=0)] = 0,
    fail_rate: Annotated[float, typer.Option("--fail-rate", min=0, max=1, help="5xx.")] = 0,
    drop_rate: Annotated[
        float, typer.Option("--drop-rate", min=0, max=1, help="Commit, then cut the connection.")
    ] = 0,
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="N/S: N requests per S seconds, then 429.")
    ] = None,
    rate_headers: Annotated[
        str,
        typer.Option("--rate-headers", help="none|draft6|draft7|legacy: rate-limit header form."),
    ] = "draft6",
    rate_mode: Annotated[
        str, typer.Option("--rate-mode", help="window|bucket: fixed window or token bucket.")
    ] = "window",
    retry_after: Annotated[
        float | None,
        typer.Option("--retry-after", min=0, help="Fault: every 429 says Retry-After SECONDS."),
    ] = None,
    rate_header: Annotated[
        list[str] | None,
        typer.Option("--rate-header", help="Fault: NAME=VALUE sent on every answer (repeatable)."),
    ] = None,
    slow_body_bps: Annotated[
        float, typer.Option("--slow-body-bps", min=0, help="Fault: bodies at N bytes/second.")
    ] = 0,
    endless_pages: Annotated[
        str, typer.Option("--endless-pages", help="Fault: off|endless|cycle listing pages.")
    ] = "off",
    echo_credentials: Annotated[
        str,
        typer.Option(
            "--echo-credentials",
            help="Fault: off|errors|all: echo the Authorization header into error bodies and"
            " HTML error pages and listed names (errors), and exports (all).",
        ),
    ] = "off",
    remint_ids: Annotated[
        bool,
        typer.Option("--remint-ids", help="Give imported metrics fresh ids, as Databrain does."),
    ] = False,
    company_unique_ids: Annotated[
        bool, typer.Option("--company-unique-ids", help="Dashboard ids unique across workspaces.")
    ] = False,
    mint_dashboard_ids: Annotated[
        bool,
        typer.Option("--mint-dashboard-ids", help="Fault: store imports under ids of its own."),
    ] = False,
    no_duplicate_refusal: Annotated[
        bool,
        typer.Option(
            "--no-duplicate-refusal", help="Fault: an import under an existing id stores a copy."
        ),
    ] = False,
    remint_other_ids: Annotated[
        bool,
        typer.Option(
            "--remint-other-ids", help="Fault: change metric datasourceIds and filter ids."
        ),
    ] = False,
    listing_lag: Annotated[
        int,
        typer.Option(
            "--listing-lag", min=0, help="Fault: writes show in listings N listings later."
        ),
    ] = 0,
    refuse_after_store: Annotated[
        float,
        typer.Option(
            "--refuse-after-store", min=0, max=1, help="Fault: rate of stored imports answered 400."
        ),
    ] = 0.0,
    data_app: Annotated[
        list[str] | None,
        typer.Option(
            "--data-app",
            help="NAME=KEY: a data app and the API key its embed calls take (repeatable). For"
            " throwaway local keys only: other users can read argv; see --data-app-env.",
        ),
    ] = None,
    data_app_env: Annotated[
        list[str] | None,
        typer.Option(
            "--data-app-env", help="NAME=VAR: a data app whose API key is in env var VAR."
        ),
    ] = None,
    embed_ids: Annotated[
        str, typer.Option("--embed-ids", help="How new embed ids are minted: suffix or uuid.")
    ] = "suffix",
    schema_pairs_sql_only: Annotated[
        bool,
        typer.Option(
            "--schema-pairs-sql-only",
            help="schemaPairs rewrite SQL text only; filter bindings keep the source schema.",
        ),
    ] = False,
) -> None:
    """Run the local Databrain-compatible server (SQLite-backed, with fault injection)."""
    import os  # noqa: PLC0415

    from migrate.sandbox import (  # noqa: PLC0415
        DEFAULT_TOKEN,
        EMBED_ID_SCHEMES,
        SandboxConfig,
        parse_data_app,
        parse_rate_limit,
        serve,
    )
    from migrate.sandbox.config import parse_header_override  # noqa: PLC0415

    apps: list[tuple[str, str]] = []
    for flag, values in (("--data-app", data_app), ("--data-app-env", data_app_env)):
        for text in values or ():
            try:
                name, value = parse_data_app(text)
            except ValueError as exc:
                raise UsageError(f"{flag}: {exc}", hint=f"e.g. {flag} 'Sales App=...'") from None
            if flag == "--data-app-env":
                key = os.environ.get(value, "").strip()
                if not key:
                    raise UsageError(f"--data-app-env: env var {value} is not set or empty")
                value = key
            apps.append((name, value))
    if embed_ids not in EMBED_ID_SCHEMES:
        raise UsageError(f"--embed-ids: {embed_ids!r}", hint="use suffix or uuid")

    limit: tuple[int, float] | None = None
    if rate_limit:
        try:
            limit = parse_rate_limit(rate_limit)
        except ValueError as exc:
            raise UsageError(f"--rate-limit: {exc}", hint="e.g. --rate-limit 50/1") from None
    if seed not in (None, "demo", "empty"):
        raise UsageError(f"unknown seed {seed!r}", hint="use --seed demo or --seed empty")
    token = os.environ.get(token_env) or DEFAULT_TOKEN
    if token == DEFAULT_TOKEN:
        err(f"sandbox token: the local default {DEFAULT_TOKEN!r}; set {token_env} to change it")
    try:
        overrides = tuple(parse_header_override(text) for text in rate_header or ())
        config = SandboxConfig(
            db_path=db,
            token=token,
            seed=seed,
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            drop_rate=drop_rate,
            rate_limit=limit,
            rate_headers=rate_headers,  # type: ignore[arg-type]  # checked by SandboxConfig
            rate_mode=rate_mode,  # type: ignore[arg-type]  # checked by SandboxConfig
            retry_after_s=retry_after,
            rate_header_override=overrides,
            slow_body_bps=slow_body_bps,
            endless_pages=endless_pages,  # type: ignore[arg-type]  # checked by SandboxConfig
            echo_credentials=echo_credentials,  # type: ignore[arg-type]  # checked there too
            remint_ids=remint_ids,
            company_unique_ids=company_unique_ids,
            mint_dashboard_ids=mint_dashboard_ids,
            no_duplicate_refusal=no_duplicate_refusal,
            remint_other_ids=remint_other_ids,
            listing_lag=listing_lag,
            refuse_after_store_rate=refuse_after_store,
            data_apps=tuple(apps),
            embed_ids=embed_ids,
            schema_pairs_sql_only=schema_pairs_sql_only,
        )
    except ValueError as exc:
        raise UsageError(f"sandbox: {exc}") from None
    serve(config, host=host, port=port)


def _views(loaded: Plan, names: list[str] | None) -> list[tuple[str | None, Plan]]:
    """(target name, single-target plan) for each selected target; (None, plan) with one
    `target:`. Every token and key the plan names that is set is registered for redaction
    first: the history these commands print is a file anyone with the folder could edit."""
    from migrate.credentials import register_configured  # noqa: PLC0415
    from migrate.fleet import select_targets  # noqa: PLC0415

    sides = [loaded.target, *(t.plan.target for t in loaded.targets)]
    register_configured([*sides, *([loaded.source] if loaded.source else [])])
    if loaded.targets or names:
        return [(t.name, t.plan) for t in select_targets(loaded, names or ())]
    return [(None, loaded)]


@app.command()
@handled
def history(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan (YAML or JSON).")],
    fmt: Annotated[HistoryFormat, typer.Option("--format", "-f")] = HistoryFormat.TEXT,
    target: Annotated[list[str] | None, _target_option()] = None,
    history_dir: Annotated[Path | None, _history_option()] = None,
) -> None:
    """The deploys recorded for each target, newest first; reads local files only."""
    from migrate.runner import RunOptions  # noqa: PLC0415

    loaded = _load(plan_file)
    options = RunOptions(policy=STATE.policy, history_dir=history_dir)
    histories = [
        (name, view.target.describe(), options.history_of(view).deploys())
        for name, view in _views(loaded, target)
    ]
    render_history(histories, fmt)


@app.command()
@handled
def rollback(
    plan_file: Annotated[Path, typer.Argument(help="The migration plan (YAML or JSON).")],
    to: Annotated[
        str, typer.Option("--to", help="The deploy id to go back to (see `migrate history`).")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; zero writes.")] = False,
    target: Annotated[list[str] | None, _target_option()] = None,
    history_dir: Annotated[Path | None, _history_option()] = None,
    note: Annotated[str | None, _note_option()] = None,
    report_file: Annotated[Path | None, typer.Option("--report", help="A5 JSON report.")] = None,
    junit_file: Annotated[Path | None, typer.Option("--junit", help="JUnit XML.")] = None,
    summary_file: Annotated[
        Path | None, typer.Option("--summary", help="Markdown summary.")
    ] = None,
) -> None:
    """Bring every dashboard a deploy touched back to what it left, through the replace path."""
    from migrate.rollback import (  # noqa: PLC0415
        prepare_rollback,
        run_rollback,
        run_rollback_plan,
    )
    from migrate.runner import RunOptions  # noqa: PLC0415

    _check_outputs({"--report": report_file, "--junit": junit_file, "--summary": summary_file})
    loaded = _load(plan_file)
    options = RunOptions(policy=STATE.policy, history_dir=history_dir, note=note)
    views = _views(loaded, target)
    holding = [
        (name, view)
        for name, view in views
        if any(d.deploy_id == to for d in options.history_of(view).deploys())
    ]
    # Every check (deploy id, snapshots, data app) before the first request of any target.
    prepared = [
        (name, prepare_rollback(view, options, to)) for name, view in (holding or views[:1])
    ]
    code = 0
    for name, rolled in prepared:
        if name is not None:
            out(f"== {name}")
        if dry_run:
            started = time.time()
            progress = make_progress(quiet=STATE.quiet)
            migration = _run(run_rollback_plan(rolled, options, progress), progress)
            render_plan(migration, PlanFormat.TEXT, started)
            code = max(code, plan_exit_code(migration, False))
            continue
        progress = make_progress(quiet=STATE.quiet)
        report = _run(run_rollback(rolled, options, progress), progress)
        files = ReportFiles(report=report_file, junit=junit_file, summary=summary_file)
        render_apply(
            report, files, quiet=STATE.quiet, rerun=f"migrate rollback {plan_file} --to {to}"
        )
        code = max(code, apply_exit_code(report))
    raise typer.Exit(code)


@app.command()
@handled
def unlock(
    lock_id: Annotated[str, typer.Argument(help="The lock id a refused run printed.")],
) -> None:
    """Break a target lock left by another run (see the refused run's message)."""
    from migrate.lock import break_lock  # noqa: PLC0415

    info = break_lock(STATE.policy.state_dir, lock_id)
    out(f"removed {info.describe()} for {info.target}")


def main() -> None:
    """Console-script entry point."""
    app()
