"""What the services read and write about renewals, payments and jobs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    kind: str
    renewal_id: str
    status: str
    attempts: int
    claims: int
    next_attempt_at: dt.datetime
    first_requested_at: dt.datetime
    last_error: str | None


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
