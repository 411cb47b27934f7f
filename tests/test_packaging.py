"""What the distributions carry: the wheel everything segmint reads at run time, the
source distribution everything its tests need."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build(kind: str, out: Path) -> Path:
    """Build with the environment's setuptools (no isolation, no network), from a copy of
    the sources: in the checkout, setuptools would also add every file listed in the
    SOURCES.txt of an earlier build's egg-info."""
    tree = out / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("src", "tests", "benchmarks"):
        shutil.copytree(ROOT / name, tree / name, ignore=skip)
    for name in (
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "MANIFEST.in",
        "Makefile",
        "CHANGELOG.md",
    ):
        shutil.copy2(ROOT / name, tree / name)
    code = f"import sys, setuptools.build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out / result.stdout.strip().splitlines()[-1]


def _files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_the_sdist_carries_what_its_tests_need(tmp_path: Path) -> None:
    """The sdist had the test files but not conftest.py, the helpers, tests/data (the
    CDNOW reference data) or the Makefile, so its tests could not even be collected."""
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = [*_files(ROOT / "tests"), *_files(ROOT / "benchmarks"), "Makefile", "CHANGELOG.md"]
    missing = [name for name in wanted if name not in names]
    assert not missing, missing


def test_the_wheel_carries_every_file_segmint_reads(tmp_path: Path) -> None:
    """Rule sets, report templates and the web page's files are read from the package."""
    wheel = _build("wheel", tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    package = ROOT / "src" / "segmint"
    wanted = [str(Path(f).relative_to("src")) for f in _files(package)]
    missing = [name for name in wanted if name not in names]
    assert not missing, missing
