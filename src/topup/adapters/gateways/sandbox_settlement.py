"""What the sandbox gateway settled: a journal of its money movements, and its daily settlement file.

A real payment gateway sends a settlement file each day: every charge it captured and every
refund it made, with its fee. The sandbox gateway (``sandbox.py``) is stateless and remembers
nothing, so ``JournalingGateway`` wraps it and appends one record per money movement to a
``SettlementJournal``; ``settlement_csv`` turns the journal into the file for one day, which
``topup settle`` reconciles with our payments.

The journal
===========

A JSON-lines file, one record a line::

    {"type": "charge", "payment_id": "...", "gateway_reference": "ch_sbx_...",
     "amount_minor": 1000, "currency": "MYR", "at": "2026-11-25T08:00:00+00:00"}

``type`` is ``charge`` (money captured) or ``refund`` (money returned; ``amount_minor`` negative),
``at`` is when the gateway answered that the movement succeeded (UTC). Several processes (the web
server, the worker, the command line) may append to one journal at once: each record is a single
``write`` on a descriptor opened with ``O_APPEND``, which POSIX places whole at the end of a local
file (not on NFS). Records are not fsynced: a crash of the machine may lose the last ones, which a
sandbox allows. The same movement may be written twice (two processes each saw a charge succeed,
or a process restarted and forgot what it had written): ``settlement_csv`` keeps the first record
of each movement, so the file lists each charge and each refund once.

The settlement file
===================

``settlement_date,gateway_reference,payment_id,type,amount_minor,currency,fee_minor,net_minor``:
one line per movement whose first record falls on that day in the operator's time zone, oldest
first. A charge pays the sandbox fee, ``SANDBOX_FEE_BASIS_POINTS`` (150 = 1.5 %) of the amount
rounded half up to the minor unit, in integers; a refund carries no fee (the sandbox keeps the
charge's fee, as most gateways do). ``net_minor = amount_minor - fee_minor``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from topup.adapters.private_files import make_private_directory
from topup.domain.errors import InputError, InvariantError
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    GatewayEvent,
    GatewayOutcome,
    PaymentCardDetails,
    PaymentGateway,
    PaymentToken,
    RefundOutcome,
    RefundResult,
)

DEFAULT_JOURNAL_PATH = "var/sandbox-settlements.jsonl"
SANDBOX_FEE_BASIS_POINTS = 150  # 1.5 % of each charge
BASIS_POINTS_PER_UNIT = 10_000
JOURNAL_LINES_MAX = 10_000_000  # a longer journal is refused rather than read into memory
JOURNAL_LINE_LENGTH_MAX = 4_096
REMEMBERED_MOVEMENTS_MAX = 100_000  # per process; older ones may be written again (harmless)
SETTLEMENT_COLUMNS = (
    "settlement_date",
    "gateway_reference",
    "payment_id",
    "type",
    "amount_minor",
    "currency",
    "fee_minor",
    "net_minor",
)


class MovementType(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    """One money movement the gateway processed; a refund's amount is negative."""

    type: MovementType
    payment_id: str
    gateway_reference: str
    amount_minor: int
    currency: str
    at: dt.datetime

    @property
    def key(self) -> tuple[str, str]:
        """What makes two records the same movement: a charge per payment, a refund per reference."""
        if self.type is MovementType.CHARGE:
            return (self.type.value, self.payment_id)
        return (self.type.value, self.gateway_reference)

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": self.type.value,
                "payment_id": self.payment_id,
                "gateway_reference": self.gateway_reference,
                "amount_minor": self.amount_minor,
                "currency": self.currency,
                "at": self.at.astimezone(dt.UTC).isoformat(),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SettlementRecord:
        """Read one journal line; anything malformed raises ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        amount = data["amount_minor"]
        if type(amount) is not int:
            raise ValueError("amount_minor is not an integer")
        at = dt.datetime.fromisoformat(str(data["at"]))
        if at.tzinfo is None:
            raise ValueError("at has no time zone")
        return cls(
            type=MovementType(data["type"]),
            payment_id=str(data["payment_id"]),
            gateway_reference=str(data["gateway_reference"]),
            amount_minor=amount,
            currency=str(data["currency"]),
            at=at.astimezone(dt.UTC),
        )


class SettlementJournal:
    """Appends settlement records to a JSON-lines file, created with its directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        make_private_directory(self.path.parent)
        self._descriptor: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )

    def append(self, record: SettlementRecord) -> None:
        """One ``write`` of one whole line: concurrent writers never interleave inside a line."""
        if self._descriptor is None:
            raise InvariantError(f"the settlement journal {self.path} is closed")
        line = (record.to_json() + "\n").encode()
        written = os.write(self._descriptor, line)
        if written != len(line):
            raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def sandbox_fee_minor(amount_minor: int) -> int:
    """The sandbox's fee on a charge: 1.5 % rounded half up to the minor unit, in integers."""
    if amount_minor <= 0:
        return 0
    return (amount_minor * SANDBOX_FEE_BASIS_POINTS + BASIS_POINTS_PER_UNIT // 2) // (
        BASIS_POINTS_PER_UNIT
    )


def _journal_error(path: Path, line: int, problem: str) -> InputError:
    return InputError(
        f"the sandbox settlement journal {path} is not valid at line {line}: {problem}",
        code="settlement_journal_invalid",
        params={"path": str(path), "line": str(line), "problem": problem},
    )


def read_journal(path: Path | str) -> Iterator[SettlementRecord]:
    """Every record of a journal, in file order. A bad line is an InputError naming it."""
    journal = Path(path)
    try:
        handle = journal.open(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"the sandbox settlement journal {journal} cannot be read: {reason}",
            code="settlement_journal_unreadable",
            params={"path": str(journal), "reason": reason},
        ) from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if number > JOURNAL_LINES_MAX:
                raise _journal_error(journal, number, f"more than {JOURNAL_LINES_MAX} lines")
            if len(line) > JOURNAL_LINE_LENGTH_MAX:
                raise _journal_error(journal, number, "line too long")
            try:
                yield SettlementRecord.from_json(line)
            except (ValueError, KeyError, TypeError) as error:
                raise _journal_error(journal, number, str(error)) from None


def settlement_records(
    journal_path: Path | str, day: dt.date, time_zone: str
) -> list[SettlementRecord]:
    """The movements first recorded on ``day`` in ``time_zone``, each once, oldest first."""
    zone = ZoneInfo(time_zone)
    first: dict[tuple[str, str], SettlementRecord] = {}
    for record in read_journal(journal_path):
        known = first.get(record.key)
        if known is None or record.at < known.at:
            first[record.key] = record
    on_day = [record for record in first.values() if record.at.astimezone(zone).date() == day]
    return sorted(on_day, key=lambda record: (record.at, record.gateway_reference))


def settlement_csv(journal_path: Path | str, day: dt.date, time_zone: str) -> str:
    """The sandbox gateway's settlement file for ``day`` (see the module docstring)."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(SETTLEMENT_COLUMNS)
    for record in settlement_records(journal_path, day, time_zone):
        fee = sandbox_fee_minor(record.amount_minor) if record.type is MovementType.CHARGE else 0
        writer.writerow(
            (
                day.isoformat(),
                record.gateway_reference,
                record.payment_id,
                record.type.value,
                record.amount_minor,
                record.currency,
                fee,
                record.amount_minor - fee,
            )
        )
    return output.getvalue()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JournalingGateway:
    """A PaymentGateway that passes every call to ``inner`` and writes each charge that succeeded
    and each refund made to ``journal``, once per movement as far as this process remembers.

    A journal that cannot be written raises OSError, which callers treat as a transport error
    (outcome unknown, asked again later), so a movement is written when the gateway is next asked.
    """

    def __init__(
        self,
        inner: PaymentGateway,
        journal: SettlementJournal,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        remembered_max: int = REMEMBERED_MOVEMENTS_MAX,
    ) -> None:
        self.name = inner.name
        self._inner = inner
        self._journal = journal
        self._clock = clock
        self._remembered_max = remembered_max
        self._written: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        return await self._inner.tokenize(card)

    def tokenize_account(self, provider: str, account: str) -> PaymentToken:
        return self._inner.tokenize_account(provider, account)

    async def payment_token_of(self, token: str) -> PaymentToken:
        return await self._inner.payment_token_of(token)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> GatewayEvent:
        return self._inner.parse_webhook(body, headers, now)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        result = await self._inner.charge(request)
        self._note_charge(request, result)
        return result

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        result = await self._inner.retrieve(request)
        self._note_charge(request, result)
        return result

    async def confirm(self, request: ChargeRequest, answer: str) -> ChargeResult:
        result = await self._inner.confirm(request, answer)
        self._note_charge(request, result)
        return result

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        result = await self._inner.refund(refund_id=refund_id, charge=charge)
        if result.outcome is RefundOutcome.SUCCEEDED:
            self._write(
                SettlementRecord(
                    type=MovementType.REFUND,
                    payment_id=charge.payment_id,
                    gateway_reference=result.gateway_reference or refund_id,
                    amount_minor=-charge.amount.minor,
                    currency=charge.amount.currency,
                    at=self._clock(),
                )
            )
        return result

    def _note_charge(self, request: ChargeRequest, result: ChargeResult) -> None:
        if result.outcome is not GatewayOutcome.SUCCEEDED:
            return
        self._write(
            SettlementRecord(
                type=MovementType.CHARGE,
                payment_id=request.payment_id,
                gateway_reference=result.gateway_reference or request.payment_id,
                amount_minor=request.amount.minor,
                currency=request.amount.currency,
                at=self._clock(),
            )
        )

    def _write(self, record: SettlementRecord) -> None:
        if record.key in self._written:
            self._written.move_to_end(record.key)
            return
        self._journal.append(record)
        self._written[record.key] = None
        while len(self._written) > self._remembered_max:
            self._written.popitem(last=False)
