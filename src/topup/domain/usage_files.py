"""Reading usage records the network sends: CSV with a header, or JSON lines.

Each record has ``record_id`` (the network's id, 1 to 64 printable characters), ``card`` (the
card's MSISDN in any form, or its ICCID), ``used_at`` (ISO 8601 with a time zone, e.g.
``2026-12-04T08:15:00Z``) and ``data_used_mb`` (a whole number of megabytes, 0 or more: a JSON
number in JSON lines, digits in a CSV cell, which is text by nature). A line that cannot be used
is a ``LineProblem`` with its line number and a code; the others still count.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.card_number import CardNumber, CardNumberKind, parse_card_number
from topup.domain.errors import InputError, TopupError
from topup.domain.profile import OperatorProfile
from topup.domain.usage import RECORD_ID_LENGTH_MAX

FIELDS = ("record_id", "card", "used_at", "data_used_mb")
# What one record's line takes at most with the longest fields allowed: a 64-character record id
# of characters JSON escapes (six bytes each: 384), an ICCID, a time with microseconds and an
# offset, the largest data figure, the keys and CRLF come to under 500 bytes. A request of the
# most records a request may carry is sized by it (``request_bytes_max``).
RECORD_LINE_BYTES_MAX = 512
E164_DIGITS_MAX = 15
E164_DIGITS_MIN = 8


class UsageFormat(StrEnum):
    CSV = "csv"
    JSON_LINES = "jsonl"


# A line that reads as a record, its card still to be found: (line number, record id, card
# number in canonical form: E.164 such as "+60123456789" or an ICCID's bare digits, used at,
# data used in MB). A plain tuple of plain values: files have millions of lines, and Python's
# garbage collector stops looking at such a tuple once it has seen it (it keeps looking at a
# named tuple, and at every record alive in a batch: a fifth of an import's time).
UsageLine = tuple[int, str, str, dt.datetime, int]


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    code: str
    message: str


def request_bytes_max(records_max: int) -> int:
    """The body a request of ``records_max`` records of the longest fields takes (a CSV header
    besides)."""
    return (records_max + 1) * RECORD_LINE_BYTES_MAX


def detect_format(name: str, first_line: str) -> UsageFormat:
    """By the file's extension (.csv, .jsonl, .ndjson, .json), else by its first line."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return UsageFormat.CSV
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return UsageFormat.JSON_LINES
    return UsageFormat.JSON_LINES if first_line.lstrip().startswith("{") else UsageFormat.CSV


class UsageReader:
    """Turns lines into records and problems. Card numbers are read once each (a file names
    the same cards again and again); times must be in the past or within ``future_skew_s``."""

    def __init__(
        self,
        profile: OperatorProfile,
        *,
        now: dt.datetime,
        future_skew_s: int,
        data_used_mb_max: int,
    ) -> None:
        self._profile = profile
        self._latest = now + dt.timedelta(seconds=future_skew_s)
        self._data_used_mb_max = data_used_mb_max
        self._cards: dict[str, CardNumber | TopupError] = {}

    def read(self, lines: Iterable[str], kind: UsageFormat) -> Iterator[UsageLine | LineProblem]:
        """Every line's record or problem, in file order (blank lines are skipped)."""
        if kind is UsageFormat.CSV:
            return self._read_csv(lines)
        return self._read_json_lines(lines)

    def _read_json_lines(self, lines: Iterable[str]) -> Iterator[UsageLine | LineProblem]:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield _malformed(number, "not a JSON object")
                continue
            if not isinstance(value, dict):
                yield _malformed(number, "not a JSON object")
                continue
            record_id, card, used_at, data_used = (value.get(name) for name in FIELDS)
            if isinstance(data_used, str):  # JSON carries a number, not "7": refused as such
                data_used = None
            yield self._record(number, record_id, card, used_at, data_used)

    def _read_csv(self, lines: Iterable[str]) -> Iterator[UsageLine | LineProblem]:
        rows = csv.reader(iter(lines))
        try:
            header = next(rows)
        except StopIteration:
            return
        except csv.Error:
            raise _header_invalid() from None
        names = [name.strip().lower() for name in header]
        if any(name not in names for name in FIELDS):
            raise _header_invalid()
        at_id, at_card, at_time, at_data = (names.index(name) for name in FIELDS)
        width = len(names)
        record, cards, latest = self._record, self._cards, self._latest
        data_max, utc, parse_time = self._data_used_mb_max, dt.UTC, dt.datetime.fromisoformat
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error:
                yield _malformed(rows.line_num, "not a CSV line")
                continue
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield _malformed(rows.line_num, f"{len(row)} fields, the header has {width}")
                continue
            # The hot path of a file of millions: a line as networks write it (a known card, a
            # time in UTC, plain digits) is checked here as ``_record`` would; any other line,
            # good or bad, is left to ``_record``, which decides.
            record_id, card, when, data = row[at_id], row[at_card], row[at_time], row[at_data]
            number = cards.get(card)
            if (
                number.__class__ is CardNumber
                and 0 < len(record_id) <= RECORD_ID_LENGTH_MAX
                and record_id.isprintable()
                and record_id[0] != " "
                and record_id[-1] != " "
                and data.isdigit()
                and data.isascii()
            ):
                try:
                    used_at = parse_time(when)
                except ValueError:
                    pass
                else:
                    if used_at.tzinfo is utc and used_at <= latest:
                        data_used_mb = int(data)
                        if data_used_mb <= data_max:
                            yield (rows.line_num, record_id, number.value, used_at, data_used_mb)
                            continue
            yield record(rows.line_num, record_id, card, when, data)

    def _record(
        self, line: int, record_id: object, card_text: object, when: object, data_used: object
    ) -> UsageLine | LineProblem:
        if isinstance(record_id, str):
            record_id = record_id.strip()
        if (
            not isinstance(record_id, str)
            or not 0 < len(record_id) <= RECORD_ID_LENGTH_MAX
            or not record_id.isprintable()
        ):
            return LineProblem(
                line,
                "usage_record_id_invalid",
                f"record_id must be 1 to {RECORD_ID_LENGTH_MAX} printable characters",
            )
        card = self._cards.get(card_text) if isinstance(card_text, str) else None
        if card is None:
            card = self._card(card_text)
        if isinstance(card, TopupError):
            return LineProblem(line, "usage_card_invalid", card.message)
        used_at = _time(when)
        if used_at is None:
            return LineProblem(
                line, "usage_time_invalid", "used_at must be ISO 8601 with a time zone"
            )
        if used_at > self._latest:
            return LineProblem(line, "usage_time_in_future", "used_at is in the future")
        data = _whole_number(data_used)
        if data is None or data > self._data_used_mb_max:
            return LineProblem(
                line,
                "usage_data_invalid",
                f"data_used_mb must be a whole number from 0 to {self._data_used_mb_max}",
            )
        return (line, record_id, card.value, used_at, data)

    def _card(self, text: object) -> CardNumber | TopupError:
        if not isinstance(text, str) or not text.strip():
            return InputError("card is missing", code="usage_card_invalid")
        found = self._cards.get(text)
        if found is None:
            found = _card_number(text.strip(), self._profile)
            self._cards[text] = found
        return found


def _card_number(text: str, profile: OperatorProfile) -> CardNumber | TopupError:
    """E.164 as networks send it is taken as is; any other form as a subscriber types it."""
    digits = text[1:]
    if (
        text.startswith("+")
        and digits.isascii()
        and digits.isdigit()
        and E164_DIGITS_MIN <= len(digits) <= E164_DIGITS_MAX
    ):
        return CardNumber(CardNumberKind.MSISDN, text)
    try:
        return parse_card_number(text, profile)
    except TopupError as error:
        return error


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return moment if moment.tzinfo is dt.UTC else moment.astimezone(dt.UTC)


def _whole_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        if value.isdigit() and value.isascii():
            return int(value)
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def _malformed(line: int, why: str) -> LineProblem:
    return LineProblem(line, "usage_line_malformed", f"line cannot be read: {why}")


def _header_invalid() -> InputError:
    return InputError(
        f"a usage CSV file starts with a header naming {', '.join(FIELDS)}",
        code="usage_header_invalid",
        params={"fields": ", ".join(FIELDS)},
    )
