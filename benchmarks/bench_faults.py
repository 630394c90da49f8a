"""Reliability figures from one run: faults injected and survived, retries per
request, duplicates and missing dashboards, and how close a rate-limited run comes to its floor.

Runs `migrate apply` in-process against the embedded sandbox (no network at all) on a generated
workspace, first with 5xx + dropped-after-commit + rate-limit faults, then with a rate limit
only. Usage: `.venv/bin/python benchmarks/bench_faults.py [--n 200] [--fail-rate 0.1]
[--drop-rate 0.15] [--rate-limit 100/1]`. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from migrate.connection import embedded_app
from migrate.diff import normalize_for_compare
from migrate.models import ConnectionPolicy
from migrate.plan import load_plan
from migrate.runner import RunOptions, run_apply
from migrate.sandbox import Sandbox, generate_workspace, parse_rate_limit


def _plan(folder: Path) -> Path:
    path = folder / "plan.yaml"
    path.write_text(
        "version: 1\n"
        "source: {url: 'sandbox://bench', workspace: Src}\n"
        "target: {url: 'sandbox://bench', workspace: Dst}\n"
        "dashboards:\n  - match: '*'\n"
    )
    return path


def _run(n: int, *, fail: float, drop: float, limit: tuple[int, float] | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sandbox: Sandbox = embedded_app(folder, "bench").state.sandbox
        generate_workspace(sandbox, "Src", n, payload_kb=8, max_depth=5, seed=11)
        sandbox.add_workspace("Dst")
        sandbox.faults.fail_rate = fail
        sandbox.faults.drop_rate = drop
        sandbox.faults.rate_limit = limit
        sandbox.faults.reseed(5)
        sandbox.reset_stats()
        options = RunOptions(concurrency=16, policy=ConnectionPolicy(state_dir=folder))
        started = time.monotonic()
        report = asyncio.run(run_apply(load_plan(_plan(folder)), options))
        wall = time.monotonic() - started
        log = sandbox.requests()
        statuses = Counter(r.status for r in log)
        kinds = Counter(r.kind for r in log)
        dropped = sum(1 for r in log if r.dropped)
        target_ids = [i for i, _ in sandbox.list_dashboards("Dst")]
        source_ids = [i for i, _ in sandbox.list_dashboards("Src")]
        duplicates = len(target_ids) - len(set(target_ids))
        missing = len(set(source_ids) - set(target_ids))
        unequal = sum(
            1
            for i in source_ids
            if i in target_ids
            and normalize_for_compare(sandbox.get_dashboard("Src", i))
            != normalize_for_compare(sandbox.get_dashboard("Dst", i))
        )
        attempts = [o.attempts for o in report.outcomes]
        results = Counter(o.result.value for o in report.outcomes)
        # Without faults a run makes: one unpaginated listing of each workspace, one export and
        # one read-back per dashboard, one import per dashboard.
        baseline = 2 + 3 * n
        print(
            f"  requests the server saw: {len(log)} ({dict(kinds)}); a fault-free run needs"
            f" {baseline}: {len(log) / baseline:.2f}x"
        )
        print(
            f"  injected: {statuses[500] + statuses[502] + statuses[503]} 5xx,"
            f" {dropped} dropped after commit, {statuses[429]} answered 429"
        )
        print(f"  import attempts per dashboard: mean {sum(attempts) / n:.2f}, max {max(attempts)}")
        print(f"  results: {dict(results)}; writes committed {sandbox.write_count}")
        print(f"  duplicates {duplicates}, missing {missing}, content differs {unequal}")
        if limit:
            floor = len(log) / (limit[0] / limit[1])
            print(
                f"  wall {wall:.2f} s vs floor {floor:.2f} s (requests / R):"
                f" {wall / floor:.2f}x; 429 share {statuses[429] / len(log):.1%}"
            )
        else:
            print(f"  wall {wall:.2f} s")
        return wall


def main() -> None:
    """Parse flags, run both scenarios, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="dashboards (default 200)")
    parser.add_argument("--fail-rate", type=float, default=0.10)
    parser.add_argument("--drop-rate", type=float, default=0.15)
    parser.add_argument("--rate-limit", default="100/1", help="N/S for both scenarios")
    args = parser.parse_args()
    limit = parse_rate_limit(args.rate_limit)
    print(f"faults: {args.fail_rate:.0%} 5xx, {args.drop_rate:.0%} drops, limit {args.rate_limit}")
    _run(args.n, fail=args.fail_rate, drop=args.drop_rate, limit=limit)
    print("no faults, no limit (what client and in-process server CPU alone allow)")
    unthrottled = _run(args.n, fail=0.0, drop=0.0, limit=None)
    print(f"rate limit only: {args.rate_limit}")
    limited = _run(args.n, fail=0.0, drop=0.0, limit=limit)
    floor = max(unthrottled, (3 * args.n + 22) / (limit[0] / limit[1]))
    print(f"rate-limited wall / max(requests / R, unthrottled wall) = {limited / floor:.2f}")


if __name__ == "__main__":
    main()
