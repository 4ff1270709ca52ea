"""The ports: what the services need from the outside world, as Protocols.

Each port has a fake or sandbox adapter usable in tests and demos:
PaymentGateway -> adapters.gateways.sandbox.SandboxGateway,
NetworkProvisioner -> adapters.network.sandbox.SandboxNetwork,
Clock -> adapters.clock.FixedClock / SystemClock, UnitOfWork -> adapters.db.unit_of_work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol

from topup.domain.money import Money


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


# --- Payment gateway -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What a payer typed. Lives only in memory on its way to the gateway's tokeniser."""

    number: str
    expiry_month: int
    expiry_year: int
    cvc: str

    def __repr__(self) -> str:
        # Never let a PAN or CVC reach a log through repr().
        return f"CardDetails(number='****{self.number[-4:]}', expiry='{self.expiry_month:02d}/{self.expiry_year}', cvc='***')"


@dataclass(frozen=True, slots=True)
class PaymentInstrument:
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

    async def tokenize(self, card: CardDetails) -> PaymentInstrument:
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

    def tokenize_account(self, provider: str, account: str) -> PaymentInstrument:
        """A token for a payer's account with a wallet provider; raises InputError if the
        account cannot be one (card gateways refuse)."""
        ...

    async def instrument_of(self, token: str) -> PaymentInstrument:
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


class UnitOfWork(Protocol):
    """One database transaction; rolls back on exit unless ``commit`` was called.

    The repositories it carries are those of ``topup.adapters.db`` (one module per noun); the services only
    use their methods, and tests run them on an in-memory SQLite database.
    """

    cards: Any
    plans: Any
    renewals: Any
    payments: Any
    ledger: Any
    jobs: Any
    instruments: Any
    webhooks: Any
    audit: Any
    idempotency: Any
    accounts: Any
    receipts: Any
    api_keys: Any

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
    async def send(self, msisdn: str, text: str) -> None:
        """Send a text message to a card's number; raises TopupError (retryable) if it cannot."""
        ...


class Mailer(Protocol):
    async def send(self, recipient: str, subject: str, body: str) -> None:
        """Send an e-mail; raises TopupError (retryable) if the mail server refuses or is down."""
        ...


class TokenSealer(Protocol):
    def seal(self, token: str) -> str: ...

    def fingerprint(self, token: str) -> str: ...

    def open(self, sealed: str) -> str: ...
