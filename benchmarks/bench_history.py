"""What reading and writing a target's deploy history costs as it grows: every `plan` and `apply`
reads the whole log (`History.deploys`, for drift and rollback), and every apply appends one
record naming each dashboard it deployed (docs/contract.md A9).

Builds a history of `--deploys` records of `--dashboards` dashboards each in a temporary folder,
then prints, best of `--repeat`:
- `History.deploys()` as shipped (each record checked against `deploy.schema.json` by the
  compiled fast path, jsonschema only for a record that fails it),
- the same records checked by jsonschema alone (what `deploys()` did before the fast path),
- `History.append` of one more record, and the ratios.

    .venv/bin/python benchmarks/bench_history.py [--deploys 50] [--dashboards 200]

Not part of the `migrate` package and never run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsonschema import Draft202012Validator

from migrate.history import Deploy, DeployedDashboard, History, iso, new_deploy_id
from migrate.schema import load_schema


def deploy(n: int, at: float) -> Deploy:
    """A deploy record of `n` created dashboards, each with a snapshot and one embed."""
    return Deploy(
        deploy_id=new_deploy_id(at),
        started_at=iso(at),
        finished_at=iso(at + 60),
        plan_sha256="a" * 64,
        bundle_manifest_sha256=None,
        commit="0123456789abcdef",
        actor="ci",
        target={"url": "https://example.invalid", "workspace": "Prod"},
        dashboards=tuple(
            DeployedDashboard(
                id=f"dash-{i:05d}",
                target_id=f"dash-{i:05d}",
                result="created",
                sha256="b" * 64,
                snapshot="c" * 64,
                embeds=({"name": f"embed {i}", "embed_id": f"e{i}", "previous_embed_id": None},),
            )
            for i in range(n)
        ),
    )


def best(call: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    """Build the history, time the three operations, print them and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploys", type=int, default=50)
    parser.add_argument("--dashboards", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
        history = History(Path(folder), "bench-target")
        for k in range(args.deploys):
            history.append(deploy(args.dashboards, 1_780_000_000.0 + 3600 * k))
        lines = history.log.read_bytes().splitlines()
        validator = Draft202012Validator(load_schema("deploy"))

        def jsonschema_only() -> None:
            for line in lines:
                record = json.loads(line)
                assert not any(validator.iter_errors(record))

        read_s = best(lambda: len(history.deploys()), args.repeat)
        assert len(history.deploys()) == args.deploys
        slow_s = best(jsonschema_only, args.repeat)
        one = deploy(args.dashboards, 1_790_000_000.0)
        append_s = best(lambda: history.append(one), args.repeat)
        record = one.as_record()
        check_s = best(lambda: any(validator.iter_errors(record)), args.repeat)
    print(
        f"deploy history — python {platform.python_version()}, {platform.system()}"
        f" {platform.machine()}: {args.deploys} deploys x {args.dashboards} dashboards"
        f" ({len(b''.join(lines)) / 1e6:.1f} MB), best of {args.repeat}"
    )
    print(f"  History.deploys() (fast path)              {read_s * 1000:8.1f} ms")
    print(f"  the same records checked by jsonschema     {slow_s * 1000:8.1f} ms")
    print(f"  History.append of one record (with fsync)  {append_s * 1000:8.1f} ms")
    print(f"  jsonschema check of that record alone      {check_s * 1000:8.1f} ms")
    print(
        f"ratios: reading {slow_s / read_s:.1f}x faster than jsonschema's check alone;"
        f" reading per deploy {read_s / args.deploys * 1000:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
