"""The benchmark's sandbox server: `migrate.sandbox.create_app` under uvicorn on 127.0.0.1.

Run as a separate process by `bench_apply.py`, so the server never shares a GIL with the client
being measured. It binds a free loopback port, writes `--ready FILE` (port and CPU seconds used
so far) once it accepts connections, and on SIGTERM/SIGINT writes `--stats FILE`: its CPU
seconds at exit and a summary of `app.state.sandbox.request_log` (requests by kind and status,
peak in flight, handler time). Not part of the `migrate` package and never imported by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn

from migrate.sandbox import SandboxConfig, create_app, parse_rate_limit


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(app: Any) -> dict[str, Any]:
    sandbox = app.state.sandbox
    log = sandbox.requests()
    kinds = Counter(record.kind for record in log)
    ok_kinds = Counter(record.kind for record in log if 200 <= record.status < 300)
    statuses = Counter(str(record.status) for record in log)
    durations = sorted(record.duration for record in log)
    return {
        "requests": len(log),
        "by_kind": dict(kinds),
        "ok_by_kind": dict(ok_kinds),
        "by_status": dict(statuses),
        "rate_limited": statuses.get("429", 0),
        "writes": sandbox.write_count,
        "max_in_flight": sandbox.max_in_flight,
        "first_started": min((r.started for r in log), default=None),
        "last_finished": max((r.finished for r in log), default=None),
        "median_duration_s": durations[len(durations) // 2] if durations else None,
        # time.monotonic() is system-wide on Linux, so the benchmark can line these up with
        # its own clock: first/last request per kind.
        # Every request, for a closer look at a run kept with --keep: kind, status, start, end.
        "log": [[r.kind, r.status, r.started, r.finished] for r in log],
        "span_by_kind": {
            kind: [
                min(r.started for r in log if r.kind == kind),
                max(r.finished for r in log if r.kind == kind),
            ]
            for kind in kinds
        },
    }


def main() -> None:
    """Parse arguments, serve until signalled, then write the statistics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True, type=Path, help="SQLite file (already seeded)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", default=None, help="N/S")
    parser.add_argument("--rate-headers", default="draft6", help="none|draft6|draft7|legacy")
    parser.add_argument("--rate-mode", default="window", help="window|bucket")
    parser.add_argument(
        "--token-env", required=True, help="environment variable holding the token (never argv)"
    )
    parser.add_argument("--ready", required=True, type=Path)
    parser.add_argument("--stats", required=True, type=Path)
    args = parser.parse_args()

    config = SandboxConfig(
        db_path=args.db,
        token=os.environ[args.token_env],
        latency_ms=args.latency_ms,
        rate_limit=parse_rate_limit(args.rate_limit) if args.rate_limit else None,
        rate_headers=args.rate_headers,
        rate_mode=args.rate_mode,
    )
    app = create_app(config)
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only then (see migrate/sandbox/server.py `_bind`).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # loopback only, a free port
    sock.listen(1024)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_keep_alive=30,
        )
    )

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.005)
        ready = {"port": sock.getsockname()[1], "pid": os.getpid(), "cpu_s": _cpu_s()}
        tmp = args.ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready)

    async def run() -> None:
        task = asyncio.create_task(announce())
        await server.serve(sockets=[sock])
        task.cancel()

    # uvicorn captures SIGTERM/SIGINT while serving and re-raises them once it has shut down;
    # a Python handler here turns that re-raise into a no-op, so the statistics get written.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    started = time.monotonic()
    try:
        asyncio.run(run())
    finally:
        stats = {"cpu_s": _cpu_s(), "uptime_s": time.monotonic() - started, **_summary(app)}
        args.stats.write_text(json.dumps(stats))
        sock.close()
        app.state.sandbox.close()


if __name__ == "__main__":
    main()
