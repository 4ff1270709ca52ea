"""The ports: what the services need from the outside world, as Protocols.

Each port has a fake or sandbox adapter usable in tests and demos:
PaymentGateway -> adapters.gateways.sandbox.SandboxGateway,
NetworkProvisioner -> adapters.network.sandbox.SandboxNetwork,
Clock -> adapters.clock.FixedClock / SystemClock, UnitOfWork -> adapters.db.unit_of_work
(a database) and adapters.memory.unit_of_work.FakeUnitOfWork (in memory, for unit tests).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Unpack, runtime_checkable

from topup.domain.accounts import (
    Account,
    EmailToken,
    EmailTokenPurpose,
    LinkCode,
    LoginAttempts,
    SessionState,
)
from topup.domain.api_keys import ApiKey
from topup.domain.auto_renewal import AutoRenewal, AutoRenewalAttempt, AutoTopUp, TopUpStatus
from topup.domain.cards import Card
from topup.domain.fleets import (
    BulkLine,
    BulkLineOutcome,
    BulkLineStatus,
    BulkRun,
    FleetFilter,
    Invoice,
    InvoicedRenewal,
    Member,
    Organisation,
    PolicyRequest,
)
from topup.domain.ledger import Entry
from topup.domain.money import Money
from topup.domain.plans import Plan
from topup.domain.records import (
    BalanceMismatch,
    CardEvent,
    CardLedgerBalances,
    IdempotencyFinish,
    IdempotencyRecord,
    JobKind,
    JobOutcome,
    JobRecord,
    JobRetry,
    JobStatus,
    JobSubject,
    JobWithoutRenewal,
    PaymentChanges,
    PaymentRecord,
    PaymentStatus,
    ReceiptFacts,
    RefundedButApplied,
    RenewalChanges,
    RenewalEntryCounts,
    RenewalMove,
    RenewalRecord,
    SettlementPayment,
    StalledRenewal,
    UnbalancedEntry,
)
from topup.domain.reminders import Delivery, DeliveryStatus, Reminder
from topup.domain.renewal import RenewalStatus, Transition
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.domain.usage import InsertedUsage, NetworkChange, UsageRecord, UsageState


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


# --- Payment gateway -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentCardDetails:
    """What a payer typed. Lives only in memory on its way to the gateway's tokeniser."""

    number: str
    expiry_month: int
    expiry_year: int
    cvc: str

    def __repr__(self) -> str:
        # Never let a PAN or CVC reach a log through repr().
        return f"PaymentCardDetails(number='****{self.number[-4:]}', expiry='{self.expiry_month:02d}/{self.expiry_year}', cvc='***')"


@dataclass(frozen=True, slots=True)
class PaymentToken:
    """A tokenised card: what topup may keep. No PAN, no CVC."""

    token: str
    brand: str
    funding: str  # credit, debit, prepaid, unknown
    last4: str
    expiry_month: int
    expiry_year: int
    issuer_country: str  # ISO 3166 alpha-2, or "" when unknown
    # The PSP's fingerprint of the payment card: the same for the same card number whatever its
    # expiry or CVC, and whichever token stands for it (a keyed hash, never the number); "" when
    # the PSP gives none. Locks and attempt counts follow it (services/fingerprints.py).
    fingerprint: str = ""
    # What the PSP says of the issuer's rule on payments from abroad: False when the issuer keeps
    # the card at home (refused before any charge when the operator is abroad), None: unknown.
    international_payments: bool | None = None


class GatewayOutcome(StrEnum):
    """The five answers a gateway gives about a charge (STYLE.md rule 5)."""

    SUCCEEDED = "succeeded"  # money taken
    PENDING = "pending"  # accepted, outcome later (slow settlement, or customer action needed)
    DECLINED = "declined"  # refused; no money taken
    UNKNOWN = "unknown"  # we could not learn the outcome (timeout); ask again, never charge again
    NOT_SENT = "not_sent"  # the request provably never reached the gateway; safe to send again


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """A charge. ``payment_id`` is ours and is the gateway's idempotency key."""

    payment_id: str
    token: str
    amount: Money
    description: str
    requested_at: dt.datetime
    # Started by the merchant with the payer absent (auto-renewal, on a token the payer saved):
    # the gateway asks for no CVC and no 3-D Secure / payment password (issue 11).
    merchant_initiated: bool = False


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: GatewayOutcome
    gateway_reference: str | None = None
    decline_code: str | None = None  # e.g. card_declined, insufficient_funds
    message: str | None = None
    requires_action: str | None = None  # e.g. "authenticate" (3-D Secure / payment password)
    retry_after_s: int | None = None  # for PENDING/UNKNOWN: when asking again makes sense
    action_url: str | None = None  # where the payer completes the action (e.g. a wallet app)


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """A gateway's webhook, checked: which event (to do it once), about which payment, saying
    what."""

    event_id: str
    payment_id: str
    result: ChargeResult | None  # None: an event that says nothing final about the payment


class RefundOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    UNKNOWN = "unknown"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: RefundOutcome
    gateway_reference: str | None = None
    message: str | None = None


class PaymentGateway(Protocol):
    name: str

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        """Turn card details into a token; raises InputError/PaymentError with a code."""
        ...

    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        """Ask what became of a charge sent earlier with this ``payment_id``. Never charges."""
        ...

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        """Return a captured charge in full; ``refund_id`` is the idempotency key."""
        ...

    async def confirm(self, request: ChargeRequest, answer: str) -> ChargeResult:
        """Pass the payer's payment password / 3-D Secure answer for a charge waiting on it. A
        wrong answer is DECLINED with decline code ``authentication_failed``."""
        ...

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> GatewayEvent:
        """Check a webhook's signature (over the raw body) and age; raise InputError if bad."""
        ...

    def tokenize_account(self, provider: str, account: str) -> PaymentToken:
        """A token for a payer's account with a wallet provider; raises InputError if the
        account cannot be one (card gateways refuse)."""
        ...

    async def payment_token_of(self, token: str) -> PaymentToken:
        """What a token the payer's device got from the gateway's tokenisation endpoint stands
        for (brand, funding, last four digits); InputError ``payment_token_invalid`` if the
        gateway did not issue it."""
        ...


# --- Network provisioning ---------------------------------------------------------------------


class ProvisionStatus(StrEnum):
    APPLIED = "applied"  # the network has applied the renewal
    IN_PROGRESS = "in_progress"  # accepted; ask again at ``ready_at``
    TRANSIENT_FAILURE = "transient_failure"  # try again later
    PERMANENT_FAILURE = "permanent_failure"  # will never apply; refund


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """Apply a paid renewal to the network. ``activation_id`` is the idempotency key."""

    activation_id: str
    msisdn: str
    iccid: str
    plan_code: str
    data_quota_mb: int
    validity_days: int
    first_requested_at: dt.datetime
    attempt: int


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    status: ProvisionStatus
    ready_at: dt.datetime | None = None
    message: str | None = None


class NetworkProvisioner(Protocol):
    async def apply(self, request: ProvisionRequest) -> ProvisionResult: ...


# --- Persistence ------------------------------------------------------------------------------


class CardRepository(Protocol):
    async def add(self, card: Card, *, at: dt.datetime) -> None: ...

    async def get(self, card_id: str, *, for_update: bool = False) -> Card | None: ...

    async def get_many(
        self, card_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, Card]:
        """Cards by id; locked in id order when ``for_update``."""
        ...

    async def by_numbers(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> list[Card]: ...

    async def by_number(
        self, *, msisdn: str | None = None, iccid: str | None = None
    ) -> Card | None: ...

    async def save(self, card: Card, *, expected_version: int, at: dt.datetime) -> None:
        """Write a changed card; InvariantError if its version is no longer ``expected_version``."""
        ...

    async def save_many(self, changes: Sequence[tuple[Card, int]], *, at: dt.datetime) -> None:
        """Write changed cards, each ``(card, version it had when read)``; InvariantError if
        one changed meanwhile."""
        ...

    async def list_page(self, *, limit: int, offset: int = 0) -> list[Card]: ...

    async def due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[str]: ...

    async def add_event(
        self, *, card_id: str, kind: str, at: dt.datetime, detail: dict[str, str | int]
    ) -> None: ...

    async def add_events(
        self, events: Sequence[tuple[str, str, dt.datetime, dict[str, str | int]]]
    ) -> None:
        """Several events at once, each ``(card id, kind, at, detail)``."""
        ...

    async def lock_due_for_lifecycle(
        self, *, now: dt.datetime, limit: int, grace_period_days: int
    ) -> list[Card]:
        """``due_for_lifecycle``'s cards, locked for this transaction; cards another worker
        holds are skipped (PostgreSQL ``FOR UPDATE SKIP LOCKED``)."""
        ...

    async def events(self, card_id: str, *, limit: int) -> list[CardEvent]:
        """A card's events, newest first."""
        ...


class PlanRepository(Protocol):
    async def upsert(self, plan: Plan) -> None: ...

    async def get(self, code: str) -> Plan | None: ...

    async def get_many(self, codes: Sequence[str]) -> dict[str, Plan]: ...

    async def list_all(self, *, limit: int) -> list[Plan]: ...


class RenewalRepository(Protocol):
    async def add_many(self, renewals: Sequence[RenewalRecord]) -> set[str]:
        """Insert renewals; one whose id or idempotency key is taken is left out. Returns the
        ids inserted."""
        ...

    async def get_many(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, RenewalRecord]: ...

    async def with_payments(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, tuple[RenewalRecord, PaymentRecord, str]]:
        """Renewals that have a payment, with it and the card's MSISDN."""
        ...

    async def by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, RenewalRecord]: ...

    async def with_card_numbers(
        self, renewal_ids: Sequence[str]
    ) -> dict[str, tuple[RenewalRecord, str, str]]:
        """Renewals with their card's MSISDN and ICCID."""
        ...

    async def move_many(self, moves: Sequence[RenewalMove], *, at: dt.datetime) -> None:
        """Apply moves (the state machine checks each) and add them to the timelines;
        InvariantError if a renewal is moved twice or left its status meanwhile."""
        ...

    async def get(self, renewal_id: str, *, for_update: bool = False) -> RenewalRecord | None: ...

    async def by_idempotency_key(self, key: str) -> RenewalRecord | None: ...

    async def move(
        self,
        renewal: RenewalRecord,
        to_status: RenewalStatus,
        *,
        at: dt.datetime,
        reason: str,
        **changes: Unpack[RenewalChanges],
    ) -> None:
        """One move; InvariantError if the renewal left its status meanwhile."""
        ...

    async def add_event(self, renewal_id: str, change: Transition) -> None: ...

    async def add_events(self, changes: Sequence[tuple[str, Transition]]) -> None: ...

    async def timelines(self, renewal_ids: Sequence[str]) -> dict[str, list[Transition]]: ...

    async def for_card(
        self, card_id: str, *, limit: int, before: tuple[dt.datetime, str] | None = None
    ) -> list[RenewalRecord]:
        """A card's renewals, newest first (by created_at, then id), after ``before``."""
        ...

    async def has_activating(self, card_id: str) -> bool: ...

    async def open_for_card(self, card_id: str, *, kind: str) -> RenewalRecord | None: ...


class PaymentRepository(Protocol):
    async def add_many(self, payments: Sequence[PaymentRecord], *, at: dt.datetime) -> None:
        """Insert payments (one per renewal; a taken id or renewal is an error)."""
        ...

    async def for_renewals(
        self, renewal_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, PaymentRecord]: ...

    async def by_ids(self, payment_ids: Sequence[str]) -> dict[str, PaymentRecord]: ...

    async def lock_wallet_accounts(self, fingerprints: Sequence[str]) -> None:
        """Hold these wallet accounts until commit (daily limits are checked one at a time)."""
        ...

    async def wallet_totals_since(
        self, fingerprints: Sequence[str], *, since: dt.datetime
    ) -> dict[tuple[str, str], int]:
        """``{(wallet account fingerprint, method): amount_minor}`` paid or waiting since
        ``since`` (declined and cancelled payments excluded)."""
        ...

    async def update_many(self, changes: Sequence[tuple[str, PaymentChanges]]) -> None:
        """Several payments' changes, each ``(payment id, changes)``."""
        ...

    async def for_renewal(
        self, renewal_id: str, *, for_update: bool = False
    ) -> PaymentRecord | None: ...

    async def update(self, payment_id: str, **changes: Unpack[PaymentChanges]) -> None: ...

    async def claim_due_checks(
        self,
        *,
        statuses: Sequence[PaymentStatus],
        now: dt.datetime,
        lease_until: dt.datetime,
        limit: int,
    ) -> list[PaymentRecord]:
        """Lease payments whose check is due (``next_check_at`` moves to ``lease_until`` and
        ``check_attempts`` goes up by one)."""
        ...


class LedgerRepository(Protocol):
    async def record(self, entry: Entry, *, at: dt.datetime) -> int: ...

    async def record_many(self, entries: Sequence[Entry], *, at: dt.datetime) -> list[int]:
        """Append balanced entries (InvariantError otherwise); balances move at commit."""
        ...

    async def balance(self, account: str, currency: str) -> int: ...

    async def entries_for_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[int, Entry, dt.datetime]]:
        """A card's entries, newest first: (id, entry, written at)."""
        ...


class JobRepository(Protocol):
    async def enqueue(
        self, *, kind: JobKind, subject: JobSubject, at: dt.datetime, reason: str | None = None
    ) -> None: ...

    async def enqueue_many(
        self,
        *,
        kind: JobKind,
        subjects: Sequence[JobSubject],
        at: dt.datetime,
        reason: str | None = None,
    ) -> None:
        """One job of ``kind`` per subject, due at once; a second job of a kind for a subject
        breaks a unique key."""
        ...

    async def claim(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[JobRecord]:
        """Lease due queued jobs (hidden until ``lease_until``; claims go up by one), by id."""
        ...

    async def withdraw_unclaimed(self, job_id: int, *, at: dt.datetime, error: str) -> bool:
        """Fail a queued job no worker ever claimed; False if one has or it is not queued."""
        ...

    async def finish(
        self,
        job: JobRecord,
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> bool:
        """Mark a queued job done or failed; False if it was not queued any more."""
        ...

    async def finish_many(
        self,
        job_ids: Sequence[int],
        *,
        status: JobStatus,
        at: dt.datetime,
        error: str | None = None,
        outcome: JobOutcome | None = None,
    ) -> set[int]:
        """Mark queued jobs done or failed; the ids this call finished."""
        ...

    async def record_outcome(
        self, job_ids: Sequence[int], outcome: JobOutcome, *, at: dt.datetime
    ) -> None: ...

    async def mark_failed(
        self,
        failures: Sequence[tuple[int, str]],
        *,
        at: dt.datetime,
        outcome: JobOutcome | None = None,
    ) -> None:
        """Jobs this transaction finished that turned out to fail, each ``(job id, why)``."""
        ...

    async def retry_later(
        self,
        job: JobRecord,
        *,
        at: dt.datetime,
        next_attempt_at: dt.datetime,
        failed: bool,
        error: str | None,
    ) -> None: ...

    async def retry_many(self, retries: Sequence[JobRetry], *, at: dt.datetime) -> None: ...

    async def for_subject(self, subject: JobSubject) -> list[JobRecord]:
        """Every job about ``subject``, oldest first."""
        ...


class PaymentCardLockRepository(Protocol):
    async def locked(
        self, fingerprints: Sequence[str], *, now: dt.datetime
    ) -> dict[str, dt.datetime]:
        """The payment cards among these locked at ``now``, with when each lock ends."""
        ...

    async def count_wrong_answer(
        self, fingerprint: str, *, now: dt.datetime, window_start: dt.datetime
    ) -> int:
        """Add one wrong answer; the wrong answers since ``window_start``, this one included."""
        ...

    async def lock(self, fingerprint: str, *, until: dt.datetime, now: dt.datetime) -> None: ...

    async def forget(self, fingerprint: str) -> None: ...


class WebhookRepository(Protocol):
    async def first_times(
        self, events: Sequence[tuple[str, str, str]], *, at: dt.datetime
    ) -> set[tuple[str, str]]:
        """Remember events ``(gateway, event id, payment id)``; the ``(gateway, event id)``
        pairs seen for the first time."""
        ...


class AccountRepository(Protocol):
    async def add(self, account: Account) -> bool:
        """False if the e-mail is taken."""
        ...

    async def get(self, account_id: str) -> Account | None: ...

    async def by_email(self, email: str) -> Account | None: ...

    async def hold_password(
        self, account_id: str, verified_hash: str, *, new_hash: str | None = None
    ) -> bool:
        """Lock the account's row for a sign-in if its password hash is still ``verified_hash``
        (changing it to ``new_hash`` if given); False if a reset replaced it meanwhile."""
        ...

    async def confirm(
        self, account_id: str, *, password_hash: str, language: str, at: dt.datetime
    ) -> bool:
        """Confirm an unconfirmed account with its sign-up's password and language; False if it
        was confirmed already."""
        ...

    async def reset_password(
        self, account_id: str, password_hash: str, *, at: dt.datetime
    ) -> None: ...

    async def add_email_token(self, token: EmailToken) -> None: ...

    async def email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose
    ) -> EmailToken | None: ...

    async def use_email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose, at: dt.datetime
    ) -> EmailToken | None:
        """Mark the unexpired, unused token used (of concurrent uses one wins); None if none."""
        ...

    async def drop_email_tokens(
        self, account_id: str, *, purpose: EmailTokenPurpose | None = None
    ) -> None: ...

    async def prune_email_tokens(self, *, expired_by: dt.datetime, limit: int) -> int: ...

    async def revoke_tokens_of(self, account_id: str, *, now: dt.datetime) -> int: ...

    async def forget_login_attempts_of(
        self, email_key: str, fingerprints: Sequence[str]
    ) -> None: ...

    async def add_token(
        self,
        *,
        token_id: str,
        account_id: str,
        token_hash: str,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None: ...

    async def account_of_token(self, token_hash: str, *, now: dt.datetime) -> str | None: ...

    async def revoke_token(self, token_hash: str, *, now: dt.datetime) -> bool: ...

    async def session_of_token(self, token_hash: str, *, now: dt.datetime) -> SessionState | None:
        """The token's session if it is neither expired nor revoked."""
        ...

    async def touch_token(
        self, token_hash: str, *, at: dt.datetime, unseen_since: dt.datetime
    ) -> None:
        """Record that the token was used ``at``, unless it was already seen after
        ``unseen_since`` (so that a session is written at most once in a while)."""
        ...

    async def forget_dead_tokens(self, account_id: str, *, now: dt.datetime) -> None: ...

    async def count_login_attempt(
        self,
        fingerprint: str,
        *,
        now: dt.datetime,
        window_start: dt.datetime,
        lock_at_attempt: int | None,
        lock_until: dt.datetime | None,
        email_key: str | None = None,
    ) -> LoginAttempts: ...

    async def forget_login_attempts(self, fingerprints: Sequence[str]) -> None: ...

    async def prune_login_attempts(
        self, *, now: dt.datetime, window_start: dt.datetime, limit: int
    ) -> int: ...

    async def owns_card(self, account_id: str, card_id: str) -> bool: ...

    async def link_card(self, account_id: str, card_id: str, *, at: dt.datetime) -> None: ...

    async def linked_cards(self, account_id: str, *, limit: int) -> list[Card]: ...

    async def replace_link_code(self, code: LinkCode, *, created_at: dt.datetime) -> None: ...

    async def pending_link_code(self, account_id: str, card_id: str) -> LinkCode | None: ...

    async def spend_link_attempt(self, code_id: str, *, attempts_max: int) -> int | None: ...

    async def use_link_code(self, code_id: str, *, at: dt.datetime) -> bool: ...

    async def prune_link_codes(self, *, expired_by: dt.datetime, limit: int) -> int: ...


class SavedPaymentCardRepository(Protocol):
    async def add(self, card: SavedPaymentCard) -> bool:
        """False if the account has saved this payment card (same fingerprint) already."""
        ...

    async def of_account(self, account_id: str, *, limit: int) -> list[SavedPaymentCard]:
        """The account's saved payment cards, oldest first."""
        ...

    async def get(self, account_id: str, saved_id: str) -> SavedPaymentCard | None:
        """The account's saved payment card ``saved_id``; None if not the account's."""
        ...

    async def count(self, account_id: str) -> int: ...

    async def remove(self, account_id: str, saved_id: str) -> bool: ...


class AccountHistoryQueries(Protocol):
    async def renewals_of_account(
        self,
        account_id: str,
        *,
        card_id: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        statuses: Sequence[RenewalStatus],
        paid_only: bool,
        limit: int,
        offset: int,
    ) -> list[RenewalRecord]:
        """Renewals of the cards linked to the account (of ``card_id`` only if given), newest
        first, made in [since, until), in one of ``statuses`` (all if empty), paid ones only
        if ``paid_only``."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> bool: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def by_prefix(self, prefix: str) -> ApiKey | None: ...

    async def list_page(self, *, limit: int, offset: int = 0) -> list[ApiKey]: ...

    async def revoke(self, key_id: str, *, now: dt.datetime) -> bool: ...


class ReceiptQueries(Protocol):
    async def by_number(self, receipt_number: str) -> ReceiptFacts | None:
        """The paid renewal with this receipt number, with what its receipt shows."""
        ...

    async def by_renewal(self, renewal_id: str) -> ReceiptFacts | None:
        """The receipt of this renewal if it is paid."""
        ...

    async def card_numbers_by_email(self, email: str, *, limit: int) -> list[tuple[str, str]]:
        """(MSISDN, e-mail as registered) of the cards registered with ``email`` (any case)."""
        ...


# A payment as settlement matches it, a row of ``adapters.db.audit._settlement_payment_query``:
# id, renewal_id, gateway, status, amount_minor, currency, gateway_reference, refund_reference,
# renewal_status, captured_at, activated_at, refunded_at. Still a row (``services.settlement``
# turns it into its ``OurPayment``); it becomes a record when settlement is converted.


class AuditQueries(Protocol):
    """Read-only: what ``topup audit`` recomputes, and the payments settlement matches."""

    async def unbalanced_entries(self) -> list[UnbalancedEntry]: ...

    async def entries_with_too_few_postings(self) -> list[int]:
        """Ids of ledger entries with fewer than two postings."""
        ...

    async def balance_mismatches(self) -> list[BalanceMismatch]:
        """Wherever a stored balance and its postings' sum differ, in either direction (a
        balance not stored counts as 0)."""
        ...

    async def renewal_entry_counts(self) -> list[RenewalEntryCounts]:
        """Every renewal, with how many entries of each kind it has."""
        ...

    async def card_balances(self) -> list[CardLedgerBalances]:
        """Every card, beside its ledger accounts."""
        ...

    async def stalled_renewals(self) -> list[StalledRenewal]: ...

    async def refunded_although_applied(self) -> list[RefundedButApplied]:
        """By renewal id."""
        ...

    async def jobs_about_missing_renewals(self) -> list[JobWithoutRenewal]:
        """By job id."""
        ...

    async def settlement_payments(
        self,
        *,
        payment_ids: Sequence[str] = (),
        charge_references: Sequence[str] = (),
        refund_references: Sequence[str] = (),
    ) -> list[SettlementPayment]:
        """Payments with any of these ids, gateway references or refund references."""
        ...

    async def payments_captured_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        """Payments through ``gateway`` whose capture entry was written in [start, end)."""
        ...

    async def payments_refunded_between(
        self, start: dt.datetime, end: dt.datetime, *, gateway: str
    ) -> list[SettlementPayment]:
        """Payments through ``gateway`` whose refund entry was written in [start, end)."""
        ...


class IdempotencyRepository(Protocol):
    async def add_many(self, records: Sequence[IdempotencyRecord]) -> set[str]:
        """Insert records; one whose id or (scope, key) is taken is left out. Returns the ids
        inserted."""
        ...

    async def by_keys(
        self, keys: Sequence[tuple[str, str]], *, for_update: bool = False
    ) -> dict[tuple[str, str], IdempotencyRecord]:
        """Records by (scope, key); locked in that order when ``for_update``."""
        ...

    async def restart(self, old_id: str, record: IdempotencyRecord) -> None:
        """Take over record ``old_id`` (expired, abandoned or left open) for a new run: its id,
        fingerprint, state and times become those of ``record`` (its response is kept)."""
        ...

    async def finish_many(self, finishes: Sequence[IdempotencyFinish]) -> None: ...

    async def prune(self, *, created_before: dt.datetime, limit: int) -> int:
        """Forget records created before ``created_before`` (at most ``limit`` at once)."""
        ...


# --- fleets (issue 11) ---------------------------------------------------------------------------


class OrganisationRepository(Protocol):
    """Organisations, their members and cards, what the fleet page lists, their invoices."""

    async def add(self, organisation: Organisation) -> None: ...

    async def get(self, organisation_id: str) -> Organisation | None: ...

    async def set_payment_card(
        self, organisation_id: str, *, saved_id: str | None, account_id: str | None
    ) -> None: ...

    async def put_member(self, member: Member) -> None:
        """Add the member, or change the role of one already there."""
        ...

    async def member(self, organisation_id: str, account_id: str) -> Member | None: ...

    async def members(self, organisation_id: str, *, limit: int) -> list[Member]: ...

    async def memberships(
        self, account_id: str, *, limit: int
    ) -> list[tuple[Organisation, Member]]:
        """The organisations the account is a member of, oldest first."""
        ...

    async def owners_of_cards(self, card_ids: Sequence[str]) -> dict[str, str]:
        """``{card id: organisation id}`` for those of these cards that belong to one."""
        ...

    async def add_cards(
        self, organisation_id: str, card_ids: Sequence[str], *, at: dt.datetime
    ) -> int:
        """Add cards that belong to no organisation yet; returns how many were added."""
        ...

    async def remove_card(self, organisation_id: str, card_id: str) -> bool:
        """Take the card out of the organisation's fleet; False if it was not in it."""
        ...

    async def fleet_cards(
        self, organisation_id: str, fleet_filter: FleetFilter, *, limit: int, offset: int
    ) -> list[Card]:
        """The organisation's cards that pass the filter, by validity end (soonest first, none
        last) then MSISDN."""
        ...

    async def fleet_cards_after(
        self, organisation_id: str, *, after_card_id: str | None, limit: int
    ) -> list[Card]:
        """The organisation's cards by card id, the first ``limit`` after ``after_card_id``
        (None: from the first): a walk over the fleet that cards changing meanwhile do not move."""
        ...

    async def count_cards(self, organisation_id: str, fleet_filter: FleetFilter) -> int: ...

    async def card_counts_by_status(self, organisation_id: str) -> dict[str, int]: ...

    async def paid_renewals(
        self, organisation_id: str, *, since: dt.datetime, until: dt.datetime, limit: int
    ) -> list[InvoicedRenewal]:
        """Renewals the organisation's bulk renewals paid for in [since, until) and not refunded,
        by time paid."""
        ...

    async def spend(self, organisation_id: str, *, since: dt.datetime, until: dt.datetime) -> int:
        """What ``paid_renewals`` adds up to, in minor units."""
        ...

    async def latest_invoice(self, organisation_id: str, month: str) -> Invoice | None: ...

    async def add_invoice(self, invoice: Invoice) -> bool:
        """False if its number or (organisation, month, sequence) is taken (another issued it)."""
        ...

    async def invoices(self, organisation_id: str, *, limit: int) -> list[Invoice]:
        """Newest first."""
        ...


class BulkRenewalRepository(Protocol):
    """Bulk renewal runs and their lines: a durable queue the worker leases lines from."""

    async def add_run(self, run: BulkRun, lines: Sequence[BulkLine]) -> bool:
        """Write the run and its lines; False (nothing written) if a run of this id exists."""
        ...

    async def get_run(self, run_id: str) -> BulkRun | None: ...

    async def runs_of(self, organisation_id: str, *, limit: int) -> list[BulkRun]:
        """Newest first."""
        ...

    async def lines(
        self,
        run_id: str,
        *,
        limit: int,
        after_line_no: int = 0,
        statuses: Sequence[BulkLineStatus] = (),
    ) -> list[BulkLine]:
        """The run's lines after ``after_line_no``, by line number."""
        ...

    async def counts(self, run_id: str) -> dict[BulkLineStatus, int]: ...

    async def lease_lines(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[BulkLine]:
        """Lease open lines that are due (pending, or leased or waiting whose lease is over) to
        this worker until ``lease_until``, counting an attempt each; other workers skip them."""
        ...

    async def record_outcomes(
        self, outcomes: Sequence[BulkLineOutcome], *, at: dt.datetime
    ) -> None: ...

    async def finish_runs(self, run_ids: Sequence[str], *, at: dt.datetime) -> list[str]:
        """Mark finished those of these runs that have no open line left; returns them."""
        ...

    async def renewed_recently(
        self, organisation_id: str, card_ids: Sequence[str], *, since: dt.datetime
    ) -> dict[str, dt.datetime]:
        """Of these cards, those on a line of one of the organisation's runs started at or after
        ``since`` that is not failed or rejected (pending, leased, waiting or succeeded), each
        with the latest such run's start (by the index on the lines' card)."""
        ...


# --- reminders (issue 11) ---


@dataclass(frozen=True, slots=True)
class NumberedCardEvent:
    """A card event with its position in the table (what the reminder cursor counts)."""

    id: int
    card_id: str
    kind: str
    at: dt.datetime
    detail: dict[str, str | int]


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's Web Push subscription (RFC 8030): where to post, and the keys (RFC 8291) the
    message is encrypted to. Not a secret to the push service, but personal: kept per account."""

    endpoint: str
    p256dh: str  # the browser's P-256 public key, base64url
    auth: str  # the browser's 16-byte authentication secret, base64url


@dataclass(frozen=True, slots=True)
class ReminderRecipient:
    """Where a card's reminders go and in which language: the account that linked the card
    first (its e-mail, language and push subscription), else the card's own e-mail and the
    profile's default language."""

    card: Card
    email: str
    language: str
    push: PushSubscription | None
    account_id: str | None


class ReminderRepository(Protocol):
    async def due_by_date(
        self,
        *,
        kind: str,
        status: str,
        ends_after: dt.datetime,
        ends_by: dt.datetime,
        end_offset_days: int,
        limit: int,
        after: tuple[dt.datetime, str] | None = None,
    ) -> tuple[list[Card], tuple[dt.datetime, str] | None]:
        """Prepaid cards in ``status`` whose validity end plus ``end_offset_days`` (grace) is in
        (ends_after, ends_by] and that have no reminder of ``kind`` for that validity end, among
        the next ``limit`` cards of that window by index in (validity end, id) order after
        ``after``; and where the next batch starts (the last card read), None if the window
        has no more (a pass reads each card once)."""
        ...

    async def add_reminders(
        self, reminders: Sequence[Reminder], deliveries: Sequence[Delivery]
    ) -> set[str]:
        """Insert reminders (one whose (card, kind, period) is taken is left out) and the
        deliveries of those inserted. Returns the ids inserted."""
        ...

    async def cursor(self, name: str, *, at: dt.datetime) -> int:
        """The cursor's position, its row locked until commit (made at 0 if missing)."""
        ...

    async def move_cursor(self, name: str, position: int, *, at: dt.datetime) -> None: ...

    async def card_events_after(self, position: int, *, limit: int) -> list[NumberedCardEvent]:
        """Card events with an id above ``position``, by id."""
        ...

    async def claim_deliveries(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[Delivery]:
        """Lease queued deliveries due at ``now`` (next_attempt_at moves to ``lease_until``,
        claims goes up by one); another claim skips them until the lease ends."""
        ...

    async def reminders_by_id(self, reminder_ids: Sequence[str]) -> dict[str, Reminder]: ...

    async def recipients(self, card_ids: Sequence[str]) -> dict[str, ReminderRecipient]: ...

    async def finish_delivery(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        *,
        at: dt.datetime,
        error: str | None = None,
    ) -> bool:
        """Mark a claimed delivery finished if this claim still holds it (False otherwise)."""
        ...

    async def defer_delivery(
        self,
        delivery: Delivery,
        *,
        until: dt.datetime,
        at: dt.datetime,
        failed_attempt: bool,
        error: str | None = None,
    ) -> bool:
        """Give a claimed delivery back, due at ``until`` (an attempt counted if it failed)."""
        ...

    async def settle_reminders(self, reminder_ids: Sequence[str], *, at: dt.datetime) -> None:
        """Reminders whose every delivery is finished become done (cancelled if all were)."""
        ...

    async def preferences(self, card_ids: Sequence[str]) -> dict[tuple[str, str], bool]:
        """``{(card id, channel): enabled}`` for the rows there are (none: on)."""
        ...

    async def set_preference(
        self, card_id: str, channel: str, *, enabled: bool, at: dt.datetime
    ) -> None: ...

    async def save_push_subscription(
        self, account_id: str, subscription: PushSubscription, *, at: dt.datetime
    ) -> None: ...

    async def push_subscription(self, account_id: str) -> PushSubscription | None: ...

    async def forget_push_subscription(self, account_id: str, *, endpoint: str | None) -> bool:
        """Drop the account's subscription (only if it is ``endpoint``, when given)."""
        ...

    async def deliveries_of_card(
        self, card_id: str, *, limit: int
    ) -> list[tuple[Reminder, Delivery]]:
        """A card's reminders and their deliveries, newest first."""
        ...


class PushOutcome(StrEnum):
    SENT = "sent"  # the push service took it (201)
    GONE = "gone"  # the subscription is no more (404, 410): forget it


class PushSender(Protocol):
    """Web Push (RFC 8030, 8291, 8292). Raises TopupError (retryable) when the push service is
    down, slow or throttling."""

    @property
    def public_key(self) -> str:
        """The VAPID public key, base64url (the page's applicationServerKey)."""
        ...

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, idempotency_key: str, ttl_s: int
    ) -> PushOutcome: ...


class PolicyRequestRepository(Protocol):
    """Requests to apply a fleet-wide auto-renewal policy: a durable queue the worker leases
    from, applying each a batch of cards at a time."""

    async def add(self, request: PolicyRequest) -> bool:
        """Write it; False (nothing written) if one of its organisation's is running."""
        ...

    async def get(self, request_id: str) -> PolicyRequest | None: ...

    async def latest_of(self, organisation_id: str) -> PolicyRequest | None: ...

    async def lease(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[PolicyRequest]:
        """Lease running requests whose lease is over (or that have none) until
        ``lease_until``, oldest first; other workers skip them."""
        ...

    async def save_progress(
        self, request: PolicyRequest, *, reached_before: int, at: dt.datetime
    ) -> bool:
        """Write its counts (and its end, if finished) and end its lease, if it still stands
        at ``reached_before`` (False: another worker moved it on, nothing is written)."""
        ...


# --- usage (issue 11) ---


class UsageRepository(Protocol):
    """Usage records (each once by its id), what usage remembers of each card, and the signed
    deliveries of the mediation system (each once)."""

    async def card_ids(self, *, msisdns: Sequence[str], iccids: Sequence[str]) -> dict[str, str]:
        """The ids of the cards with these MSISDNs or ICCIDs, by number."""
        ...

    async def lock_cards(self, card_ids: Sequence[str]) -> dict[str, Card]:
        """The cards, locked in id order (FOR NO KEY UPDATE on PostgreSQL)."""
        ...

    async def known_record_ids(self, record_ids: Sequence[str]) -> set[str]:
        """Which of these record ids were applied (committed) before: a hint to leave them out
        (``insert_records`` still decides)."""
        ...

    async def insert_records(self, records: Sequence[UsageRecord]) -> list[InsertedUsage]:
        """Insert the records whose id is new (each says whether it counts against its card's
        period); what was inserted, summed per card (a known id, or an id a second time in
        ``records``: left out)."""
        ...

    async def debit_quotas(
        self, debits: Sequence[tuple[str, int, int]], *, at: dt.datetime
    ) -> None:
        """Set cards' data quotas, each ``(card id, quota, version read)``; the version goes up
        by one. InvariantError if a card changed meanwhile (the caller holds its lock)."""
        ...

    async def period_starts(self, card_ids: Sequence[str]) -> dict[str, dt.datetime]:
        """When each card's current period began: its last completed renewal that extended
        its validity (cards never renewed are left out)."""
        ...

    async def states(self, card_ids: Sequence[str]) -> dict[str, UsageState]: ...

    async def save_states(self, states: Sequence[UsageState], *, at: dt.datetime) -> None:
        """Insert or replace these cards' states (the network fields are written too)."""
        ...

    async def lift_bars(self, *, limit: int) -> int:
        """Barred cards that have data again (a renewal): no longer barred, the network to be
        told. Returns how many."""
        ...

    async def claim_network_changes(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[NetworkChange]:
        """Lease states whose bar the network has not confirmed (their attempt counted);
        other workers skip them until ``lease_until``."""
        ...

    async def network_told(self, card_id: str, *, data_barred: bool) -> None:
        """The network confirmed ``data_barred``: nothing pending unless it changed since."""
        ...

    async def network_failed(self, card_id: str, *, next_at: dt.datetime) -> None: ...

    async def first_delivery(self, signature: str, *, at: dt.datetime) -> bool:
        """Remember a signed delivery; False if this signature was seen before (a replay)."""
        ...

    async def forget_deliveries(self, *, received_before: dt.datetime, limit: int) -> int: ...


@dataclass(frozen=True, slots=True)
class DataAccessRequest:
    """Bar (or restore) a card's data on the network; ``request_id`` is the idempotency key."""

    request_id: str
    msisdn: str
    iccid: str
    data_barred: bool
    attempt: int = 1


class NetworkDataAccess(Protocol):
    """The network's switch for a card's data: barred when its quota is used up (R6)."""

    async def set_data_access(self, request: DataAccessRequest) -> ProvisionResult: ...


# --- auto-renewal (issue 11) ------------------------------------------------------------------


class AutoRenewalRepository(Protocol):
    """Auto-renewal settings per card, the one attempt per (card, period), pre-checks done,
    and auto top-ups (``topup.domain.auto_renewal``)."""

    async def get(self, card_id: str, *, for_update: bool = False) -> AutoRenewal | None: ...

    async def of_cards(self, card_ids: Sequence[str]) -> dict[str, AutoRenewal]: ...

    async def put(self, setting: AutoRenewal) -> None:
        """Insert or replace the card's settings."""
        ...

    async def lease_due(
        self, *, now: dt.datetime, lease_until: dt.datetime, limit: int
    ) -> list[AutoRenewal]:
        """Enabled settings whose ``next_check_at`` has come, oldest first, their next check
        moved to ``lease_until`` (PostgreSQL: FOR UPDATE SKIP LOCKED; two workers never lease
        one card at once)."""
        ...

    async def schedule(self, card_id: str, *, next_check_at: dt.datetime | None) -> None: ...

    async def wake(self, card_ids: Sequence[str], *, at: dt.datetime) -> None:
        """A renewal was applied to these cards (a new period): the enabled ones among them are
        looked at from ``at`` on (those due sooner keep their time)."""
        ...

    async def set_top_up_state(self, card_id: str, *, armed: bool, top_ups: int) -> None: ...

    async def upcoming(
        self, *, validity_before: dt.datetime, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[tuple[AutoRenewal, Card]]:
        """Enabled settings of prepaid cards whose validity ends before ``validity_before``, by
        validity end then card id, after ``after``."""
        ...

    async def attempt(
        self, card_id: str, period: str, *, for_update: bool = False
    ) -> AutoRenewalAttempt | None: ...

    async def open_attempts(self, card_id: str) -> list[AutoRenewalAttempt]:
        """The card's attempts still charging or paid (activating), of any period, by period."""
        ...

    async def add_attempt(self, attempt: AutoRenewalAttempt) -> bool:
        """False (nothing written) if the (card, period) has an attempt already."""
        ...

    async def update_attempt(self, attempt: AutoRenewalAttempt) -> None: ...

    async def add_precheck(
        self, card_id: str, period: str, offset_s: int, *, problems: str, at: dt.datetime
    ) -> bool:
        """Record a pre-check once; False if it was done already."""
        ...

    async def prechecks_done(self, card_id: str, period: str) -> frozenset[int]: ...

    async def precheck_problems(self, card_id: str, period: str, offset_s: int) -> str:
        """The problems that pre-check found (codes, comma-separated; "" if none or not done)."""
        ...

    async def top_ups_due(self, *, limit: int) -> list[tuple[AutoRenewal, Card]]:
        """Enabled settings with a top-up rule that must fire (armed, data below the threshold)
        or re-arm (not armed, data back at or above it), with their cards."""
        ...

    async def add_top_up(self, top_up: AutoTopUp) -> bool:
        """False (nothing written) if that crossing of the card has a top-up already."""
        ...

    async def update_top_up(
        self,
        card_id: str,
        crossing: int,
        *,
        status: TopUpStatus,
        renewal_id: str | None,
        only_if: TopUpStatus | None = None,
    ) -> bool:
        """Set the top-up's status; with ``only_if``, only while it has that status (False, and
        nothing written, otherwise: another worker recorded it)."""
        ...

    async def unsettled_top_ups(
        self, *, started_before: dt.datetime, refunded_since: dt.datetime, limit: int
    ) -> list[AutoTopUp]:
        """Top-ups whose outcome is still to be recorded, oldest first, at most ``limit``: those
        still ``started`` (their renewal pending at the PSP, or never sent) since before
        ``started_before``, and those ``succeeded`` since ``refunded_since`` whose renewal was
        refunded afterwards."""
        ...

    async def top_ups_since(self, card_id: str, *, since: dt.datetime) -> tuple[int, int]:
        """(count, amount_minor) of the card's top-ups that count against its caps since."""
        ...


class UnitOfWork(Protocol):
    """One database transaction; rolls back on exit unless ``commit`` was called.

    Its repositories are those of ``topup.adapters.db`` (one module per noun) on a database,
    and those of ``topup.adapters.memory`` in unit tests.
    """

    @property
    def cards(self) -> CardRepository: ...
    @property
    def plans(self) -> PlanRepository: ...
    @property
    def renewals(self) -> RenewalRepository: ...
    @property
    def payments(self) -> PaymentRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def jobs(self) -> JobRepository: ...
    @property
    def payment_card_locks(self) -> PaymentCardLockRepository: ...
    @property
    def webhooks(self) -> WebhookRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def api_keys(self) -> ApiKeyRepository: ...
    @property
    def saved_payment_cards(self) -> SavedPaymentCardRepository: ...
    @property
    def account_history(self) -> AccountHistoryQueries: ...
    @property
    def receipts(self) -> ReceiptQueries: ...
    @property
    def audit(self) -> AuditQueries: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def organisations(self) -> OrganisationRepository: ...
    @property
    def bulk_renewals(self) -> BulkRenewalRepository: ...
    @property
    def reminders(self) -> ReminderRepository: ...
    @property
    def policy_requests(self) -> PolicyRequestRepository: ...
    @property
    def usage(self) -> UsageRepository: ...
    @property
    def auto_renewals(self) -> AutoRenewalRepository: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


# --- Rate limits, SMS and e-mail ----------------------------------------------------------------


class RateLimiter(Protocol):
    """Counts requests in fixed windows, shared by every server process that uses the same
    store (in-process by default, Redis when configured)."""

    async def hit(self, name: str, key: str, *, limit: int, window_s: int) -> int:
        """Count one request of ``key`` against rule ``name``. Returns 0 if it is allowed, else
        the whole seconds until the window ends (a Retry-After)."""
        ...


class SmsSender(Protocol):
    async def send(self, msisdn: str, text: str, *, idempotency_key: str | None = None) -> None:
        """Send a text message to a card's number; raises TopupError (retryable) if it cannot.
        A second send with the same ``idempotency_key`` sends nothing."""
        ...


class Mailer(Protocol):
    async def send(
        self,
        recipient: str,
        subject: str,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send an e-mail (with extra ``headers``, e.g. List-Unsubscribe); raises TopupError
        (retryable) if the mail server refuses or is down."""
        ...


class TokenSealer(Protocol):
    def seal(self, token: str) -> str: ...

    def fingerprint(self, token: str) -> str: ...

    def open(self, sealed: str) -> str: ...


class ReceiptDrawer(Protocol):
    """Draws a receipt as a document (a PDF): ``local`` is (title, hint) then (label, value)
    rows in the reader's language, ``english`` the same in English for any line the drawer's
    font cannot draw."""

    def draw(
        self,
        local: Sequence[tuple[str, str]],
        english: Sequence[tuple[str, str]],
        *,
        receipt_number: str,
        paid_at: dt.datetime,
    ) -> bytes: ...


# --- A wallet's own approval page (the sandbox wallet's, served on this site) -----------------


class WalletDecision(StrEnum):
    WAITING = "waiting"  # the payer has not answered yet
    APPROVED = "approved"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class WalletApproval:
    """A payment waiting for (or given) the payer's answer in the wallet, as its approval page
    shows it: the payer sees the amount, who asks and which of their accounts pays."""

    reference: str  # the approval's opaque reference, in the page's address
    payment_id: str
    provider: str
    account_last4: str
    amount: Money
    requested_at: dt.datetime
    decision: WalletDecision


@runtime_checkable
class WalletApprovals(Protocol):
    """A wallet provider whose approval page this site serves (the sandbox wallet): it reads an
    approval by its reference and takes the payer's answer, then tells us by its webhook."""

    name: str

    def approval(self, reference: str) -> WalletApproval | None:
        """The approval with this reference, or None if this wallet did not issue it."""
        ...

    async def decide(self, reference: str, *, approve: bool) -> WalletApproval:
        """The payer's answer (once: a second answer changes nothing); the webhook follows."""
        ...
