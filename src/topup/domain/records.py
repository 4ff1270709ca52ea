"""What the services read and write about renewals, payments and jobs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from topup.domain.errors import InvariantError
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.domain.renewal import RenewalStatus


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
    status: str
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
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobRetry:
    """A job to try again at ``next_attempt_at``; ``failed`` counts the attempt towards the
    limit (a network still busy applying the renewal is not a failure)."""

    job_id: int
    next_attempt_at: dt.datetime
    failed: bool
    error: str | None
