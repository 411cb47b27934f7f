"""Messages of the ``segmint`` command for common slips, run as a user runs it: a real
process, real files, one ``Error:`` line naming what is wrong and a hint, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from segmint.datasets import make_transactions

SEGMINT = [sys.executable, "-m", "segmint"]


@dataclass
class Result:
    code: int
    out: str
    err: str


def segmint(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> Result:
    proc = subprocess.run(
        [*SEGMINT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_error(result: Result, *needles: str) -> str:
    """Exit 2, the first line starts with ``Error:`` and holds every needle, a hint
    follows, no traceback; returns the whole stderr."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert lines and lines[0].startswith("Error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert any(line.startswith("Hint: ") for line in lines[1:]), result.err
    assert "Traceback" not in result.err + result.out
    return result.err


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    lines, _ = make_transactions(n_customers=300, seed=1)
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    lines.to_csv(path, index=False)
    return path


# -- score without data ---------------------------------------------------------------
def test_score_without_data_says_no_data_was_given(tmp_path: Path) -> None:
    err = assert_error(segmint("score", "my-run", cwd=tmp_path), "no data given")
    assert "segmint score" in err and "--out" in err  # the usage of score, not of run
    assert "say where the assignments go" not in err
    # with the data but no output, it still asks where the assignments go
    (tmp_path / "sales.csv").write_text("a\n1\n")
    assert_error(segmint("score", "my-run", "sales.csv", cwd=tmp_path), "--out")
