"""The benchmark scripts clean up after themselves (`make bench` runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("mode", ["score", "report"])
def test_report_benchmark_removes_its_temporary_folder(tmp_path: Path, mode: str) -> None:
    """report.py wrote the report, model and scored table of every measurement to a
    `segmint-bench-report-*` folder of the temporary folder and never removed it: each
    `make bench` left two behind (megabytes at 100k customers)."""
    rng = np.random.default_rng(0)
    n = 300
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "recency_days": rng.integers(1, 365, n).astype(float),
            "frequency": rng.integers(1, 20, n).astype(float),
            "monetary": rng.gamma(2.0, 300.0, n),
            "tenure_days": rng.integers(0, 365, n).astype(float),
            "avg_basket_value": rng.gamma(2.0, 50.0, n),
            "unique_products": rng.integers(1, 80, n).astype(float),
        }
    )
    data = tmp_path / "customers.parquet"
    customers.to_parquet(data)
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--child", mode, "--data", str(data),
         "--result", str(result)],
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(result.read_text())["seconds"] > 0
    assert not list(temp.glob("segmint-bench-report-*"))
