"""The benchmark's floor client: the HTTP requests of one `migrate apply`, and nothing else.

Run as a separate process by `bench_apply.py`, against a fresh copy of the same sandbox as the
run it stands beside. It lists the source and the target workspace, exports every dashboard the
source lists, then imports each one into the target (with the plan's schema pairs, as `migrate`
sends them) and exports it back — at most `--concurrency` requests in flight, through
`migrate`'s own transport (`migrate/transport.py`). It checks, parses, rewrites and writes
nothing, and ignores the dependency order `migrate` must keep.

So its wall time is what the server, the network and the machine leave to any client making
these requests, and its CPU is the cost of the HTTP exchanges alone: the bound `migrate`'s own
figures are read against (`benchmarks/README.md`). Prints one JSON line:
`{"requests": N, "wall_s": S, "cpu_s": S, "failed": F, "median_answer_s": {ENDPOINT: S}}`,
wall and CPU from the first request on (its start-up left out), and the median time from
sending a request to its whole answer, per endpoint. Not part of the `migrate` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrate.transport import LeanTransport  # the repository's, not an install


class Floor:
    """The requests, counted; a non-2xx answer is counted as failed (the run is then void)."""

    def __init__(self, url: str, token: str, concurrency: int) -> None:
        self.url = url.rstrip("/")
        self.transport = LeanTransport(True, concurrency)
        # At most `concurrency` requests wait on the transport, so an answer's time is the
        # server's and the network's, not a wait for one of the pool's connections.
        self.slots = asyncio.Semaphore(concurrency)
        self.headers = [
            (b"Authorization", f"Bearer {token}".encode()),
            (b"Content-Type", b"application/json"),
            (b"Accept", b"application/json"),
            (b"Host", httpx.URL(self.url).netloc),
        ]
        self.requests = 0
        self.failed = 0
        self.seconds: dict[str, list[float]] = {}  # answer times by endpoint path

    async def post(self, path: str, body: bytes) -> bytes:
        """POST `body`; the answer's bytes."""
        request = httpx.Request("POST", self.url + path, headers=self.headers, content=body)
        async with self.slots:
            sent = time.perf_counter()
            response = await self.transport.handle_async_request(request)
            chunks = [chunk async for chunk in response.aiter_raw()]
            answered = time.perf_counter() - sent
        self.seconds.setdefault(path.rsplit("/", 1)[-1], []).append(answered)
        self.requests += 1
        if not 200 <= response.status_code < 300:
            self.failed += 1
        return b"".join(chunks)

    async def list_ids(self, workspace: str) -> list[str]:
        """The dashboard ids of one unpaginated listing."""
        raw = await self.post("/api/v2/workspace/dashboards", _body(workspaceName=workspace))
        answer = json.loads(raw)
        rows = answer.get("data", []) if isinstance(answer, dict) else []
        return [row["externalDashboardId"] for row in rows if isinstance(row, dict)]

    async def export(self, workspace: str, dashboard_id: str) -> bytes:
        """The export file's bytes."""
        body = _body(dashboardId=dashboard_id, workspaceName=workspace)
        return await self.post("/api/v2/data-app/export-dashboard", body)

    async def promote(
        self, raw: bytes, target: str, dashboard_id: str, pairs: list[dict[str, str]]
    ) -> None:
        """Import the export's `data` text as is, then read the copy back."""
        marker = raw.find(b',"data":')
        data = raw[marker + len(b',"data":') : -1] if marker >= 0 else b"{}"
        head = _body(workspaceName=target, dashboardId=dashboard_id, schemaPairs=pairs)
        body = head[:-1] + b',"importDashboardData":' + data + b"}"
        await self.post("/api/v2/data-app/import-dashboard", body)
        await self.export(target, dashboard_id)


def _body(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """List, export all, then import and read back each; wall from the first request."""
    floor = Floor(args.url, os.environ[args.token_env], args.concurrency)
    pairs = [
        {"replaceSchema": old, "targetSchema": new}
        for old, _, new in (pair.partition("=") for pair in args.schema_pair)
    ]
    started, cpu_started = time.perf_counter(), _cpu_s()
    ids, _ = await asyncio.gather(floor.list_ids(args.source), floor.list_ids(args.target))
    exports = await asyncio.gather(*(floor.export(args.source, i) for i in ids))
    await asyncio.gather(
        *(floor.promote(raw, args.target, i, pairs) for i, raw in zip(ids, exports, strict=True))
    )
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu_started
    await floor.transport.aclose()
    medians = {kind: statistics.median(times) for kind, times in floor.seconds.items()}
    return {
        "requests": floor.requests,
        "wall_s": wall,
        "cpu_s": cpu,
        "failed": floor.failed,
        "median_answer_s": medians,
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Parse the command line, run, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-env", required=True, help="NAME of the env var with the token")
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--schema-pair", action="append", default=[], metavar="OLD=NEW")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
