"""Bounded load test of the REST API on the loopback interface.

Trains a small model (K-Means, k = 4, 2,000 synthetic customers), starts
``segmint serve`` on 127.0.0.1 (a free port, ``--workers`` as given), then, with a
minimal asyncio HTTP/1.1 client (keep-alive connections, see ``_load``), sends a fixed
number of requests at each concurrency and prints throughput and p50/p95/p99 latency:

* single predictions (``{"customer": {...}}``) at 1, 10 and 50 concurrent clients;
* 1,000-customer batches at 1 and 4 concurrent clients, as customers per second.

Targets on 2 cores: p99 under 25 ms for single predictions at 50 clients; at least
50,000 customer predictions per second through batches. The client runs on the same
machine and competes for the same 2 cores, so the figures are a lower bound.

Usage::

    .venv/bin/python benchmarks/api.py [--requests 10000] [--batches 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import say, source_revision  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def _load(base: str, payloads: list[dict], concurrency: int) -> dict:
    """Send ``payloads`` from ``concurrency`` keep-alive connections; latency per request.

    A minimal HTTP/1.1 client on asyncio streams (like wrk): each request is encoded once
    and written in one call, the response read by its Content-Length. httpx, used first,
    spent about 45 ms of its own per request on this machine (the server answers a
    single prediction in about 4 ms), so it measured the client, not the service.
    """
    import json

    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    queue = [
        (
            f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body := json.dumps(p).encode())}\r\n\r\n"
        ).encode()
        + body
        for p in payloads
    ]

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                request = queue.pop()
                t0 = time.perf_counter()
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    await reader.readexactly(length)
                    ok = status == 200
                except (OSError, asyncio.IncompleteReadError):  # dropped: counted
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "rps": len(latencies) / wall,
        "p50": _percentile(latencies, 50) * 1000,
        "p95": _percentile(latencies, 95) * 1000,
        "p99": _percentile(latencies, 99) * 1000,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=10000, help="single predictions per level")
    p.add_argument("--batches", type=int, default=60, help="1,000-customer batches per level")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    args = p.parse_args()

    import pandas as pd

    import segmint
    from segmint.datasets import make_transactions

    say(f"segmint at {source_revision()}; {os.cpu_count()} cores; {args.workers} workers")
    folder = Path(tempfile.mkdtemp(prefix="segmint-bench-api-"))
    lines, _ = make_transactions(n_customers=2000, seed=0)
    run = segmint.run(
        lines, {"segment": {"algorithm": "kmeans", "n_clusters": 4}}, out=folder / "run"
    )
    customers: pd.DataFrame = run.customers
    feats = ["recency_days", "frequency", "monetary", "tenure_days"]
    rows = [
        {"customer_id": str(r.customer_id), **{f: float(getattr(r, f)) for f in feats}}
        for r in customers.itertuples()
    ]
    port = _free_port()
    exe = Path(sys.executable).with_name("segmint")
    server = subprocess.Popen(
        [
            exe,
            "serve",
            folder / "run" / "model.segmint",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--max-body-bytes",
            "50000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                say("the server did not start")
                return 1
            time.sleep(0.2)
        results = []
        for conc in (1, 10, 50):
            payloads = [{"customer": rows[i % len(rows)]} for i in range(args.requests)]
            asyncio.run(_load(base, payloads[:100], conc))  # warm-up
            say(f"single predictions, {conc} clients (load average {os.getloadavg()[0]:.1f})")
            r = asyncio.run(_load(base, payloads, conc))
            results.append(("single", conc, r, r["rps"]))
        for conc in (1, 4):
            batch = [rows[i % len(rows)] for i in range(1000)]
            payloads = [{"customers": batch}] * args.batches
            say(f"1,000-customer batches, {conc} clients")
            r = asyncio.run(_load(base, payloads, conc))
            results.append(("batch of 1,000", conc, r, r["rps"] * 1000))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)  # the run only gave the served model
    print()
    print(
        "| requests | clients | count | errors | req/s | customers/s | p50 ms | p95 ms | p99 ms |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for kind, conc, r, cps in results:
        print(
            f"| {kind} | {conc} | {r['requests']:,} | {r['errors']} | {r['rps']:,.0f} | "
            f"{cps:,.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |"
        )
    single50 = next(r for k, c, r, _ in results if k == "single" and c == 50)
    best_batch = max(cps for k, _, _, cps in results if k != "single")
    print()
    print(
        f"target p99 < 25 ms at 50 clients: {'holds' if single50['p99'] < 25 else 'MISSED'} "
        f"({single50['p99']:.1f} ms)"
    )
    print(
        f"target >= 50,000 customers/s in batches: "
        f"{'holds' if best_batch >= 50_000 else 'MISSED'} ({best_batch:,.0f}/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
