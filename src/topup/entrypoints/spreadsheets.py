"""What every CSV the entrypoints write shares (the portal's downloads, the command line's result
files): a cell a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable

from topup.domain.fleets import BulkLine

# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


# A bulk renewal's result file, the portal's download and the command line's ``--result`` alike.
BULK_RESULT_COLUMNS = (
    "line", "number", "plan", "outcome", "renewal_id", "receipt", "error_code", "message",
)  # fmt: skip


def bulk_result_csv(lines: Iterable[BulkLine], message_of: Callable[[BulkLine], str]) -> str:
    """One row per line of the upload (``message_of`` says why a line was not renewed, "" when
    it was), every cell safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(BULK_RESULT_COLUMNS)
    for line in lines:
        cells = (
            str(line.line_no),
            line.number,
            line.plan_code,
            line.status.value,
            line.renewal_id or "",
            line.receipt_number or "",
            line.error_code or "",
            message_of(line),
        )
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    return buffer.getvalue()
