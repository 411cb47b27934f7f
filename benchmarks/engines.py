"""Load + clean + features on DuckDB, on Spark (local mode) and inside PostgreSQL.

    .venv/bin/python benchmarks/engines.py [--rows 30M] [--pg-rows 5M]
        [--only duckdb,spark,postgres] [--spark-memory 8g] [--data-dir DIR]

Prints, in one run on the same generated Parquet file (``--rows`` lines), the time and
peak memory of segmint's load + clean + customer features on DuckDB and on Spark in
local mode (``local[*]``), with the ratio, and checks that both give the same customer
table. Then it loads a ``--pg-rows``-line table into a throwaway PostgreSQL server
(tests/pgcluster.py) and runs the same work inside the server through a counting TCP
proxy: the bytes that crossed the wire, against the table's size on disk.

Every measurement runs in a fresh child process. Peak memory is the largest resident
set of the child *and its descendants* (Spark's JVM runs as a child of the Python
driver), sampled every 0.1 s with psutil, beside the child's own ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from _harness import (
    HERE,
    add_child_arguments,
    chunk_customers,
    mib,
    parse_rows,
    run_child,
    say,
    source_revision,
)

ROOT = HERE.parent
DEFAULT_DATA_DIR = HERE / "data"
SEED = 0


# ------------------------------------------------------------------------------ children


class TreeMemory:
    """Peak resident memory of this process and all its descendants, sampled."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak // 1024


def _features(data: str, load, out: str) -> dict:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segmint.config import CleanConfig
    from segmint.features import customer_features
    from segmint.pipeline import prepare

    t0 = time.perf_counter()

    def progress(stage: str) -> None:
        print(f"           child: {time.perf_counter() - t0:7.1f}s {stage}", flush=True)

    p = prepare(data, load, CleanConfig(), progress=progress)
    progress("customer features")
    f = customer_features(p.cleaned)
    frame = f.to_pandas()
    seconds = time.perf_counter() - t0
    progress("done")
    if out:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
    return {
        "seconds": seconds,
        "customers": len(frame),
        "input_rows": p.cleaned.audit.input_rows,
        "kept_rows": p.cleaned.audit.kept_rows,
        "customer_table_bytes": int(frame.memory_usage(deep=True).sum()),
        "stages": {k: round(v, 2) for k, v in p.timings.items()},
    }


def _child_duckdb(args: argparse.Namespace) -> dict:
    from segmint.config import LoadConfig

    tree = TreeMemory()
    result = _features(args.path, LoadConfig(), args.out)
    result["tree_peak_kib"] = tree.stop()
    return result


def _child_spark(args: argparse.Namespace) -> dict:
    from segmint.config import LoadConfig
    from segmint.engines import spark_session

    os.environ["SEGMINT_SPARK_MEMORY"] = args.spark_memory
    tree = TreeMemory()
    t0 = time.perf_counter()
    session = spark_session("local[*]")
    startup = time.perf_counter() - t0
    result = _features(args.path, LoadConfig(engine="spark"), args.out)
    result["jvm_startup_seconds"] = round(startup, 2)
    result["spark"] = {
        "version": session.version,
        "driver_memory": args.spark_memory,
        "cores": os.cpu_count(),
    }
    result["tree_peak_kib"] = tree.stop()
    session.stop()
    return result


def _child_compare(args: argparse.Namespace) -> dict:
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(args.path), pd.read_parquet(args.out)
    same = list(a.columns) == list(b.columns) and a["customer_id"].equals(b["customer_id"])
    worst = 0.0
    for c in a.columns if same else []:
        x, y = a[c], b[c]
        if x.dtype.kind == "f":
            denom = np.maximum(np.abs(x.to_numpy()), 1e-300)
            rel = np.nanmax(np.abs(x.to_numpy() - y.to_numpy()) / denom) if len(x) else 0.0
            worst = max(worst, float(rel))
            same &= bool(np.allclose(x, y, rtol=1e-9, atol=0, equal_nan=True))
        else:
            same &= bool(x.equals(y))
    return {"seconds": 0.0, "identical": bool(same), "max_relative_difference": worst}


class CountingProxy:
    """A loopback TCP proxy that counts the bytes in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.to_client = 0
        self.to_server = 0
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self._lock:
                    if upstream:
                        self.to_server += len(data)
                    else:
                        self.to_client += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _child_postgres(args: argparse.Namespace) -> dict:
    from segmint.config import LoadConfig

    port = int(args.path.rsplit(":", 1)[1].split("/")[0])
    proxy = CountingProxy(port)
    url = args.path.replace(f":{port}/", f":{proxy.port}/")
    tree = TreeMemory()
    result = _features(url, LoadConfig(table="sales"), "")
    result["tree_peak_kib"] = tree.stop()
    result["bytes_from_server"] = proxy.to_client
    result["bytes_to_server"] = proxy.to_server
    return result


CHILDREN = {
    "duckdb": _child_duckdb,
    "spark": _child_spark,
    "compare": _child_compare,
    "postgres": _child_postgres,
}


# -------------------------------------------------------------------------------- parent


def _generate(path: Path, rows: int) -> None:
    if path.exists():
        say(f"reusing {path}")
        return
    say(f"generating {rows:,} lines into {path}")
    import subprocess

    code = (
        "from segmint.datasets import write_transactions; import sys; "
        "write_transactions(sys.argv[1], n_lines=int(sys.argv[2]), seed=0, "
        "chunk_customers=int(sys.argv[3]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(rows), str(chunk_customers(rows))], check=True
    )


def _load_postgres(url: str, parquet: Path) -> dict:
    """COPY the Parquet file into a typed table ``sales``; return its size."""
    import duckdb
    import psycopg

    types = {"BIGINT": "bigint", "DOUBLE": "double precision", "TIMESTAMP": "timestamp"}
    con = duckdb.connect()
    schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{parquet}')").fetchall()
    cols = ", ".join(f'"{name}" {types.get(kind, "text")}' for name, kind, *_ in schema)
    csv = parquet.with_suffix(".pgload.csv")
    con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{csv}' (HEADER)")
    t0 = time.perf_counter()
    try:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS sales; CREATE TABLE sales ({cols})")
            with cur.copy("COPY sales FROM STDIN (FORMAT csv, HEADER true)") as copy:
                with open(csv, "rb") as fh:
                    while block := fh.read(1 << 20):
                        copy.write(block)
            cur.execute("ANALYZE sales")
            rows, heap, total = cur.execute(
                "SELECT count(*), pg_relation_size('sales'), pg_total_relation_size('sales') "
                "FROM sales"
            ).fetchone()
    finally:
        csv.unlink(missing_ok=True)
    return {
        "rows": rows,
        "heap_bytes": heap,
        "total_bytes": total,
        "load_seconds": time.perf_counter() - t0,
    }


def _measure(mode: str, path: str, args: argparse.Namespace, out: str = "") -> dict:
    child_args = ["--path", path, "--out", out, "--spark-memory", args.spark_memory]
    return run_child(str(Path(__file__).resolve()), child_args, mode, None)


def _gib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024 / 1024:.2f}"


def run(args: argparse.Namespace) -> int:
    only = set(args.only.split(","))
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    say(f"segmint {source_revision()}; {os.cpu_count()} cores")
    results: dict[str, dict] = {}
    if only & {"duckdb", "spark"}:
        path = data_dir / f"retail_{args.rows}_seed{SEED}.parquet"
        _generate(path, args.rows)
        outs = {e: str(data_dir / f"engines_{e}_{args.rows}.parquet") for e in ("duckdb", "spark")}
        for engine in ("duckdb", "spark"):
            if engine in only:
                say(f"{engine}: load + clean + features on {path.name}")
                results[engine] = _measure(engine, str(path), args, outs[engine])
                say(f"  {json.dumps(results[engine], default=str)}")
        if {"duckdb", "spark"} <= only and all(results[e]["ok"] for e in ("duckdb", "spark")):
            results["compare"] = _measure("compare", outs["duckdb"], args, outs["spark"])
        for out in outs.values():
            Path(out).unlink(missing_ok=True)
    if "postgres" in only:
        sys.path.insert(0, str(ROOT / "tests"))
        from pgcluster import cluster

        pg_path = data_dir / f"retail_{args.pg_rows}_seed{SEED}.parquet"
        _generate(pg_path, args.pg_rows)
        with cluster() as url:
            say(f"postgres: loading {pg_path.name} into a throwaway server")
            table = _load_postgres(url, pg_path)
            say(f"  table: {json.dumps(table)}")
            results["postgres"] = _measure("postgres", url, args) | {"table": table}
            say(f"  {json.dumps(results['postgres'], default=str)}")
    _print(results, args)
    return 0 if all(r.get("ok", True) for r in results.values()) else 1


def _print(results: dict[str, dict], args: argparse.Namespace) -> None:
    print()
    d, s = results.get("duckdb"), results.get("spark")
    if d or s:
        print(f"load + clean + features, {args.rows:,} generated lines (Parquet)")
        print("| engine | seconds | peak RSS, process tree (GiB) | ru_maxrss (MiB) | customers |")
        print("|---|---|---|---|---|")
        for name, m in (("DuckDB", d), ("Spark local[*]", s)):
            if m and m["ok"]:
                print(
                    f"| {name} | {m['seconds']:.1f} | {_gib(m['tree_peak_kib'])} | "
                    f"{mib(m['peak_kib'])} | {m['customers']:,} |"
                )
            elif m:
                print(f"| {name} | FAILED (exit {m['returncode']}) | | | |")
        if d and s and d["ok"] and s["ok"]:
            print(
                f"Spark / DuckDB: time {s['seconds'] / d['seconds']:.1f}x, peak memory "
                f"{s['tree_peak_kib'] / d['tree_peak_kib']:.1f}x "
                f"(Spark JVM start-up {s['jvm_startup_seconds']} s, not in its time)"
            )
        c = results.get("compare")
        if c and c["ok"]:
            print(
                f"same customer table on both engines: {c['identical']} "
                f"(largest relative difference {c['max_relative_difference']:.1e})"
            )
    p = results.get("postgres")
    if p and p.get("ok"):
        t = p["table"]
        print()
        print(f"inside PostgreSQL, {t['rows']:,}-line table `sales`")
        print(
            f"| table on disk | {t['total_bytes'] / 2**20:,.0f} MiB (heap "
            f"{t['heap_bytes'] / 2**20:,.0f} MiB) |"
        )
        print(f"|---|---|\n| bytes from the server | {p['bytes_from_server'] / 2**20:,.2f} MiB |")
        print(f"| bytes to the server (queries) | {p['bytes_to_server'] / 2**10:,.0f} KiB |")
        print(f"| customer table in memory | {p['customer_table_bytes'] / 2**20:,.2f} MiB |")
        print(f"| customers | {p['customers']:,} |")
        print(f"| load + clean + features | {p['seconds']:.1f} s |")
        print(
            f"transferred / table size: {p['bytes_from_server'] / t['total_bytes']:.4f} "
            f"({t['total_bytes'] / max(p['bytes_from_server'], 1):,.0f}x less than the table)"
        )
    elif p:
        print(f"postgres: FAILED (exit {p['returncode']})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=parse_rows, default=parse_rows("30M"))
    ap.add_argument("--pg-rows", type=parse_rows, default=parse_rows("5M"))
    ap.add_argument("--only", default="duckdb,spark,postgres")
    ap.add_argument("--spark-memory", default="8g", help="Spark driver memory (local mode)")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    add_child_arguments(ap, choices=sorted(CHILDREN))
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = CHILDREN[args.child](args)
        Path(args.result).write_text(json.dumps(result, default=str))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
