"""Loaders for the public data sets (SEGMINT_DATA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segmint.datasets import load_flo, load_online_retail
from segmint.errors import InputError


def test_clear_error_without_segmint_data(monkeypatch) -> None:
    monkeypatch.delenv("SEGMINT_DATA", raising=False)
    with pytest.raises(InputError, match="SEGMINT_DATA is not set") as err:
        load_online_retail()
    assert "export SEGMINT_DATA=" in err.value.hint


def test_clear_error_when_folder_or_file_is_missing(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGMINT_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="no such folder"):
        load_flo()
    monkeypatch.setenv("SEGMINT_DATA", str(tmp_path))
    with pytest.raises(InputError, match=r"online_retail\.csv\.gz: not found") as err:
        load_online_retail()
    assert "archive.ics.uci.edu" in err.value.hint


def test_loads_the_real_files(monkeypatch, datasets_dir: Path) -> None:
    monkeypatch.setenv("SEGMINT_DATA", str(datasets_dir))
    retail, flo = load_online_retail(), load_flo()
    assert retail.count() == 541_909
    assert flo.count() == 19_945
    assert retail.columns[:2] == ["InvoiceNo", "StockCode"]
