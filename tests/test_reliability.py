"""Reliability: faults survived, imports exactly once, resume after a crash, one writer per target,
stale saved plans refused, interrupts handled in two stages."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

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
from migrate.sandbox import Sandbox, SandboxConfig, generate_workspace, running_server
from migrate.sandbox import create_app as create_sandbox
from tests.helpers import apply, results, run_migrate, sandbox_of, start_migrate, write_plan

runner = CliRunner()


def assert_target_matches_source(sandbox: Sandbox, source: str, target: str) -> None:
    """Every source dashboard is in the target exactly once, with equal normalized content."""
    src = dict(sandbox.list_dashboards(source))
    tgt_list = [i for i, _ in sandbox.list_dashboards(target)]
    assert len(tgt_list) == len(set(tgt_list)), "a dashboard was imported twice"
    assert set(tgt_list) == set(src), set(src) ^ set(tgt_list)
    for dash_id in src:
        a = normalize_for_compare(sandbox.get_dashboard(source, dash_id))
        b = normalize_for_compare(sandbox.get_dashboard(target, dash_id))
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
    """A 429 whose Retry-After is an HTTP-date waits until that date (fake clocks)."""
    now = 1_700_000_000.0  # a whole second, as HTTP-dates are
    sleeps: list[float] = []
    when = email.utils.formatdate(now + 5, usegmt=True)
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
    with mock.patch("migrate.retry.time", SimpleNamespace(time=lambda: now)):
        async with client:
            await client.list_workspaces()
    assert sleeps == [5.0]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


APPLY_ENV = {"KTOK": "tk-kill"}


def start_apply(state: Path, plan: Path, *, quiet: bool = False) -> subprocess.Popen[str]:
    """`python -m migrate apply PLAN` in a child process, its output captured (or discarded)."""
    return start_migrate(
        "--state-dir", str(state), "apply", str(plan), env=APPLY_ENV, capture=not quiet
    )


def run_apply(state: Path, plan: Path) -> tuple[int, str]:
    """Run an apply to its end: (exit code, stderr)."""
    done = run_migrate("--state-dir", str(state), "apply", str(plan), env=APPLY_ENV)
    return done.returncode, done.stderr


def kill_at(
    proc: subprocess.Popen[str], sandbox: Sandbox, count: Callable[[], int], reach: int
) -> bool:
    """SIGKILL `proc` as soon as the server's `count()` reaches `reach`, then wait until the
    requests it left in flight have settled on the server; False when the process ended first."""
    while count() < reach:
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: sandbox.in_flight == 0)
    return True


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[Sandbox, Path]]:
    """A real sandbox server (thread) with 60 generated dashboards and 15 ms latency."""
    sandbox_app = create_sandbox(SandboxConfig(db_path=tmp_path / "srv.db", token="tk-kill"))
    sandbox: Sandbox = sandbox_app.state.sandbox
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
    tmp_path: Path, slow_server: tuple[Sandbox, Path]
) -> None:
    """SIGKILL the apply at 20+ points across its run, each one chosen by what the server has
    seen (never by a delay); each re-run resumes; the end state is every dashboard exactly once
    and equal to its source."""
    sandbox, plan = slow_server
    state = tmp_path / "state"
    # Reading phase: apply exports every payload before its first import, so an attempt cannot
    # end before the server has answered its k-th export, whatever the machine's speed.
    read_kills = 0
    for k in range(1, 60, 3):  # 20 points: after the 1st, 4th, ..., 58th export
        exports = len(sandbox.requests("export"))
        proc = start_apply(state, plan, quiet=True)
        assert kill_at(proc, sandbox, lambda: len(sandbox.requests("export")), exports + k)
        read_kills += 1
    assert sandbox.write_count == 0
    # Writing phase: kill each attempt once the server has committed one more import; the
    # imports in flight at that moment still land, so every attempt moves the run forward.
    write_kills = 0
    while write_kills < 8:
        writes = sandbox.write_count
        proc = start_apply(state, plan, quiet=True)
        if not kill_at(proc, sandbox, lambda: sandbox.write_count, writes + 1):
            assert proc.returncode == 0
            break  # the attempt finished the work before committing anything new
        write_kills += 1
    code, errs = run_apply(state, plan)
    assert code == 0, errs
    assert read_kills == 20 and write_kills >= 3, (read_kills, write_kills)
    assert_target_matches_source(sandbox, "Src", "Dst")
    assert sandbox.write_count == 60


@pytest.mark.slow
def test_two_concurrent_applies_one_is_refused(
    tmp_path: Path, slow_server: tuple[Sandbox, Path]
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
    tmp_path: Path, slow_server: tuple[Sandbox, Path]
) -> None:
    """SIGINT mid-apply: in-flight requests finish, exit 6 with the resume command; rerun is 0."""
    sandbox, plan = slow_server
    state = tmp_path / "state"
    proc = start_apply(state, plan)
    # Interrupt mid-import: once the server has seen the first imports.
    wait_until(lambda: len(sandbox.requests("import")) >= 3)
    proc.send_signal(signal.SIGINT)
    _out, errs = proc.communicate(timeout=120)
    assert proc.returncode == 6, errs
    assert "migrate apply" in errs
    code, errs = run_apply(state, plan)
    assert code == 0, errs
    assert_target_matches_source(sandbox, "Src", "Dst")
