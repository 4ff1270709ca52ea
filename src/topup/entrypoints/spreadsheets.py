"""What every CSV the entrypoints write shares (the portal's downloads, the command line's result
files): a cell a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
