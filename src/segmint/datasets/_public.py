"""Loaders for the public data sets, read from the folder named by ``SEGMINT_DATA``.

segmint does not ship or download these files (their licences and size forbid shipping;
there is no network at run time on many analyst machines): point ``SEGMINT_DATA`` at a
folder holding ``online_retail.csv.gz`` (UCI Online Retail, CC BY 4.0) and
``flo_data_20k.csv.gz``.
"""

from __future__ import annotations

import os
from pathlib import Path

from segmint.errors import InputError
from segmint.io import Source, read_source

__all__ = ["data_home", "load_flo", "load_online_retail"]

_FILES = {
    "online_retail": (
        "online_retail.csv.gz",
        "UCI Online Retail (id 352): https://archive.ics.uci.edu/dataset/352",
    ),
    "flo": ("flo_data_20k.csv.gz", "FLO customer-level data (flo_data_20k.csv)"),
}


def data_home() -> Path:
    """The folder named by ``SEGMINT_DATA``.

    Raises
    ------
    InputError
        When the variable is unset or names no folder.
    """
    value = os.environ.get("SEGMINT_DATA")
    if not value:
        raise InputError(
            "SEGMINT_DATA is not set, so segmint does not know where the public data sets are",
            hint="export SEGMINT_DATA=/path/to/datasets (a folder holding "
            "online_retail.csv.gz and flo_data_20k.csv.gz)",
            code="no_data_home",
        )
    path = Path(value)
    if not path.is_dir():
        raise InputError(
            f"SEGMINT_DATA={value}: no such folder",
            hint="point SEGMINT_DATA at the folder holding the data set files",
            code="no_data_home",
        )
    return path


def _load(key: str) -> Source:
    name, origin = _FILES[key]
    path = data_home() / name
    if not path.is_file():
        raise InputError(
            f"{path}: not found in SEGMINT_DATA",
            hint=f"download {origin} and save it as {name} in that folder",
            code="file_not_found",
        )
    return read_source(path)


def load_online_retail() -> Source:
    """UCI Online Retail (541,909 invoice lines, 2010-12-01 to 2011-12-09) as a Source."""
    return _load("online_retail")


def load_flo() -> Source:
    """FLO customer-level table (19,945 omnichannel customers) as a Source."""
    return _load("flo")
