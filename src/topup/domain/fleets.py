"""Enterprise fleets: organisations, their members' roles, and the lines of a bulk renewal.

Pure: a bulk renewal's text is parsed into lines here, each line's idempotency key is derived
here, and what a role may do is decided here. The services load the cards and plans and commit.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from topup.domain.errors import InputError, NotFoundError
from topup.domain.money import Money

ORGANISATION_NAME_LENGTH_MAX = 200
BULK_LINE_LENGTH_MAX = 200  # characters in one line of an upload
BULK_NUMBER_LENGTH_MAX = 40
BULK_PLAN_LENGTH_MAX = 64
_HEADER_WORDS = frozenset({"number", "card", "card_number", "msisdn", "iccid", "phone"})
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class MemberRole(StrEnum):
    OWNER = "owner"  # everything, including who the members are
    ADMIN = "admin"  # renews, links cards, sets the policy and the payment card
    VIEWER = "viewer"  # sees the fleet, its runs and invoices; changes nothing

    @property
    def may_manage(self) -> bool:
        """Renew, link cards, change the policy or the payment card."""
        return self in (MemberRole.OWNER, MemberRole.ADMIN)


def member_role(text: str) -> MemberRole:
    try:
        return MemberRole(text.strip().lower())
    except ValueError:
        raise InputError(
            f"a member's role is owner, admin or viewer, not {text!r}",
            code="member_role_unknown",
            field="role",
            params={"role": text[:20]},
        ) from None


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str
    language: str  # its invoices' language (a locale of the profile)
    created_at: dt.datetime
    # The saved payment card bulk renewals are charged to: one of a member's (owner or admin).
    payment_card_id: str | None = None
    payment_card_account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    organisation_id: str
    account_id: str
    role: MemberRole
    added_at: dt.datetime
    email: str = ""


def check_organisation_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > ORGANISATION_NAME_LENGTH_MAX:
        raise InputError(
            f"an organisation's name is 1 to {ORGANISATION_NAME_LENGTH_MAX} characters",
            code="organisation_name_invalid",
            field="name",
            params={"length_max": str(ORGANISATION_NAME_LENGTH_MAX)},
        )
    return cleaned


# --- bulk renewal lines -------------------------------------------------------------------------


class BulkLineStatus(StrEnum):
    PENDING = "pending"  # not yet tried
    LEASED = "leased"  # a worker is renewing it (until its lease ends)
    WAITING = "waiting"  # the payment's outcome is not known yet, or the renewal not yet applied
    SUCCEEDED = "succeeded"  # renewed: its renewal is paid and applied to the card
    FAILED = "failed"  # the renewal was refused or declined: "retry the failed lines"
    REJECTED = "rejected"  # the dry run refused it (bad number, unknown plan): never tried

    @property
    def is_open(self) -> bool:
        return self in (BulkLineStatus.PENDING, BulkLineStatus.LEASED, BulkLineStatus.WAITING)


class BulkRunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One line of an upload: where it was (1-based, as an editor counts), what it says, and
    the problem found by reading it alone (None: read well)."""

    line_no: int
    number: str
    plan_code: str
    problem: str | None = None  # an error code


def parse_bulk_text(text: str, *, lines_max: int) -> list[ParsedLine]:
    """The lines of a CSV upload or pasted text: ``number,plan`` (comma, semicolon or tab; an
    optional header line; blank lines skipped). More than ``lines_max`` lines: InputError."""
    rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    parsed: list[ParsedLine] = []
    for index, raw in enumerate(rows, start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        if len(parsed) >= lines_max:
            raise InputError(
                f"a bulk renewal has at most {lines_max} lines",
                code="bulk_too_many_lines",
                field="lines",
                params={"lines_max": str(lines_max)},
            )
        if len(line) > BULK_LINE_LENGTH_MAX:
            parsed.append(
                ParsedLine(index, line[:BULK_NUMBER_LENGTH_MAX], "", "bulk_line_malformed")
            )
            continue
        delimiter = "\t" if "\t" in line else ";" if ";" in line and "," not in line else ","
        cells = [cell.strip() for cell in next(csv.reader(io.StringIO(line), delimiter=delimiter))]
        cells = [cell for cell in cells if cell] if len(cells) > 2 else cells
        if not parsed and cells and cells[0].lower().replace(" ", "_") in _HEADER_WORDS:
            continue  # the header
        if len(cells) != 2 or not cells[0] or not cells[1]:
            number = cells[0] if cells else ""
            parsed.append(
                ParsedLine(index, number[:BULK_NUMBER_LENGTH_MAX], "", "bulk_line_malformed")
            )
            continue
        number, plan = cells[0][:BULK_NUMBER_LENGTH_MAX], cells[1][:BULK_PLAN_LENGTH_MAX]
        parsed.append(ParsedLine(index, number, plan))
    if not parsed:
        raise InputError(
            "no lines to renew: give one card number and plan per line",
            code="bulk_no_lines",
            field="lines",
        )
    return parsed


def bulk_line_key(
    *, organisation_id: str, card_id: str, plan_code: str, period: str, generation: int = 0
) -> str:
    """A line's idempotency key: the same organisation, card, plan and validity period make the
    same key, so the same file uploaded twice (or a worker's second try) renews nothing twice.
    A retry of failed lines is a new generation (its declined renewals took no money)."""
    material = f"{organisation_id}\x1f{card_id}\x1f{plan_code}\x1f{period}\x1f{generation}"
    return "bulk-" + hashlib.sha256(material.encode()).hexdigest()[:48]


ERROR_PARAMS_MAX = 8  # params kept with a line's error
ERROR_PARAM_LENGTH_MAX = 100  # characters of each


def error_params_kept(params: Mapping[str, object]) -> dict[str, str]:
    """An error's params as a line keeps them: a few, each short, as text."""
    kept = sorted(params.items())[:ERROR_PARAMS_MAX]
    return {str(key)[:40]: str(value)[:ERROR_PARAM_LENGTH_MAX] for key, value in kept}


@dataclass(frozen=True, slots=True)
class BulkRun:
    id: str
    organisation_id: str
    created_by: str  # an account id, or "operator" (the command line)
    status: BulkRunStatus
    lines_total: int
    total: Money  # the price of its lines that the dry run accepted
    generation: int  # 0, then +1 for each "retry the failed lines"
    retry_of: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BulkLine:
    run_id: str
    line_no: int
    number: str  # as the card's MSISDN (E.164), or as typed if it named no card
    card_id: str | None
    plan_code: str
    amount: Money
    idempotency_key: str
    status: BulkLineStatus
    renewal_id: str | None = None
    receipt_number: str | None = None
    error_code: str | None = None
    attempts: int = 0
    id: int = 0  # the row's own id (0 until stored)
    # What fills the error's message ({plan}, {expiry}, {maximum} ...), as the error gave it.
    error_params: Mapping[str, str] = field(default_factory=dict)


MONTH_TEXT_LENGTH_MAX = 16  # what of a month's text is read (and told back)
INVOICE_FIRST_MONTH = (2000, 1)  # no invoice is for a month before this one


def month_bounds(month: str) -> tuple[int, int]:
    """``YYYY-MM`` as (year, month); InputError if it is not one."""
    found = _MONTH.fullmatch(month.strip()[:MONTH_TEXT_LENGTH_MAX])
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise InputError(
            f"a month is written YYYY-MM, not {month[:MONTH_TEXT_LENGTH_MAX]!r}",
            code="month_invalid",
            field="month",
            params={"month": month[:MONTH_TEXT_LENGTH_MAX]},
        )
    return int(found.group(1)), int(found.group(2))


def invoice_month(month: str, *, latest: tuple[int, int]) -> tuple[int, int]:
    """An invoice's month, ``YYYY-MM``, from ``INVOICE_FIRST_MONTH`` to ``latest`` (the current
    month: one not begun has no renewals) as (year, month). Not a month: InputError; a month
    out of that range: NotFoundError (there is no such invoice)."""
    year, number = month_bounds(month)
    if not INVOICE_FIRST_MONTH <= (year, number) <= latest:
        first = f"{INVOICE_FIRST_MONTH[0]:04d}-{INVOICE_FIRST_MONTH[1]:02d}"
        last = f"{latest[0]:04d}-{latest[1]:02d}"
        raise NotFoundError(
            f"an invoice is for a month from {first} to {last}, not {year:04d}-{number:02d}",
            code="invoice_month_out_of_range",
            field="month",
            params={"month": f"{year:04d}-{number:02d}", "first": first, "last": last},
        )
    return year, number


def invoice_number(organisation_id: str, year: int, month: int, sequence: int) -> str:
    """``INV-<6 of the organisation's id>-YYYYMM-<sequence>``: sequential per organisation and
    month; the database keeps it unique."""
    short = "".join(character for character in organisation_id if character.isalnum())[:6]
    return f"INV-{short.upper()}-{year:04d}{month:02d}-{sequence:04d}"


@dataclass(frozen=True, slots=True)
class BulkLineOutcome:
    """What a worker learnt of a line: its new status and, once known, its renewal."""

    line_id: int
    status: BulkLineStatus
    renewal_id: str | None
    receipt_number: str | None
    error_code: str | None
    lease_until: dt.datetime | None  # a waiting line: when to look at it again
    error_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """Which of an organisation's cards a fleet page lists."""

    statuses: tuple[str, ...] = ()  # card statuses; empty: all
    validity_before: dt.datetime | None = None  # near expiry: validity ends before this
    number_contains: str = ""  # digits of the MSISDN or ICCID


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    organisation_id: str
    month: str  # YYYY-MM
    sequence: int
    number: str
    renewals_count: int
    gross: Money
    net: Money
    tax: Money
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class InvoicedRenewal:
    """A renewal an organisation paid for, as its invoice lists it."""

    renewal_id: str
    msisdn: str
    plan_code: str
    amount: Money
    paid_at: dt.datetime
    receipt_number: str | None


# --- the fleet-wide auto-renewal policy, applied in the background -----------------------------


class PolicyRequestStatus(StrEnum):
    RUNNING = "running"  # the worker applies it a batch of cards at a time
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class PolicyRefusal:
    """A card the policy could not be applied to, and why (an error code and its params)."""

    msisdn: str
    code: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """An owner's or admin's "apply the policy to the fleet": durable, so the worker applies it
    ``fleet_policy_batch_size`` cards at a time (a worker killed mid-batch leaves it leased; once
    the lease ends another takes it from ``reached``, and the cards set already count as
    ``already``). At most one runs per organisation."""

    id: str
    organisation_id: str
    requested_by: str  # an account id
    plans: Mapping[str, str]  # card kind (value) -> plan code; a kind left out is left alone
    status: PolicyRequestStatus
    cards_total: int  # the cards it is to reach (at most fleet_policy_cards_max)
    created_at: dt.datetime
    reached: int = 0  # cards looked at so far, by card id
    # The last card looked at (the walk goes on after it, by card id: cards renewed, added or
    # taken out meanwhile move no other card's place, so none is skipped or looked at twice).
    reached_card_id: str | None = None
    applied: int = 0  # cards whose auto-renewal it set
    already: int = 0  # cards that had this policy already
    left_alone: int = 0  # cards of a kind it names no plan for
    refused: int = 0
    refusals: tuple[PolicyRefusal, ...] = ()  # the first ones, by card
    error_code: str | None = None  # why it stopped before reaching every card (None: it did not)
    finished_at: dt.datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status is PolicyRequestStatus.FINISHED

    @property
    def not_reached(self) -> int:
        return max(0, self.cards_total - self.reached)

    @property
    def percent(self) -> int:
        if self.cards_total <= 0:
            return 100
        return min(100, self.reached * 100 // self.cards_total)

    def version(self) -> str:
        """What a progress page compares to see whether anything moved."""
        return f"{self.status.value},{self.reached},{self.refused},{self.error_code or ''}"
