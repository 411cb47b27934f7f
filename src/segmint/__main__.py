"""``python -m segmint`` runs the CLI."""

from segmint.cli import _entry

_entry()
