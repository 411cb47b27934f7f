"""Small helpers for the wording of messages."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["count", "number_text", "percent_text"]


def count(n: float, noun: str, plural: str | None = None, fmt: str = ",") -> str:
    """``n`` with its noun in the right number: ``count(1, "day")`` -> "1 day",
    ``count(2_000, "customer")`` -> "2,000 customers" (``fmt`` formats the number;
    ``plural`` for nouns not made plural with an "s")."""
    text = format(n, fmt)
    one = text.lstrip("-+") in {"1", "1.0"}
    return f"{text} {noun if one else (plural or noun + 's')}"


def number_text(value: Any, digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals, as a reader rounds:
    the decimal value as written, halves up (28.75 -> "28.8", where binary floating
    point gave "28.7"), and never "-0" for a tiny negative; "–" for none."""
    if value is None:
        return "–"
    number = float(value)
    if not math.isfinite(number):
        return f"{number:,.{digits}f}"
    exact = Decimal(repr(number)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return f"{abs(exact) if exact == 0 else exact:,.{digits}f}"


def percent_text(value: Any, digits: int = 1, sep: str = " ") -> str:
    """A share as a percentage (``0.2875`` -> ``"28.8 %"``), rounded as
    :func:`number_text` rounds; ``sep=""`` gives ``"28.8%"`` (the terminal's tables),
    so the CLI and the report print the same figure (0.0985: 9.9, not 9.8 and 9.9)."""
    if value is None:
        return "–"
    number = float(value)
    if not math.isfinite(number):
        return f"{number * 100:.{digits}f}{sep}%"
    exact = Decimal(repr(number)).scaleb(2)
    return f"{number_text(float(exact), digits).replace(',', '')}{sep}%"
