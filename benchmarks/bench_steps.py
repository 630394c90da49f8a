"""The CPU each necessary step of one created dashboard costs, in isolation, on one generated
~100 KB dashboard: what a run could not go below even with no HTTP, no event loop and no
bookkeeping at all.

`bench_apply.py` measures whole runs; this prints the cost of each check and transformation the
contract requires of a created dashboard (docs/contract.md A3, A9; README "Threat model"), each
the best of three timings of `--number` calls on the same bytes (hot caches: a lower bound),
then their sum against the 3 ms per-dashboard target, and the floor client's HTTP figure that
`bench_apply.py` prints (`floor client: CPU per HTTP request`) for the three exchanges.

    .venv/bin/python benchmarks/bench_steps.py [--payload-kb 100] [--number 300]

Not part of the `migrate` package and never run by the test suite.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrate.history import content_sha256  # the repository's, not an install
from migrate.jsontext import (
    dump_json_fast,
    dump_spliced,
    export_holds_data,
    load_trusted,
    parse_json,
)
from migrate.models import SchemaPair
from migrate.redaction import holds_secret, register_secret
from migrate.references import find_references
from migrate.sandbox import generate_workspace
from migrate.sandbox.store import Store
from migrate.schema import PayloadValidator
from migrate.schemapairs import rewritten_text

T_CPU_PER_DASHBOARD_MS = 3.0


def steps(payload_kb: int) -> list[tuple[str, Callable[[], object]]]:
    """(what, one call) for each necessary step, on one generated dashboard of the benchmark."""
    store = Store(":memory:")
    ids = generate_workspace(store, "Bench Source", 8, payload_kb=payload_kb, max_depth=5)
    dashboard_id = ids[5]  # level 5: it references earlier dashboards
    text = store.dashboard_text("Bench Source", dashboard_id)
    assert text is not None
    data_text = text.encode()
    meta = b'{"exportedAt":"2026-11-29T00:00:00.000Z","workspaceName":"Bench Source"}'
    raw = b'{"_meta":' + meta + b',"data":' + data_text + b"}"
    register_secret("bench-token-" + "x" * 24)  # a run always holds its token
    pairs = [SchemaPair(replace="analytics_dev", target="analytics")]
    expected = rewritten_text(data_text, pairs)
    assert expected is not None
    copy = b'{"_meta":' + meta + b',"data":' + expected + b"}"
    document: Any = parse_json(raw, source="export")
    validator = PayloadValidator()
    planned = frozenset(ids)
    payload = {"workspaceName": "Bench Target", "dashboardId": dashboard_id}
    return [
        ("export: parse with the untrusted-JSON checks", lambda: parse_json(raw, source="x")),
        ("export: credential-echo check", lambda: holds_secret(raw)),
        ("export: schema validation", lambda: validator.validate_export(document)),
        ("export: write `data` once (refs, spool)", lambda: dump_json_fast(document["data"])),
        (
            "export: reference search on the text",
            lambda: find_references(document["data"], planned, ignore=dashboard_id, text=data_text),
        ),
        (
            "import: body spliced from the text",
            lambda: dump_spliced(
                {**payload, "importDashboardData": None}, "importDashboardData", data_text
            ),
        ),
        ("read-back: expected text (schema pairs)", lambda: rewritten_text(data_text, pairs)),
        ("read-back: credential-echo check", lambda: holds_secret(copy)),
        (
            "read-back: equal on the text",
            lambda: export_holds_data(copy, expected, source="x"),
        ),
        ("history: parse the copy's text", lambda: load_trusted(expected)),
        (
            "history: normalized content sha256",
            lambda: content_sha256(load_trusted(expected)),
        ),
    ]


def main() -> int:
    """Time each step; print them, their sum and the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payload-kb", type=int, default=100)
    parser.add_argument("--number", type=int, default=300, help="calls per timing")
    args = parser.parse_args()
    print(
        f"necessary CPU per created dashboard — python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, one generated ~{args.payload_kb} KB dashboard,"
        f" best of 3 x {args.number} calls"
    )
    total = 0.0
    parse_ms = 0.0
    for what, call in steps(args.payload_kb):
        best = min(timeit.repeat(call, number=args.number, repeat=3)) / args.number * 1000
        if what == "history: parse the copy's text":
            parse_ms = best
            print(f"  {what:<48} {best:7.3f} ms  (included in the next line)")
            continue
        total += best
        print(f"  {what:<48} {best:7.3f} ms")
    print(
        f"sum {total:.2f} ms per dashboard (the history hash includes its parse, "
        f"{parse_ms:.3f} ms), {total / T_CPU_PER_DASHBOARD_MS:.2f}x the"
        f" {T_CPU_PER_DASHBOARD_MS:g} ms target before any HTTP: add 3 x the floor client's CPU"
        " per request from bench_apply.py"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
