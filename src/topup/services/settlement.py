"""`topup settle`: match a gateway's daily settlement file with our payments and activations.

Three ways: each settlement line is matched with our payment (by payment id, else by gateway
reference), and the payment with its renewal's state and ledger entries (capture, activation,
refund). Then, for each day the file covers, every payment we captured or refunded that day (in
the operator's time zone) must have its line. What does not match is a discrepancy:

    paid_not_activated    a settled charge whose renewal is neither completed nor refunded, or
                          lacks the ledger entry that state needs. A renewal still ``activating``
                          and captured less than ``limits.activation.activation_late_after_s`` ago is only
                          in progress, listed apart.
    activated_not_paid    a completed renewal captured that day without a charge line.
    captured_not_settled  any other renewal captured that day without a charge line.
    amount_mismatch       a line's amount or currency differs from our payment.
    refund_mismatch       a refund line without our refund, or our refund that day without a line.
    unknown_line          a line for no payment of ours (through this gateway).
    duplicate_line        a line that repeats an earlier one (same type and reference, or the same
                          charged payment); it is not matched again.

Read-only: one unit of work, never committed. A bad file is an ``InputError``
(``settlement_file_invalid``) naming its line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from zoneinfo import ZoneInfo

from topup.domain.errors import InputError
from topup.domain.records import SettlementPayment as OurPayment
from topup.ports import AuditQueries
from topup.services.context import Services

SETTLEMENT_FILE_COLUMNS = (
    "settlement_date",
    "gateway_reference",
    "payment_id",
    "type",
    "amount_minor",
    "currency",
    "fee_minor",
    "net_minor",
)
SETTLEMENT_LINES_MAX = 1_000_000  # lines of one file, header included
SETTLEMENT_FILE_BYTES_MAX = 256 * 1024 * 1024
SETTLEMENT_DAYS_MAX = 31  # distinct settlement dates in one file
SETTLEMENT_FIELD_LENGTH_MAX = 128
SETTLEMENT_LOOKUP_BATCH_SIZE = 500  # ids or references per query
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEGER = re.compile(r"-?\d{1,18}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_REFERENCE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


class DiscrepancyKind(StrEnum):
    PAID_NOT_ACTIVATED = "paid_not_activated"
    ACTIVATED_NOT_PAID = "activated_not_paid"
    CAPTURED_NOT_SETTLED = "captured_not_settled"
    AMOUNT_MISMATCH = "amount_mismatch"
    REFUND_MISMATCH = "refund_mismatch"
    UNKNOWN_LINE = "unknown_line"
    DUPLICATE_LINE = "duplicate_line"


ACTIVATION_IN_PROGRESS = "activation_in_progress"


@dataclass(frozen=True, slots=True)
class SettlementLine:
    number: int  # line number in the file, the header being line 1
    settlement_date: dt.date
    gateway_reference: str
    payment_id: str  # may be empty: the line is then matched by its reference
    type: str  # charge or refund
    amount_minor: int  # negative for a refund
    currency: str
    fee_minor: int
    net_minor: int


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # a DiscrepancyKind, or ACTIVATION_IN_PROGRESS
    detail: str
    line: int | None = None
    payment_id: str | None = None
    renewal_id: str | None = None
    gateway_reference: str | None = None


@dataclass(frozen=True)
class SettlementReport:
    """What a settlement found: the entrypoints format it (``views_json.settlement_json``)."""

    gateway: str
    days: list[dt.date]
    lines: int = 0  # settlement lines, header excluded
    matched: int = 0  # lines matched with a payment of ours, duplicates excluded
    # Per currency: charges_minor, refunds_minor, fees_minor, net_minor as the file states them.
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    discrepancies: list[Finding] = field(default_factory=list)
    in_progress: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    def counts(self) -> dict[str, int]:
        counted = {kind.value: 0 for kind in DiscrepancyKind}
        for finding in self.discrepancies:
            counted[finding.kind] += 1
        return counted


# --- reading the file ---------------------------------------------------------------------------


def _invalid(line: int, problem: str) -> InputError:
    return InputError(
        f"the settlement file is not valid at line {line}: {problem}",
        code="settlement_file_invalid",
        params={"line": str(line), "problem": problem},
    )


def settlement_text(data: bytes) -> str:
    """A settlement file's bytes as text: UTF-8 (a byte-order mark is allowed), within the size
    limit; a bad byte is reported with its line."""
    if len(data) > SETTLEMENT_FILE_BYTES_MAX:
        raise _invalid(1, f"the file is larger than {SETTLEMENT_FILE_BYTES_MAX} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _invalid(data.count(b"\n", 0, error.start) + 1, "not UTF-8 text") from None


SETTLEMENT_YEAR_MIN = 2000
SETTLEMENT_YEAR_MAX = 2999


def parse_settlement_day(text: str) -> dt.date:
    """A settlement date written YYYY-MM-DD."""
    stripped = text.strip()
    try:
        if _DATE.fullmatch(stripped):
            day = dt.date.fromisoformat(stripped)
            if SETTLEMENT_YEAR_MIN <= day.year <= SETTLEMENT_YEAR_MAX:
                return day
    except ValueError:
        pass
    raise InputError(
        f"{text[:40]!r} is not a date written YYYY-MM-DD",
        code="settlement_date_invalid",
        field="date",
        params={"date": text[:40]},
    )


def _rows(csv_text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row, the header included, within the limits."""
    reader = csv.reader(io.StringIO(csv_text.removeprefix("\ufeff"), newline=""), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _invalid(reader.line_num, f"not CSV ({error})") from None
        if reader.line_num > SETTLEMENT_LINES_MAX:
            raise _invalid(reader.line_num, f"more than {SETTLEMENT_LINES_MAX} lines")
        if row:
            yield reader.line_num, row


def _integer(number: int, name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise _invalid(number, f"{name} {text!r} is not a whole number of minor units")
    return int(text)


def _text(number: int, name: str, text: str, *, required: bool = True) -> str:
    if not text and not required:
        return text
    if len(text) > SETTLEMENT_FIELD_LENGTH_MAX or not _REFERENCE.fullmatch(text):
        raise _invalid(number, f"{name} {text[:40]!r} is empty, too long or has spaces")
    return text


def _parse_line(number: int, row: list[str]) -> SettlementLine:
    if len(row) != len(SETTLEMENT_FILE_COLUMNS):
        raise _invalid(number, f"{len(row)} fields; expected {len(SETTLEMENT_FILE_COLUMNS)}")
    date, reference, payment_id, kind, amount, currency, fee, net = row
    if not _DATE.fullmatch(date):
        raise _invalid(number, f"settlement_date {date[:40]!r} is not YYYY-MM-DD")
    try:
        settlement_date = dt.date.fromisoformat(date)
    except ValueError:
        raise _invalid(number, f"settlement_date {date!r} is not a date") from None
    if not SETTLEMENT_YEAR_MIN <= settlement_date.year <= SETTLEMENT_YEAR_MAX:
        raise _invalid(number, f"settlement_date {date!r} is not a year we settle")
    if kind not in ("charge", "refund"):
        raise _invalid(number, f"type {kind[:40]!r} is neither charge nor refund")
    if not _CURRENCY.fullmatch(currency):
        raise _invalid(number, f"currency {currency[:40]!r} is not an ISO 4217 code")
    line = SettlementLine(
        number=number,
        settlement_date=settlement_date,
        gateway_reference=_text(number, "gateway_reference", reference),
        payment_id=_text(number, "payment_id", payment_id, required=False),
        type=kind,
        amount_minor=_integer(number, "amount_minor", amount),
        currency=currency,
        fee_minor=_integer(number, "fee_minor", fee),
        net_minor=_integer(number, "net_minor", net),
    )
    _check_amounts(line)
    return line


def _check_amounts(line: SettlementLine) -> None:
    if line.type == "charge" and line.amount_minor <= 0:
        raise _invalid(line.number, "a charge's amount_minor must be positive")
    if line.type == "refund" and line.amount_minor >= 0:
        raise _invalid(line.number, "a refund's amount_minor must be negative")
    if line.fee_minor < 0:
        raise _invalid(line.number, "fee_minor must not be negative")
    if line.net_minor != line.amount_minor - line.fee_minor:
        raise _invalid(line.number, "net_minor is not amount_minor - fee_minor")


def parse_settlement_file(csv_text: str) -> list[SettlementLine]:
    """Every line of a settlement file, checked; the first problem is an InputError naming its
    line."""
    rows = _rows(csv_text)
    header = next(rows, None)
    if header is None:
        raise _invalid(1, "the file is empty; it starts with " + ",".join(SETTLEMENT_FILE_COLUMNS))
    number, names = header
    if tuple(name.strip() for name in names) != SETTLEMENT_FILE_COLUMNS:
        raise _invalid(number, "the header is not " + ",".join(SETTLEMENT_FILE_COLUMNS))
    lines: list[SettlementLine] = []
    days: set[dt.date] = set()
    for number, row in rows:
        line = _parse_line(number, row)
        days.add(line.settlement_date)
        if len(days) > SETTLEMENT_DAYS_MAX:
            raise _invalid(number, f"the file covers more than {SETTLEMENT_DAYS_MAX} days")
        lines.append(line)
    return lines


# --- matching ------------------------------------------------------------------------------------


async def settle(
    services: Services, csv_text: str, *, day: dt.date | None = None
) -> SettlementReport:
    """Match a settlement file of ``services.gateway`` with our payments. The days checked are
    the settlement dates of its lines, and ``day`` if given; a file without lines is checked
    for ``day``, by default the operator's today (the profile's time zone). Changes nothing."""
    lines = parse_settlement_file(csv_text)
    zone = ZoneInfo(services.profile.time_zone)
    if not lines and day is None:
        day = services.clock.now().astimezone(zone).date()
    days = sorted({line.settlement_date for line in lines} | ({day} if day else set()))
    report = SettlementReport(gateway=services.gateway.name, days=days, lines=len(lines))
    async with services.unit_of_work() as uow:
        ours = await _payments_for_lines(uow.audit, lines)
        captured: list[OurPayment] = []
        refunded: list[OurPayment] = []
        for each_day in days:
            start, end = _day_bounds(each_day, zone)
            captured += await _payments(
                uow.audit.payments_captured_between(start, end, gateway=report.gateway)
            )
            refunded += await _payments(
                uow.audit.payments_refunded_between(start, end, gateway=report.gateway)
            )
    matcher = _Matcher(report, ours, now=services.clock.now(), services=services)
    for line in lines:
        matcher.match(line)
    matcher.check_our_side(captured, refunded)
    return replace(report, matched=matcher.matched)


def _day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of ``day`` in ``zone``, as UTC times."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


async def _payments(rows: Awaitable[list[OurPayment]]) -> list[OurPayment]:
    return list(await rows)


def _batches(values: Sequence[str]) -> Iterator[list[str]]:
    unique = sorted(set(values))
    for start in range(0, len(unique), SETTLEMENT_LOOKUP_BATCH_SIZE):
        yield unique[start : start + SETTLEMENT_LOOKUP_BATCH_SIZE]


async def _payments_for_lines(
    audit: AuditQueries, lines: Sequence[SettlementLine]
) -> list[OurPayment]:
    """Our payments named by the lines: by payment id (the primary key), then, for lines whose
    id is missing or not ours, by their charge or refund reference."""
    found: dict[str, OurPayment] = {}
    for batch in _batches([line.payment_id for line in lines if line.payment_id]):
        for payment in await _payments(audit.settlement_payments(payment_ids=batch)):
            found[payment.id] = payment
    unmatched = [line for line in lines if line.payment_id not in found]
    for kind, keyword in (("charge", "charge_references"), ("refund", "refund_references")):
        references = [line.gateway_reference for line in unmatched if line.type == kind]
        for batch in _batches(references):
            for payment in await _payments(audit.settlement_payments(**{keyword: batch})):
                found[payment.id] = payment
    return list(found.values())


class _Matcher:
    """Matches lines one by one, then our day's captures and refunds against what was seen."""

    def __init__(
        self,
        report: SettlementReport,
        ours: Sequence[OurPayment],
        *,
        now: dt.datetime,
        services: Services,
    ) -> None:
        self.report = report
        self.matched = 0  # lines matched with a payment of ours, duplicates excluded
        self.now = now
        self.grace = dt.timedelta(seconds=services.limits.activation.activation_late_after_s)
        self.by_id = {payment.id: payment for payment in ours}
        self.by_reference: dict[tuple[str, str], OurPayment] = {}
        for payment in ours:
            if payment.gateway_reference:
                self.by_reference["charge", payment.gateway_reference] = payment
            if payment.refund_reference:
                self.by_reference["refund", payment.refund_reference] = payment
        self.references: dict[tuple[str, str], int] = {}  # (type, reference) -> line
        self.settled: dict[tuple[str, str], int] = {}  # (type, our payment id) -> line

    def _add(
        self,
        kind: DiscrepancyKind,
        detail: str,
        *,
        line: SettlementLine | None = None,
        payment: OurPayment | None = None,
        reference: str | None = None,
    ) -> None:
        self.report.discrepancies.append(
            Finding(
                kind=kind.value,
                detail=detail,
                line=line.number if line else None,
                payment_id=payment.id if payment else (line.payment_id or None if line else None),
                renewal_id=payment.renewal_id if payment else None,
                gateway_reference=line.gateway_reference if line else reference,
            )
        )

    def _total(self, line: SettlementLine) -> None:
        totals = self.report.totals.setdefault(
            line.currency, {"charges_minor": 0, "refunds_minor": 0, "fees_minor": 0, "net_minor": 0}
        )
        totals["charges_minor" if line.type == "charge" else "refunds_minor"] += line.amount_minor
        totals["fees_minor"] += line.fee_minor
        totals["net_minor"] += line.net_minor

    def _duplicate(self, line: SettlementLine, earlier: int, why: str) -> None:
        self._add(
            DiscrepancyKind.DUPLICATE_LINE,
            f"line {line.number} repeats line {earlier} ({why})",
            line=line,
        )

    def match(self, line: SettlementLine) -> None:
        earlier = self.references.setdefault((line.type, line.gateway_reference), line.number)
        if earlier != line.number:
            self._duplicate(line, earlier, "same type and reference")
            return
        payment = self.by_id.get(line.payment_id) or self.by_reference.get(
            (line.type, line.gateway_reference)
        )
        if payment is not None and payment.gateway == self.report.gateway:
            earlier = self.settled.setdefault((line.type, payment.id), line.number)
            if earlier != line.number:
                self._duplicate(line, earlier, f"a second {line.type} of the same payment")
                return
        self._total(line)
        if payment is None or payment.gateway != self.report.gateway:
            detail = "no payment of ours has this payment id or reference"
            if payment is not None:
                detail = f"payment {payment.id} was made through gateway {payment.gateway}"
            self._add(DiscrepancyKind.UNKNOWN_LINE, detail, line=line)
            return
        self.matched += 1
        self._check_amount(line, payment)
        if line.type == "charge":
            self._check_charge(line, payment)
        elif not payment.refunded:
            self._add(
                DiscrepancyKind.REFUND_MISMATCH,
                "the gateway refunded this payment but we have no refund: renewal is "
                f"{payment.renewal_status}, payment is {payment.status}",
                line=line,
                payment=payment,
            )

    def _check_amount(self, line: SettlementLine, payment: OurPayment) -> None:
        expected = payment.amount_minor if line.type == "charge" else -payment.amount_minor
        if (line.amount_minor, line.currency) != (expected, payment.currency):
            self._add(
                DiscrepancyKind.AMOUNT_MISMATCH,
                f"the line's {line.type} is {line.amount_minor} {line.currency} (minor units); "
                f"ours is {expected} {payment.currency}",
                line=line,
                payment=payment,
            )

    def _check_charge(self, line: SettlementLine, payment: OurPayment) -> None:
        if payment.activated or payment.refunded:
            return
        captured_at = payment.captured_at
        if (
            payment.renewal_status == "activating"
            and captured_at is not None
            and self.now - captured_at < self.grace
        ):
            self.report.in_progress.append(
                Finding(
                    kind=ACTIVATION_IN_PROGRESS,
                    detail=f"captured at {captured_at.isoformat()}; activation under way",
                    line=line.number,
                    payment_id=payment.id,
                    renewal_id=payment.renewal_id,
                    gateway_reference=line.gateway_reference,
                )
            )
            return
        self._add(
            DiscrepancyKind.PAID_NOT_ACTIVATED,
            f"the gateway settled this charge but the renewal is {payment.renewal_status} "
            f"(payment {payment.status}, {_entries(payment)})",
            line=line,
            payment=payment,
        )

    def check_our_side(
        self, captured: Sequence[OurPayment], refunded: Sequence[OurPayment]
    ) -> None:
        """Every payment captured or refunded on the file's days must have had its line."""
        for payment in captured:
            if ("charge", payment.id) in self.settled:
                continue
            kind = (
                DiscrepancyKind.ACTIVATED_NOT_PAID
                if payment.activated
                else DiscrepancyKind.CAPTURED_NOT_SETTLED
            )
            self._add(
                kind,
                f"we captured this payment ({payment.amount_minor} {payment.currency}) but the "
                f"file has no charge line for it; renewal is {payment.renewal_status}",
                payment=payment,
                reference=payment.gateway_reference,
            )
        for payment in refunded:
            if ("refund", payment.id) not in self.settled:
                self._add(
                    DiscrepancyKind.REFUND_MISMATCH,
                    f"we refunded this payment ({payment.amount_minor} {payment.currency}) but "
                    "the file has no refund line for it",
                    payment=payment,
                    reference=payment.refund_reference,
                )


def _entries(payment: OurPayment) -> str:
    present = [
        kind
        for kind, at in (
            ("capture", payment.captured_at),
            ("activation", payment.activated_at),
            ("refund", payment.refunded_at),
        )
        if at is not None
    ]
    return "ledger entries: " + (", ".join(present) if present else "none")
