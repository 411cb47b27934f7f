"""Shared machinery of the benchmark scripts: child processes with their own peak memory.

Standard library only, so that the parent process, which starts every measurement as a
fresh child, stays small (Linux carries a parent's peak RSS into its children).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_T0 = time.perf_counter()


def say(msg: str) -> None:
    """A progress line with the time since the benchmark started."""
    print(f"[{time.perf_counter() - _T0:8.1f}s] {msg}", flush=True)


def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class StagePeaks:
    """Peak resident memory per stage of a child, sampled from ``/proc/self/statm`` every
    ``interval`` seconds by a background thread (``VmHWM`` only gives the peak of the
    whole process, and resetting it would also reset the ``ru_maxrss`` the parent
    reports). A sample can miss a spike shorter than the interval.

    ``mark(name)`` ends the current stage and starts ``name``; ``stop()`` ends the last
    one and returns ``{stage: peak KiB}``.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self._page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
        self._interval = interval
        self._lock = threading.Lock()
        self._current: str | None = None
        self._peak = 0
        self.peaks: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss_kib(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * self._page_kib
        except OSError:
            return 0

    def _sample(self) -> None:
        rss = self._rss_kib()
        with self._lock:
            self._peak = max(self._peak, rss)

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def mark(self, stage: str | None) -> None:
        self._sample()
        with self._lock:
            if self._current is not None:
                self.peaks[self._current] = max(self.peaks.get(self._current, 0), self._peak)
            self._current, self._peak = stage, self._rss_kib()

    def stop(self) -> dict[str, int]:
        self.mark(None)
        self._done.set()
        self._thread.join()
        return dict(self.peaks)


def chunk_customers(rows: int) -> int:
    """Customers per generated chunk: about rows / 20 lines a chunk (a customer brings
    about 100 lines with the guest lines), so the file overshoots ``rows`` by at most
    ~5 % (write_transactions stops at the first chunk boundary past ``rows``; its default
    of 20,000 customers is ~1.9 million lines a chunk)."""
    return max(100, min(20_000, rows // 2_000))


def parse_rows(text: str) -> int:
    """``1000000``, ``1_000_000``, ``1M``, ``2.5M``, ``500K``, ``1G`` -> lines."""
    m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines (e.g. 10M)")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    rows = int(float(m.group(1).replace("_", "")) * scale)
    if rows < 1:
        raise argparse.ArgumentTypeError("--rows must be at least 1")
    return rows


def source_revision() -> str:
    """The git commit measured, and whether src/ has uncommitted changes."""
    root = HERE.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    files = [line[3:] for line in changed if line.strip()]
    return commit + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f}"


def add_child_arguments(
    parser: argparse.ArgumentParser,
    choices: list[str] | None = None,
    temp_default: str | None = None,
) -> None:
    """Add the hidden ``--child``, ``--temp-dir`` and ``--result`` arguments that
    :func:`run_child` passes to the script it starts (one definition for every script)."""
    parser.add_argument("--child", choices=choices, help=argparse.SUPPRESS)
    parser.add_argument("--temp-dir", default=temp_default, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)


def run_child(script: str, child_args: list[str], mode: str, spill_root: str | None) -> dict:
    """Run ``script --child MODE ...`` in a fresh process; return its JSON result with the
    wall time and the child's own peak RSS (``ru_maxrss`` from ``os.wait4``).

    Adds ``--temp-dir`` (a private DuckDB spill folder, removed afterwards) and
    ``--result`` (where the child writes its JSON) to ``child_args``.
    """
    fd, result_file = tempfile.mkstemp(prefix=f"segmint-bench-{mode}-", suffix=".json")
    os.close(fd)
    spill = tempfile.mkdtemp(prefix=f"segmint-bench-spill-{mode}-", dir=spill_root)
    cmd = [
        sys.executable,
        script,
        "--child",
        mode,
        *child_args,
        "--temp-dir",
        spill,
        "--result",
        result_file,
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        text = Path(result_file).read_text()
        if returncode != 0 or not text:
            return {
                "ok": False,
                "returncode": returncode,
                "process_seconds": wall,
                "peak_kib": usage.ru_maxrss,
            }
        result = json.loads(text)
    finally:
        Path(result_file).unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    result.update(ok=True, returncode=0, process_seconds=wall, peak_kib=usage.ru_maxrss)
    return result
