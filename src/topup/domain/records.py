"""What the services read and write about renewals, payments and jobs: the records the
repositories of ``topup.ports`` take and return."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TypedDict

from topup.domain.cards import CardKind
from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.renewal import RenewalStatus


class PaymentStatus(StrEnum):
    """Where a payment stands with its gateway (the values are those stored)."""

    NOT_SENT = "not_sent"  # not yet sent, or provably never reached the gateway
    PENDING = "pending"  # accepted; outcome later
    UNKNOWN = "unknown"  # the outcome could not be learnt; asked again, never charged again
    REQUIRES_ACTION = "requires_action"  # waiting on the payer (payment password, wallet app)
    SUCCEEDED = "succeeded"  # money taken
    DECLINED = "declined"  # refused; nothing taken
    CANCELLED = "cancelled"  # the payer never acted in time; nothing taken
    LATE_SUCCESS = "late_success"  # taken after the renewal was closed: staff refund it
    REFUNDED = "refunded"  # taken, then returned in full


@dataclass(frozen=True, slots=True)
class RenewalRecord:
    id: str
    card_id: str
    plan_code: str
    kind: PlanKind
    channel: str
    amount: Money
    data_quota_mb: int
    validity_days: int
    status: RenewalStatus
    idempotency_key: str
    request_fingerprint: str
    decline_code: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    paid_at: dt.datetime | None
    completed_at: dt.datetime | None
    expected_by: dt.datetime | None
    contact_after: dt.datetime | None
    receipt_number: str | None = None  # chosen when made; shown once paid
    receipt_email: str | None = None  # where to e-mail the receipt once paid
    receipt_language: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    id: str
    renewal_id: str
    gateway: str
    method: str
    status: PaymentStatus
    amount: Money
    token_encrypted: str
    brand: str
    funding: str
    last4: str
    expiry_month: int
    expiry_year: int
    issuer_country: str
    gateway_reference: str | None
    decline_code: str | None
    requested_at: dt.datetime
    check_attempts: int
    next_check_at: dt.datetime | None
    flagged_for_staff: bool
    refund_reference: str | None
    instrument_fingerprint: str | None = None  # keyed hash of the token (older payments: None)
    wallet_account_fingerprint: str | None = None  # e-wallets: keyed hash of the payer's account
    action_url: str | None = None  # where the payer approves (e-wallets), while it waits
    merchant_initiated: bool = False  # charged with nobody present (auto-renewal): no CVC, no 3DS


class JobKind(StrEnum):
    """What a job does."""

    ACTIVATE = "activate"  # apply a paid renewal to the network
    REFUND = "refund"  # return a paid renewal's payment in full
    RECEIPT = "receipt"  # e-mail a paid renewal's receipt


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt, or claimed by a worker (``claims`` > 0)
    DONE = "done"
    FAILED = "failed"


class SubjectKind(StrEnum):
    """What a job is about: a renewal today; a card (reminders, auto-renewals) or a batch (bulk
    renewals) next."""

    RENEWAL = "renewal"
    CARD = "card"
    BATCH = "batch"


JOB_SUBJECT_ID_LENGTH_MAX = 64


@dataclass(frozen=True, slots=True)
class JobSubject:
    kind: SubjectKind
    id: str

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > JOB_SUBJECT_ID_LENGTH_MAX:
            raise InvariantError(
                f"a job subject id must have 1 to {JOB_SUBJECT_ID_LENGTH_MAX} characters"
            )

    @classmethod
    def renewal(cls, renewal_id: str) -> JobSubject:
        return cls(SubjectKind.RENEWAL, renewal_id)


class JobOutcome(StrEnum):
    """What the outside world answered a job, kept after the job ends when it matters later."""

    APPLIED = "applied"  # the network applied the renewal (the audit checks none was refunded)
    # The network applied it but the card could no longer take it (e.g. its bill was paid
    # another way), so it was refunded knowingly.
    CARD_REFUSED = "card_refused"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job of the worker's: at most one of each kind per subject."""

    id: int
    kind: JobKind
    subject: JobSubject
    status: JobStatus
    attempts: int  # failed attempts, towards the kind's limit
    claims: int  # how often a worker took it; > 0: its work may have reached the outside world
    next_attempt_at: dt.datetime
    first_requested_at: dt.datetime
    last_error: str | None
    reason: str | None = None  # why it was queued (a refund: the reason its timeline gives)
    outcome: JobOutcome | None = None

    @property
    def renewal_id(self) -> str:
        """The renewal this job is about; an invariant error for a job about something else."""
        if self.subject.kind is not SubjectKind.RENEWAL:
            raise InvariantError(
                f"job {self.id} is about a {self.subject.kind.value}, not a renewal"
            )
        return self.subject.id


@dataclass(frozen=True, slots=True)
class RenewalMove:
    """A renewal to move to ``to_status`` (the state machine decides whether it may), with the
    reason kept in its timeline and any other columns that change with it."""

    renewal: RenewalRecord
    to_status: RenewalStatus
    reason: str
    values: RenewalChanges = field(default_factory=lambda: RenewalChanges())


class RenewalChanges(TypedDict, total=False):
    """What may change on a renewal besides its status (the record's field names)."""

    decline_code: str | None
    paid_at: dt.datetime | None
    completed_at: dt.datetime | None
    expected_by: dt.datetime | None
    contact_after: dt.datetime | None


class PaymentChanges(TypedDict, total=False):
    """What may change on a payment (the record's field names), and when it changed."""

    status: PaymentStatus
    gateway_reference: str | None
    decline_code: str | None
    next_check_at: dt.datetime | None
    check_attempts: int
    flagged_for_staff: bool
    refund_reference: str | None
    action_url: str | None
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CardEvent:
    """Something that happened to a card (a status change, a renewal applied...)."""

    kind: str
    at: dt.datetime
    detail: dict[str, str | int]


@dataclass(frozen=True, slots=True)
class JobRetry:
    """A job to try again at ``next_attempt_at``; ``failed`` counts the attempt towards the
    limit (a network still busy applying the renewal is not a failure)."""

    job_id: int
    next_attempt_at: dt.datetime
    failed: bool
    error: str | None


def payment_changed(payment: PaymentRecord, changes: PaymentChanges) -> PaymentRecord:
    """The payment as it is once ``changes`` are written."""
    return replace(
        payment,
        status=changes.get("status", payment.status),
        gateway_reference=changes.get("gateway_reference", payment.gateway_reference),
        decline_code=changes.get("decline_code", payment.decline_code),
        next_check_at=changes.get("next_check_at", payment.next_check_at),
        check_attempts=changes.get("check_attempts", payment.check_attempts),
        flagged_for_staff=changes.get("flagged_for_staff", payment.flagged_for_staff),
        refund_reference=changes.get("refund_reference", payment.refund_reference),
        action_url=changes.get("action_url", payment.action_url),
    )


def renewal_moved(
    renewal: RenewalRecord, to_status: RenewalStatus, changes: RenewalChanges, *, at: dt.datetime
) -> RenewalRecord:
    """The renewal as it is once moved to ``to_status`` with ``changes`` at ``at``."""
    return replace(
        renewal,
        status=to_status,
        updated_at=at,
        decline_code=changes.get("decline_code", renewal.decline_code),
        paid_at=changes.get("paid_at", renewal.paid_at),
        completed_at=changes.get("completed_at", renewal.completed_at),
        expected_by=changes.get("expected_by", renewal.expected_by),
        contact_after=changes.get("contact_after", renewal.contact_after),
    )


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    """What the receipt of a paid renewal shows, read at once: the renewal, its card, its plan's
    names (the plan may have been withdrawn since: empty then), its payment and its refund."""

    renewal_id: str
    receipt_number: str | None
    card_id: str
    plan_code: str
    plan_kind: PlanKind
    status: RenewalStatus
    amount: Money
    paid_at: dt.datetime
    channel: str
    msisdn: str
    card_kind: CardKind
    plan_names: dict[str, str]
    method: str | None
    brand: str | None
    last4: str | None
    refunded_at: dt.datetime | None


# --- HTTP idempotency records ------------------------------------------------------------------


class IdempotencyState(StrEnum):
    RUNNING = "running"  # a server runs the request now (or died running it: see its lease)
    OPEN = "open"  # ended in a failure worth retrying: may run again under the same id
    DONE = "done"  # its response is stored, to be replayed


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One (caller, key) of an idempotent HTTP request, holding its first response once done.
    ``body`` is sealed (it carries the renewal's client secret)."""

    id: str  # the key the service itself is given
    scope: str  # the caller the key belongs to
    key: str
    fingerprint: str  # of the request's method, path and body
    state: IdempotencyState
    created_at: dt.datetime
    started_at: dt.datetime
    status_code: int | None = None
    content_type: str | None = None
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyFinish:
    """How a request under record ``request_id`` ended: ``DONE`` with its response, or
    ``OPEN`` with none (the request may run again)."""

    request_id: str
    state: IdempotencyState
    status_code: int | None = None
    content_type: str | None = None
    body: bytes | None = None


# --- what `topup audit` recomputes -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnbalancedEntry:
    entry_id: int
    currency: str
    total_minor: int  # what its postings sum to in ``currency`` (not zero)


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    account: str
    currency: str
    stored_minor: int  # the stored balance (0 when none is stored)
    recomputed_minor: int  # what the account's postings sum to


@dataclass(frozen=True, slots=True)
class RenewalEntryCounts:
    """How many capture, activation and refund entries a renewal has."""

    renewal_id: str
    status: str  # as stored: the audit reports one it does not know
    captures: int
    activations: int
    refunds: int


@dataclass(frozen=True, slots=True)
class CardLedgerBalances:
    """A card's credit and bill as the card shows them, beside its ledger accounts' balances."""

    card_id: str
    kind: str
    currency: str
    credit_minor: int
    bill_due_minor: int
    credit_account_minor: int  # card_credit:<id> (negative when the card has credit)
    receivable_account_minor: int  # card_receivable:<id>


@dataclass(frozen=True, slots=True)
class StalledRenewal:
    """A renewal not yet final with no queued job and no scheduled payment check."""

    renewal_id: str
    status: str
    payment_status: str | None  # None: it has no payment


@dataclass(frozen=True, slots=True)
class RefundedButApplied:
    """A refunded renewal the network answered ``applied`` to (its activation job)."""

    renewal_id: str
    job_id: int


@dataclass(frozen=True, slots=True)
class JobWithoutRenewal:
    """A job about a renewal that does not exist."""

    job_id: int
    renewal_id: str


@dataclass(frozen=True, slots=True)
class SettlementPayment:
    """A payment of ours as a settlement sees it: what was asked, and when the ledger recorded
    its capture, activation and refund (None when it has none)."""

    id: str
    renewal_id: str
    gateway: str
    status: str
    renewal_status: str
    amount_minor: int
    currency: str
    gateway_reference: str | None
    refund_reference: str | None
    captured_at: dt.datetime | None
    activated_at: dt.datetime | None
    refunded_at: dt.datetime | None

    @property
    def activated(self) -> bool:
        return self.renewal_status == "completed" and self.activated_at is not None

    @property
    def refunded(self) -> bool:
        return self.renewal_status == "refunded" and self.refunded_at is not None
