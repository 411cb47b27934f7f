"""Small helpers for the wording of messages."""

from __future__ import annotations

__all__ = ["count"]


def count(n: float, noun: str, plural: str | None = None, fmt: str = ",") -> str:
    """``n`` with its noun in the right number: ``count(1, "day")`` -> "1 day",
    ``count(2_000, "customer")`` -> "2,000 customers" (``fmt`` formats the number;
    ``plural`` for nouns not made plural with an "s")."""
    text = format(n, fmt)
    one = text.lstrip("-+") in {"1", "1.0"}
    return f"{text} {noun if one else (plural or noun + 's')}"
