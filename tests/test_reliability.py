"""Reliability: faults survived, imports exactly once, resume after a crash, one writer per target,
stale saved plans refused, interrupts handled in two stages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from migrate.cli import app
from migrate.client import ClientOptions, DatabrainClient
from migrate.diff import normalize_for_compare
from migrate.errors import LockHeldError, UsageError
from migrate.journal import Journal, read_journal
from migrate.lock import TargetLock, break_lock
from migrate.retry import RetryPolicy
from migrate.sandbox import SandboxConfig, generate_workspace, running_server
from migrate.sandbox import create_app as create_sandbox
from tests.helpers import apply, results, sandbox_of, write_plan

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def assert_target_matches_source(sandbox: object, source: str, target: str) -> None:
    """Every source dashboard is in the target exactly once, with equal normalized content."""
    src = dict(sandbox.list_dashboards(source))  # type: ignore[attr-defined]
    tgt_list = [i for i, _ in sandbox.list_dashboards(target)]  # type: ignore[attr-defined]
    assert len(tgt_list) == len(set(tgt_list)), "a dashboard was imported twice"
    assert set(tgt_list) == set(src), set(src) ^ set(tgt_list)
    for dash_id in src:
        a = normalize_for_compare(sandbox.get_dashboard(source, dash_id))  # type: ignore[attr-defined]
        b = normalize_for_compare(sandbox.get_dashboard(target, dash_id))  # type: ignore[attr-defined]
        assert a == b, dash_id


def test_faulty_server_ends_with_every_dashboard_exactly_once(tmp_path: Path) -> None:
    """10% 5xx, 15% dropped-after-commit and a rate limit: 200 dashboards all land once, equal."""
    sandbox = sandbox_of(tmp_path)
    generate_workspace(sandbox, "Big Source", 200, payload_kb=8, max_depth=5, seed=7)
    sandbox.add_workspace("Big Target")
    sandbox.faults.fail_rate = 0.10
    sandbox.faults.drop_rate = 0.15
    sandbox.faults.rate_limit = (400, 1.0)
    sandbox.faults.reseed(1)
    path = write_plan(tmp_path, source="Big Source", target="Big Target")
    report = apply(path, tmp_path, concurrency=16)
    assert report.ok, [(o.id, o.result, o.error) for o in report.outcomes if not o.result.ok]
    assert set(results(report).values()) == {"created"}
    dropped = sum(1 for r in sandbox.requests("import") if r.dropped)
    failed = sum(1 for r in sandbox.requests() if r.status >= 500)
    assert dropped > 0 and failed > 0  # the faults really happened
    assert sandbox.write_count == 200
    assert_target_matches_source(sandbox, "Big Source", "Big Target")
    attempts = [o.attempts for o in report.outcomes]
    assert max(attempts) <= 6


def test_lock_refuses_a_second_writer_and_unlock_breaks_it(tmp_path: Path) -> None:
    """A held lock refuses another run (exit 7 naming the holder); unlock LOCK_ID removes it."""
    with TargetLock(tmp_path, "https://x#W") as held:
        with pytest.raises(LockHeldError) as info:
            TargetLock(tmp_path, "https://x#W").acquire()
        assert held.info.lock_id in str(info.value)
        assert info.value.exit_code == 7
        path = write_plan(tmp_path)
        # The CLI run against the same target is refused too.
        target_key = "sandbox://demo#Sales Prod"
        with TargetLock(tmp_path, target_key) as other:
            refused = runner.invoke(app, ["--state-dir", str(tmp_path), "apply", str(path)])
            assert refused.exit_code == 7
            assert other.info.lock_id in refused.stderr
            unlocked = runner.invoke(
                app, ["--state-dir", str(tmp_path), "unlock", other.info.lock_id]
            )
            assert unlocked.exit_code == 0
        assert runner.invoke(app, ["--state-dir", str(tmp_path), "apply", str(path)]).exit_code == 0
    with pytest.raises(UsageError, match="no lock"):
        break_lock(tmp_path, "nope")


def test_dead_holder_lock_is_taken_over(tmp_path: Path) -> None:
    """A lock left by a dead process on this host is taken over with a warning."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock = TargetLock(tmp_path, "t")
    lock.acquire()
    doc = json.loads(lock.path.read_text())
    doc["pid"] = int(dead.stdout)
    lock.path.write_text(json.dumps(doc))
    warnings: list[str] = []
    TargetLock(tmp_path, "t", warn=warnings.append).acquire()
    assert warnings and "gone" in warnings[0]


def test_journal_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    """A journal's torn last line is skipped on reading, and the run counts as unfinished."""

    async def write() -> Path:
        journal = Journal(tmp_path, "k")
        journal.record("start")
        journal.record("intent", id="a", target_id="a")
        journal.record("outcome", id="a", target_id="a", result="created")
        journal.record("intent", id="b", target_id="b")
        await journal.sync()
        path = journal.path
        os.close(journal._fd)  # simulate a crash: no "end" record
        return path

    path = asyncio.run(write())
    with path.open("ab") as handle:
        handle.write(b'{"ts": 1, "event": "outcome", "target_id": "b", "res')
    prior = read_journal(path)
    assert prior is not None and not prior.finished
    assert prior.confirmed == {"a"} and prior.unconfirmed == {"b"}
    assert path.stat().st_mode & 0o077 == 0


def test_stale_saved_plan_is_refused(tmp_path: Path) -> None:
    """apply --plan runs a fresh saved plan, and refuses (exit 7) once source content changed."""
    state = str(tmp_path)
    path = write_plan(tmp_path, dashboards="  - match: 'region-*'\n  - id: sales-by-region\n")
    saved = tmp_path / "saved.json"
    made = runner.invoke(app, ["--state-dir", state, "plan", str(path), "--out", str(saved)])
    assert made.exit_code == 0, made.output
    assert saved.stat().st_mode & 0o077 == 0
    sandbox = sandbox_of(tmp_path)
    data = sandbox.get_dashboard("Sales Dev", "region-emea")
    assert data is not None
    data["metrics"][0]["name"] = "changed after review"
    sandbox.update_dashboard("Sales Dev", "region-emea", data)
    stale = runner.invoke(app, ["--state-dir", state, "apply", str(path), "--plan", str(saved)])
    assert stale.exit_code == 7, stale.output
    assert "region-emea" in stale.stderr and "source payload changed" in stale.stderr
    assert sandbox.write_count == 0
    fresh = tmp_path / "fresh.json"
    runner.invoke(app, ["--state-dir", state, "plan", str(path), "--out", str(fresh)])
    ok = runner.invoke(app, ["--state-dir", state, "apply", str(path), "--plan", str(fresh)])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, ["--state-dir", state, "apply", str(path), "--plan", str(fresh)])
    assert again.exit_code == 7  # the target changed: the reviewed plan no longer holds


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured() -> None:
    """A 429 whose Retry-After is an HTTP-date waits until that date (fake clock)."""
    sleeps: list[float] = []
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200, json={"data": []})]
    )

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = DatabrainClient(
        "https://db.example",
        "t0ken",
        transport=httpx.MockTransport(lambda r: next(answers)),
        options=ClientOptions(retry=RetryPolicy(attempts=3)),
        sleep=fake_sleep,
        rand=lambda: 0.0,
    )
    async with client:
        await client.list_workspaces()
    assert len(sleeps) == 1 and 3.5 <= sleeps[0] <= 5.5


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


APPLY_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "KTOK": "tk-kill"}


def start_apply(state: Path, plan: Path, *, quiet: bool = False) -> subprocess.Popen[str]:
    """`python -m migrate apply PLAN` in a child process, its output captured (or discarded)."""
    sink = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "migrate", "--state-dir", str(state), "apply", str(plan)],
        env=APPLY_ENV,
        stdout=sink,
        stderr=sink,
        text=True,
    )


def run_apply(state: Path, plan: Path) -> tuple[int, str]:
    """Run an apply to its end: (exit code, stderr)."""
    proc = start_apply(state, plan)
    _out, errs = proc.communicate(timeout=300)
    return proc.returncode, errs


@pytest.fixture
def slow_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real sandbox server (thread) with 60 generated dashboards and 15 ms latency."""
    sandbox_app = create_sandbox(SandboxConfig(db_path=tmp_path / "srv.db", token="tk-kill"))
    sandbox = sandbox_app.state.sandbox
    generate_workspace(sandbox, "Src", 60, payload_kb=4, max_depth=5, seed=3)
    sandbox.add_workspace("Dst")
    sandbox.faults.latency_ms = 15
    with running_server(sandbox_app) as url:
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "version: 1\n"
            f"source: {{url: '{url}', workspace: Src, token_env: KTOK}}\n"
            f"target: {{url: '{url}', workspace: Dst, token_env: KTOK}}\n"
            "settings: {concurrency: 4}\n"
            "dashboards:\n  - match: '*'\n"
        )
        yield sandbox, plan


@pytest.mark.slow
def test_sigkill_at_many_points_then_rerun_finds_everything_once(
    tmp_path: Path, slow_server: tuple[object, Path]
) -> None:
    """SIGKILL the apply at 20+ points across its run; each re-run resumes; the end state is
    every dashboard exactly once and equal to its source."""
    sandbox, plan = slow_server
    state = tmp_path / "state"
    kills = 0
    delay = 0.6  # python start-up is part of the cycle; sweep forward through the run
    while kills < 22:
        proc = start_apply(state, plan, quiet=True)
        time.sleep(delay)
        if proc.poll() is not None:
            break  # it finished before the kill: the sweep reached the end of the work
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        delay += 0.05
    code, errs = run_apply(state, plan)
    assert code == 0, errs
    assert kills >= 20
    assert_target_matches_source(sandbox, "Src", "Dst")
    assert sandbox.write_count == 60  # type: ignore[attr-defined]


@pytest.mark.slow
def test_two_concurrent_applies_one_is_refused(
    tmp_path: Path, slow_server: tuple[object, Path]
) -> None:
    """Two real processes apply to one target: one proceeds, the other exits 7."""
    _sandbox, plan = slow_server
    state = tmp_path / "state"
    first = start_apply(state, plan)
    # The first holds the lock once its lock file exists (not after a guessed delay).
    wait_until(
        lambda: any((state / "locks").glob("*.lock")) if (state / "locks").is_dir() else False
    )
    second_code, second_errs = run_apply(state, plan)
    _out, errs = first.communicate(timeout=300)
    assert first.returncode == 0, errs
    assert second_code == 7, second_errs
    assert "migrate unlock" in second_errs


@pytest.mark.slow
def test_first_sigint_finishes_in_flight_and_exits_6_then_rerun_completes(
    tmp_path: Path, slow_server: tuple[object, Path]
) -> None:
    """SIGINT mid-apply: in-flight requests finish, exit 6 with the resume command; rerun is 0."""
    sandbox, plan = slow_server
    state = tmp_path / "state"
    proc = start_apply(state, plan)
    # Interrupt mid-import: once the server has seen the first imports.
    wait_until(lambda: len(sandbox.requests("import")) >= 3)  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGINT)
    _out, errs = proc.communicate(timeout=120)
    assert proc.returncode == 6, errs
    assert "migrate apply" in errs
    code, errs = run_apply(state, plan)
    assert code == 0, errs
    assert_target_matches_source(sandbox, "Src", "Dst")
