"""Built-in demo data (synthetic, no network) and loaders for the public data sets."""

from segmint.datasets._public import data_home, load_flo, load_online_retail
from segmint.datasets._synthetic import (
    ONLINE_RETAIL_COLUMNS,
    PERSONAS,
    Persona,
    SyntheticData,
    iter_transactions,
    make_transactions,
    write_transactions,
)

__all__ = [
    "ONLINE_RETAIL_COLUMNS",
    "PERSONAS",
    "Persona",
    "SyntheticData",
    "data_home",
    "iter_transactions",
    "load_flo",
    "load_online_retail",
    "make_transactions",
    "write_transactions",
]
