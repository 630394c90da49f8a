"""Waits a server announces are capped by --max-wait (exit 5 naming them, never slept), rate-limit
headers in any form or garbage never crash a run, an interrupt ends any wait at once, slow bodies
meet a per-request deadline, and listings that never end fail with exit 5."""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from migrate.cli import app as cli_app
from migrate.cli.app import STATE
from migrate.client import ClientOptions, DatabrainClient
from migrate.connection import ConnectionPolicy
from migrate.errors import (
    AnnouncedWaitError,
    BadResponseError,
    PlanError,
    RateLimitedError,
    RunInterruptedError,
    TransportError,
)
from migrate.plan import load_plan
from migrate.retry import Pacer, RateSignal, RetryPolicy
from migrate.runner import RunOptions, run_plan
from migrate.sandbox import DEFAULT_TOKEN, SandboxConfig, create_app, running_server
from migrate.sandbox.faults import RateLimiter
from migrate.throttle import Throttle
from migrate.transport import asgi_transport
from tests.helpers import actions, sandbox_of, start_migrate, write_plan
from tests.test_throttle import FakeTime

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def bounded(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; a run that would sleep on (the bug) fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def on_sandbox(app: Starlette, **options: Any) -> DatabrainClient:
    """A client of the in-process sandbox `app` (no network), with `options` as for
    DatabrainClient (pacer, sleep, clock, ClientOptions)."""
    return DatabrainClient(
        "http://sandbox", DEFAULT_TOKEN, transport=asgi_transport(app), **options
    )


def plan_on_sandbox(tmp: Path, **policy: Any) -> Coroutine[Any, Any, Any]:
    """run_plan of the demo plan on this test's embedded sandbox."""
    options = RunOptions(policy=ConnectionPolicy(state_dir=tmp, **policy))
    return run_plan(load_plan(write_plan(tmp)), options)


# --- Retry-After and announced limits beyond --max-wait -----------------------------------------


def test_retry_after_beyond_max_wait_stops_instead_of_pausing_every_request() -> None:
    """A 429 with Retry-After 100000 raises AnnouncedWaitError naming it, and no later request
    sleeps: the throttle refuses to start any (fake clock)."""
    app = create_app(
        SandboxConfig(":memory:", seed="demo", rate_limit=(1, 3600), rate_headers="none")
    )
    app.state.sandbox.faults.retry_after_s = 100000
    fake = FakeTime()
    throttle = Throttle(4, max_wait_s=300, clock=fake.clock, sleep=fake.sleep)

    async def run() -> list[BaseException]:
        client = on_sandbox(
            app,
            pacer=throttle,
            sleep=fake.sleep,
            clock=fake.clock,
            options=ClientOptions(retry=RetryPolicy(retry_after_cap_s=300)),
        )
        async with client:
            await client.export_dashboard("Sales Dev", "kpi-core")
            results = await asyncio.gather(
                *(client.export_dashboard("Sales Dev", "kpi-core") for _ in range(3)),
                return_exceptions=True,
            )
        return [r for r in results if isinstance(r, BaseException)]

    errors = asyncio.run(run())
    assert len(errors) == 3
    assert all(isinstance(e, AnnouncedWaitError) and e.exit_code == 5 for e in errors)
    assert "Retry-After: 100000" in str(errors[0])
    assert "--max-wait" in str(errors[0])
    assert all(s <= 300 for s in fake.sleeps), fake.sleeps
    assert len(app.state.sandbox.requests()) == 2  # nothing was sent after the 429


class PacedRetries(Pacer):
    """A pacer that holds 429 retries itself (as a throttle that knows the pace does)."""

    def retry_after_429(self) -> float | None:
        """Retries wait in the pacer, not in the client."""
        return 0.0


@pytest.mark.parametrize("pacer", [Pacer(), PacedRetries()], ids=["own-wait", "paced"])
def test_a_429_retry_waits_its_retry_after_unless_the_pacer_holds_it(pacer: Pacer) -> None:
    """A request answered 429 with `Retry-After: 1` is retried after that second by the
    client itself, or first at once (into the pacer's own wait) when the pacer holds retries,
    then, refused again, after its Retry-After."""
    app = create_app(
        SandboxConfig(":memory:", seed="demo", rate_limit=(1, 3600), rate_headers="none")
    )
    app.state.sandbox.faults.retry_after_s = 1
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run() -> None:
        client = on_sandbox(
            app,
            pacer=pacer,
            sleep=sleep,
            options=ClientOptions(retry=RetryPolicy(attempts=3)),
        )
        async with client:
            await client.export_dashboard("Sales Dev", "kpi-core")
            with pytest.raises(RateLimitedError):
                await client.export_dashboard("Sales Dev", "kpi-core")

    asyncio.run(run())
    assert len(app.state.sandbox.requests()) == 4  # one admitted, three answered 429
    expected = [0.0, 1.0] if isinstance(pacer, PacedRetries) else [1.0, 1.0]
    assert [min(s, 1.0) for s in sleeps] == expected, sleeps


def test_429_during_exports_stops_the_whole_run_with_exit_5(tmp_path: Path) -> None:
    """The announced wait surfaces on an export, yet the run stops (exit 5), not one dashboard."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.rate_limit = (3, 3600)  # the three listings pass, the first export is refused
    sandbox.faults.rate_headers = "none"  # only the 429's Retry-After announces anything
    sandbox.faults.retry_after_s = 100000
    with pytest.raises(AnnouncedWaitError) as info:
        bounded(plan_on_sandbox(tmp_path))
    assert info.value.exit_code == 5
    assert "Retry-After: 100000" in info.value.message
    assert len(sandbox.requests("export")) < 14


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"RateLimit-Policy": "1;w=100000"}, "RateLimit-Policy: 1;w=100000"),
        ({"RateLimit-Limit": "10", "RateLimit-Reset": "999999999"}, "RateLimit-Reset: 999999999"),
        ({"RateLimit": "limit=1, remaining=5, reset=86400"}, "limit=1"),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "999999"}, "RateLimit-Reset: 999999"),
    ],
)
def test_announced_limit_beyond_max_wait_stops_with_exit_5(
    tmp_path: Path, headers: dict[str, str], named: str
) -> None:
    """A policy, reset or spent budget that would mean a wait beyond --max-wait: exit 5, named."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.rate_header_override = headers
    with pytest.raises(AnnouncedWaitError) as info:
        bounded(plan_on_sandbox(tmp_path))
    assert info.value.exit_code == 5
    assert named in info.value.message


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "1e400", "NaN", "lots"])
def test_unparseable_rate_headers_are_ignored(tmp_path: Path, value: str) -> None:
    """RateLimit-Remaining/-Limit/-Reset that are no sane number change nothing: the plan works."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.rate_header_override = {
        "RateLimit-Remaining": value,
        "RateLimit-Limit": value,
        "RateLimit-Reset": value,
        "X-RateLimit-Remaining": value,
        "RateLimit": f"limit={value}, remaining={value}, reset={value}",
    }
    migration = bounded(plan_on_sandbox(tmp_path))
    assert set(actions(migration).values()) == {"create"}


def test_rate_signal_reads_every_header_form_and_ignores_garbage() -> None:
    """Draft 6, draft 7, later drafts and legacy epoch headers give the same signal."""
    forms: list[dict[str, str]] = [
        {"RateLimit-Limit": "50", "RateLimit-Remaining": "7", "RateLimit-Reset": "4"},
        {"RateLimit": "limit=50, remaining=7, reset=4"},
        {"RateLimit": '"default";r=7;t=4', "RateLimit-Policy": '"default";q=50;w=60'},
        {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "7",
            "X-RateLimit-Reset": "2000000004",
        },
    ]
    for headers in forms:
        signal_ = RateSignal.from_response(200, headers, now=2_000_000_000)
        assert (signal_.limit, signal_.remaining, signal_.reset_s) == (50, 7, 4.0), headers
    garbage = RateSignal.from_response(
        429, {"Retry-After": "nan", "RateLimit-Remaining": "inf", "RateLimit-Reset": "-3"}
    )
    assert (garbage.retry_after, garbage.remaining, garbage.reset_s) == (None, None, None)


def test_max_wait_flag_reaches_the_run_and_refuses_nonsense() -> None:
    """--max-wait sets the run's cap; NaN is a usage error (exit 2), not a crash."""
    runner = CliRunner()
    assert runner.invoke(cli_app, ["--max-wait", "42", "schema", "plan"]).exit_code == 0
    assert STATE.policy.max_wait_s == 42
    assert runner.invoke(cli_app, ["--max-wait", "nan", "schema", "plan"]).exit_code == 2


# --- an interrupt ends a wait at once ----------------------------------------------------------


def test_close_ends_a_pending_pause_at_once() -> None:
    """A request waiting out a Retry-After is released by close() and refused (exit 6)."""

    async def run() -> BaseException | None:
        throttle = Throttle(4, max_wait_s=3600)
        await throttle.acquire()
        throttle.release(RateSignal(rate_limited=True, retry_after=3000))
        waiting = asyncio.ensure_future(throttle.acquire())
        await asyncio.sleep(0)
        throttle.close()
        try:
            await asyncio.wait_for(waiting, timeout=60)
        except RunInterruptedError as exc:
            return exc
        return None

    error = asyncio.run(run())
    assert isinstance(error, RunInterruptedError) and error.exit_code == 6


ONE_TARGET = "target: {{url: '{url}', workspace: Sales Prod, token_env: WTOK}}\n"
TWO_WAVES = (
    "targets:\n"
    "  staging: {{url: '{url}', workspace: Sales Staging, token_env: WTOK}}\n"
    "  prod: {{url: '{url}', workspace: Sales Prod, token_env: WTOK}}\n"
    "waves: [[staging], [prod]]\n"
)


@pytest.mark.parametrize("targets", [ONE_TARGET, TWO_WAVES], ids=["target", "targets"])
def test_first_sigterm_ends_a_retry_after_wait_and_exits_6(tmp_path: Path, targets: str) -> None:
    """A real apply (one target, or targets in waves) paused by Retry-After 600 (within
    --max-wait 900) exits 6 on one SIGTERM, naming the command that finishes it, importing
    nothing."""
    app = create_app(SandboxConfig(tmp_path / "srv.db", seed="demo", token="tk-wait"))
    sandbox = app.state.sandbox
    sandbox.faults.rate_limit = (3, 3600)
    sandbox.faults.rate_headers = "none"
    sandbox.faults.retry_after_s = 600
    with running_server(app) as url:
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "version: 1\n"
            f"source: {{url: '{url}', workspace: Sales Dev, token_env: WTOK}}\n"
            + targets.format(url=url)
            + "dashboards:\n  - match: '*'\n"
        )
        proc = start_migrate(
            "--max-wait", "900", "--state-dir", str(tmp_path / "state"), "apply", str(plan),
            env={"WTOK": "tk-wait"},
        )  # fmt: skip
        try:
            wait_until(lambda: any(r.status == 429 for r in sandbox.requests()), proc)
            proc.send_signal(signal.SIGTERM)
            _out, errs = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 6, errs
    assert "to finish, run again: migrate apply" in errs
    assert sandbox.write_count == 0


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll until `condition` holds (the child must still be running)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- slow bodies and endless listings ----------------------------------------------------------


def test_slow_body_meets_the_per_request_deadline() -> None:
    """A body trickling at 20 bytes/s fails at the request deadline with a TransportError."""
    app = create_app(SandboxConfig(":memory:", seed="demo", slow_body_bps=20))

    async def run() -> None:
        client = on_sandbox(
            app,
            options=ClientOptions(request_deadline_s=0.3, retry=RetryPolicy(attempts=1)),
        )
        async with client:
            await client.list_workspaces()

    with pytest.raises(TransportError, match=r"did not finish within 0\.3 s") as info:
        bounded(run())
    assert info.value.exit_code == 5


def test_slow_body_over_a_real_socket_meets_the_deadline() -> None:
    """The same deadline holds over TCP, where the 60 s per-read timeout never fires."""
    config = SandboxConfig(":memory:", seed="demo", slow_body_bps=20)
    with running_server(config) as url:

        async def run() -> None:
            options = ClientOptions(request_deadline_s=0.3, retry=RetryPolicy(attempts=1))
            async with DatabrainClient(url, DEFAULT_TOKEN, options=options) as client:
                await client.list_workspaces()

        with pytest.raises(TransportError, match="did not finish"):
            bounded(run())


@pytest.mark.parametrize("mode", ["endless", "cycle"])
def test_listing_that_never_ends_fails_with_exit_5(tmp_path: Path, mode: str) -> None:
    """Endless or cycling pages: exit 5 saying the listing does not end, requests bounded."""
    app = create_app(SandboxConfig(":memory:", seed="demo", endless_pages=mode))  # type: ignore[arg-type]

    async def run() -> None:
        options = ClientOptions(max_list_items=300)
        async with DatabrainClient(
            "http://sandbox", DEFAULT_TOKEN, transport=asgi_transport(app), options=options
        ) as client:
            await client.list_dashboards("Sales Dev")

    with pytest.raises(BadResponseError, match="does not end") as info:
        bounded(run())
    assert info.value.exit_code == 5
    listed = len(app.state.sandbox.requests("list_dashboards"))
    assert listed <= 300 // 10 + 1 + 8
    if mode == "cycle":
        assert "page 3 repeats page 1" in info.value.message


def test_plan_on_an_endless_listing_is_refused_not_truncated(tmp_path: Path) -> None:
    """A read-only plan whose source listing never ends exits 5; it never plans a partial list."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.endless_pages = "cycle"
    with pytest.raises(BadResponseError, match="does not end"):
        bounded(plan_on_sandbox(tmp_path))


# --- max_rps ------------------------------------------------------------------------------------


def test_max_rps_nan_is_refused_and_1e_3_is_read_as_a_number(tmp_path: Path) -> None:
    """`max_rps: .nan` is a plan error (it would disable pacing); `1e-3` is 0.001 rps."""
    path = write_plan(tmp_path, settings="  max_rps: .nan\n")
    with pytest.raises(PlanError, match="finite"):
        load_plan(path)
    path = write_plan(tmp_path, settings="  max_rps: 1e-3\n")
    assert load_plan(path).settings.max_rps == pytest.approx(0.001)
    with pytest.raises(ValueError, match="max_rps"):
        Throttle(1, max_rps=math.nan)


def test_a_paced_429_retry_outlasts_a_window_spent_by_another_consumer() -> None:
    """Under a stated window (50 per 1 s) whose budget another consumer of the same key has
    spent, a 429's retries still reach the next window: each 429 says `Retry-After: 1`, so the
    request is not spent in six attempts within the window that refused it."""
    app = create_app(SandboxConfig(":memory:", seed="demo", rate_limit=(50, 1.0)))
    fake = FakeTime()
    limiter = RateLimiter(clock=fake.clock)
    app.state.sandbox.rate_limiter = limiter
    throttle = Throttle(4, clock=fake.clock, sleep=fake.sleep)

    async def run() -> None:
        client = on_sandbox(
            app,
            pacer=throttle,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        async with client:
            await client.export_dashboard("Sales Dev", "kpi-core")  # the window states its pace
            for _ in range(49):  # another consumer spends the rest of this window's budget
                limiter.check("127.0.0.1", 50, 1.0, http_date=False)
            await client.export_dashboard("Sales Dev", "kpi-core")

    bounded(run())
    assert fake.now >= 1.0  # the export that succeeded went in the next window
