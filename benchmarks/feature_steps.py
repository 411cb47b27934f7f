"""Benchmark: the fastest query for each step an exact customer table cannot skip.

Usage::

    python benchmarks/feature_steps.py --rows 30M [--memory-limit 1GB] [--repeat 3]
        [--data-dir DIR] [--threads N] [--budget SECONDS]

``features.py`` compares segmint with one hand-written query of the same rules and with
pandas. This script answers a different question: how fast *could* any exact answer be?
It times, on the file ``features.py --rows N --keep`` generated (run that first), one raw
DuckDB statement per step, each the fastest single query we could write for it, with no
audit, no trimming and no other rule:

* ``hash``: one 64-bit hash of every line (the 8 columns);
* ``repeated (sort)``: the hashes seen more than once, by sorting the hashes and
  comparing neighbours (how segmint's duplicate rule finds candidate lines);
* ``repeated (group-by)``: the same by ``GROUP BY hash HAVING count(*) > 1``;
* ``per invoice``: sums, counts and dates per invoice, then per customer, with the
  notebook filter and no duplicate handling;
* ``distinct products``: the distinct (customer, product) pairs;
* ``obvious``: the notebook RFM query of ``features.py`` (the baseline: the ratios are
  against it).

It prints each step's best time, its ratio to the obvious query, and the sum of the three
steps an exact answer with segmint's rules and features needs whatever the engine does
(repeated hashes by sorting, per invoice, distinct products): a lower bound for
load + clean + features. With ``--budget S`` it says whether that bound fits in S
seconds (e.g. pandas' time / 10 from ``features.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _harness import HERE, parse_rows, say

#: The steps any exact answer needs; their sum is the printed lower bound.
NEEDED = ("repeated (sort)", "per invoice", "distinct products")
COLUMNS = "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country"


def steps(path: str) -> dict[str, str]:
    """The statements, by step name (each returns one small row)."""
    src = "read_parquet('" + path.replace("'", "''") + "')"
    notebook = (
        "CustomerID IS NOT NULL AND NOT starts_with(InvoiceNo, 'C') AND Quantity > 0 "
        "AND UnitPrice > 0"
    )
    return {
        "hash": f"SELECT sum(hash({COLUMNS}) % 1000) FROM {src}",
        "repeated (sort)": f"""
            SELECT count(DISTINCT h) FROM (
                SELECT h, lag(h) OVER (ORDER BY h) AS p
                FROM (SELECT hash({COLUMNS}) AS h FROM {src})
            ) WHERE h = p""",
        "repeated (group-by)": f"""
            SELECT count(*) FROM (
                SELECT h FROM (SELECT hash({COLUMNS}) AS h FROM {src})
                GROUP BY h HAVING count(*) > 1
            )""",
        "per invoice": f"""
            SELECT count(*), sum(v) FROM (
                SELECT cid, count(*) AS f, sum(v) AS v, sum(q) AS q, min(a) AS a, max(b) AS b
                FROM (
                    SELECT CAST(CustomerID AS BIGINT) AS cid, InvoiceNo,
                           sum(Quantity * UnitPrice) AS v, sum(Quantity) AS q,
                           min(InvoiceDate) AS a, max(InvoiceDate) AS b
                    FROM {src} WHERE {notebook} GROUP BY ALL
                ) GROUP BY cid
            )""",
        "distinct products": f"""
            SELECT count(*) FROM (
                SELECT DISTINCT CAST(CustomerID AS BIGINT), StockCode FROM {src}
                WHERE CustomerID IS NOT NULL
            )""",
        "obvious": f"""
            SELECT count(*), sum(m) FROM (
                SELECT CustomerID, max(InvoiceDate) AS r, count(DISTINCT InvoiceNo) AS f,
                       sum(Quantity * UnitPrice) AS m
                FROM {src} WHERE {notebook} GROUP BY CustomerID
            )""",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=parse_rows, required=True, help="1M, 10M, 30M, 100M")
    p.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit (default 1GB)")
    p.add_argument("--repeat", type=int, default=3, help="runs per step; the best is shown")
    p.add_argument("--data-dir", default=str(HERE / "data"), help="where features.py put it")
    p.add_argument("--threads", type=int, default=0, help="DuckDB threads (default: all)")
    p.add_argument("--budget", type=float, default=None, help="seconds the bound must fit in")
    args = p.parse_args(argv)
    path = Path(args.data_dir) / f"retail_{args.rows}_seed0.parquet"
    if not path.exists():
        say(
            f"error: {path} not found; generate it first with "
            f"`python benchmarks/features.py --rows {args.rows} --keep`"
        )
        return 2
    import duckdb

    con = duckdb.connect()
    if args.memory_limit.lower() != "none":
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    spill = tempfile.mkdtemp(prefix="segmint-bench-steps-")
    con.execute(f"SET temp_directory = '{spill}'")
    lines = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
    say(
        f"feature steps: {lines:,} lines of {path.name}, memory_limit={args.memory_limit}, "
        f"{os.cpu_count()} cores, best of {args.repeat}, load average {os.getloadavg()[0]:.2f}"
    )
    best: dict[str, float] = {}
    for name, sql in steps(str(path)).items():
        times = []
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
        say(f"{name}: {best[name]:.2f} s (runs {', '.join(f'{t:.2f}' for t in times)})")
    base = best["obvious"]
    print()
    print("| step | seconds | / obvious |")
    print("|---|--:|--:|")
    for name, secs in best.items():
        print(f"| {name} | {secs:.2f} | {secs / base:.2f}x |")
    bound = sum(best[n] for n in NEEDED)
    print()
    print(f"lower bound for an exact answer ({' + '.join(NEEDED)}): {bound:.2f} s")
    if args.budget is not None:
        verdict = "fits" if bound <= args.budget else "does NOT fit"
        print(f"budget {args.budget:.2f} s: the lower bound {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
