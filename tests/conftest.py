"""Shared fixtures: the public data sets (skip locally, fail on CI), CLI runner, sample files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from segmint.datasets import ONLINE_RETAIL_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"


def _datasets_path() -> Path:
    return Path(os.environ.get("SEGMINT_DATA") or DEFAULT_DATA)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The folder with the public data sets; skips (or fails on CI) when absent."""
    path = _datasets_path()
    needed = ["online_retail.csv.gz", "flo_data_20k.csv.gz"]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        msg = (
            f"public data sets {missing} not found in {path}: set SEGMINT_DATA to the folder "
            "holding them (see ../shared/datasets/README.md)"
        )
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{msg}; on CI (CI=true) they must be present, so this is a failure")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def online_retail(datasets_dir: Path) -> Path:
    return datasets_dir / "online_retail.csv.gz"


@pytest.fixture(scope="session")
def flo(datasets_dir: Path) -> Path:
    return datasets_dir / "flo_data_20k.csv.gz"


@pytest.fixture(scope="session")
def retail_pandas(online_retail: Path) -> pd.DataFrame:
    """The raw Online Retail file read with plain pandas (for independent checks)."""
    return pd.read_csv(
        online_retail, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"}
    )


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the segmint CLI in-process: ``cli("inspect", path)`` -> CliResult."""
    from segmint.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        saved = dict(os.environ)  # engine options set env vars, as in a real process
        try:
            code = main([str(a) for a in args])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def retail_frame(n: int = 6) -> pd.DataFrame:
    """A tiny clean UCI-style table."""
    rows = [
        (
            "536365",
            "85123A",
            "WHITE HANGING HEART",
            6,
            "2010-12-01 08:26:00",
            2.55,
            "17850",
            "United Kingdom",
        ),
        (
            "536366",
            "22633",
            "HAND WARMER",
            2,
            "2010-12-02 09:00:00",
            1.85,
            "13047",
            "United Kingdom",
        ),
        ("536367", "84879", "ASSORTED BIRD", 32, "2010-12-03 10:30:00", 1.69, "12583", "France"),
        (
            "536368",
            "22960",
            "JAM MAKING SET",
            4,
            "2010-12-04 11:00:00",
            4.25,
            "17850",
            "United Kingdom",
        ),
        (
            "536369",
            "21756",
            "BATH BUILDING",
            3,
            "2010-12-05 12:00:00",
            5.95,
            "13047",
            "United Kingdom",
        ),
        ("536370", "22728", "ALARM CLOCK", 24, "2010-12-06 13:00:00", 3.75, "12583", "France"),
    ][:n]
    return pd.DataFrame(
        rows,
        columns=ONLINE_RETAIL_COLUMNS,
    )


@pytest.fixture
def retail_csv(tmp_path: Path) -> Path:
    path = tmp_path / "retail.csv"
    retail_frame().to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ headless browser
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by selenium (Debian ``chromium`` + ``chromium-driver``).

    Skips with the reason when they are missing (``make test`` as root installs them);
    on CI (``CI=true``) that is a failure instead.
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        msg = (
            f"headless browser tests need {', '.join(missing)}: run `make test` as root (it "
            "installs them) or `apt-get install chromium chromium-driver`"
        )
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{msg}; on CI (CI=true) this is a failure")
        pytest.skip(msg)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def plant_link_as_other_user(link: Path, target: Path) -> bool:
    """Try, as the unprivileged user ``nobody``, to put a symbolic link to ``target`` at
    ``link`` (what a colleague who may write in a shared output folder can do); True
    when it worked. Needs root to switch users (the tests run as root; skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("switching to another user (nobody) needs root")
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try, report by exit status only
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.symlink(target, link)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def shared_folder(tmp_path: Path) -> Path:
    """A folder every user may write in (no sticky bit: a team's shared exports folder),
    reachable by ``nobody`` (every folder above it searchable)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    for parent in (tmp_path, *tmp_path.parents):
        if parent.stat().st_mode & 0o001 == 0:
            parent.chmod(parent.stat().st_mode | 0o001)
    return folder


def zoned_frame() -> pd.DataFrame:
    """Sales at 9:00 local time in Sydney (22:00 or 23:00 UTC the day before, by daylight
    saving) and at 21:30 in New York (01:30/02:30 UTC the next day), as instants; the
    same wall times without a zone (``wall``, local times) and as text. Shared by the
    DuckDB test (test_schema.py) and the Spark one (test_engines.py)."""
    sydney = pd.to_datetime(["2024-01-15 09:00", "2024-07-15 09:00"]).tz_localize(
        "Australia/Sydney"
    )
    utc = pd.to_datetime(["2024-01-15 02:30", "2024-07-15 01:30"]).tz_localize("UTC")
    frame = pd.DataFrame(
        {
            "customer": ["a", "a", "b", "b"],
            "invoice": ["1", "2", "3", "4"],
            "sydney": list(sydney) + list(sydney),
            "utc": list(utc) + list(utc),
            "wall": list(sydney.tz_localize(None)) * 2,
            "text": ["2024-01-15 09:00:00"] * 4,
            "price": [1.0, 2.0, 3.0, 4.0],
        }
    )
    frame["utc"] = frame["utc"].dt.tz_convert("UTC")
    return frame


def zoned_parquet(path: Path) -> Path:
    """:func:`zoned_frame` written to Parquet (zones kept)."""
    zoned_frame().to_parquet(path)
    return path


def int96_parquet(path: Path) -> Path:
    """The ``sydney`` sales of :func:`zoned_parquet` stored as INT96 timestamps, as Spark
    (its default) and Hive write them: UTC instants in a type that names no zone."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = zoned_frame()[["customer", "invoice", "sydney", "price"]]
    frame["sydney"] = frame["sydney"].dt.tz_convert("UTC").dt.tz_localize(None)
    pq.write_table(pa.Table.from_pandas(frame), path, use_deprecated_int96_timestamps=True)
    assert pq.read_metadata(path).schema.column(2).physical_type == "INT96"
    return path


#: ANSI control sequences a terminal program writes (colours, cursor moves).
_ANSI = __import__("re").compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def cli_on_terminal(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> CliResult:
    """Run ``python -m segmint ARGS`` in a new process with stderr on a terminal (a
    pseudo-terminal, 200 columns) and stdout on a pipe, as ``segmint ... | head`` runs;
    ``err`` is what the terminal showed, without control sequences."""
    import pty
    import subprocess
    import sys
    import threading

    leader, follower = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:  # a full terminal buffer would block the program
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the program ended: the terminal is closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    run_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", **(env or {})}
    run_env.pop("NO_COLOR", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "segmint", *map(str, args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
            env=run_env, timeout=300, check=False,
        )  # fmt: skip
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    err = _ANSI.sub("", b"".join(shown).decode("utf-8", errors="replace"))
    return CliResult(done.returncode, done.stdout.decode(), err)
