"""The rows of an in-memory database: frozen records in plain containers, copied whole when a
unit of work begins (its snapshot) and put back when it commits."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field, fields

from topup.domain.accounts import Account, EmailToken, LinkCode, LoginAttempts
from topup.domain.api_keys import ApiKey
from topup.domain.auto_renewal import AutoRenewal, AutoRenewalAttempt, AutoTopUp
from topup.domain.cards import Card
from topup.domain.errors import InvariantError
from topup.domain.fleets import BulkLine, BulkRun, Invoice, Member, Organisation, PolicyRequest
from topup.domain.ledger import Entry
from topup.domain.plans import Plan
from topup.domain.records import (
    CardEvent,
    IdempotencyRecord,
    JobRecord,
    PaymentRecord,
    RenewalRecord,
)
from topup.domain.reminders import Delivery, Reminder
from topup.domain.renewal import Transition
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.domain.usage import UsageRecord, UsageState


@dataclass(frozen=True, slots=True)
class WrongAnswers:
    """Payment-password wrong answers counted for one payment card, and its lock."""

    failed_attempts: int
    first_failed_at: dt.datetime
    locked_until: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AccessToken:
    id: str
    account_id: str
    token_hash: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_seen_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class LoginCount:
    attempts: LoginAttempts
    first_failed_at: dt.datetime
    email_key: str | None = None  # the e-mail a count about an address and an e-mail is of


@dataclass
class Tables:
    cards: dict[str, Card] = field(default_factory=dict)
    card_events: list[tuple[str, CardEvent]] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)
    renewals: dict[str, RenewalRecord] = field(default_factory=dict)
    renewal_events: list[tuple[str, Transition]] = field(default_factory=list)
    payments: dict[str, PaymentRecord] = field(default_factory=dict)
    ledger_entries: list[tuple[int, Entry, dt.datetime]] = field(default_factory=list)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    jobs: dict[int, JobRecord] = field(default_factory=dict)
    wrong_answers: dict[str, WrongAnswers] = field(default_factory=dict)
    webhook_events: dict[tuple[str, str], str] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    email_tokens: dict[str, EmailToken] = field(default_factory=dict)
    login_counts: dict[str, LoginCount] = field(default_factory=dict)
    card_links: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)
    link_codes: dict[str, tuple[LinkCode, dt.datetime]] = field(default_factory=dict)  # created at
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    saved_payment_cards: dict[str, SavedPaymentCard] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)  # by id
    # --- fleets (issue 11)
    organisations: dict[str, Organisation] = field(default_factory=dict)
    organisation_members: dict[tuple[str, str], Member] = field(default_factory=dict)
    organisation_cards: dict[str, str] = field(default_factory=dict)  # card id -> organisation id
    bulk_runs: dict[str, BulkRun] = field(default_factory=dict)
    bulk_lines: dict[int, tuple[BulkLine, dt.datetime | None]] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)  # by number
    reminders: dict[str, Reminder] = field(default_factory=dict)
    reminder_deliveries: dict[str, Delivery] = field(default_factory=dict)
    reminder_cursors: dict[str, int] = field(default_factory=dict)
    reminder_preferences: dict[tuple[str, str], bool] = field(default_factory=dict)
    push_subscriptions: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # by account
    # policy requests by id, with their lease's end
    policy_requests: dict[str, tuple[PolicyRequest, dt.datetime | None]] = field(
        default_factory=dict
    )
    # usage (issue 11): records by id (with whether each counted), states by card (with when
    # the network is next to be told), signed deliveries by signature.
    usage_records: dict[str, tuple[UsageRecord, bool]] = field(default_factory=dict)
    card_usage: dict[str, tuple[UsageState, dt.datetime | None]] = field(default_factory=dict)
    usage_deliveries: dict[str, dt.datetime] = field(default_factory=dict)
    usage_attempts: dict[str, int] = field(default_factory=dict)  # network attempts, by card
    # Auto-renewal (issue 11): settings by card; attempts by (card, period); pre-checks done by
    # (card, period, offset) with their problems; top-ups by (card, crossing).
    auto_renewals: dict[str, AutoRenewal] = field(default_factory=dict)
    auto_renewal_attempts: dict[tuple[str, str], AutoRenewalAttempt] = field(default_factory=dict)
    auto_renewal_prechecks: dict[tuple[str, str, int], str] = field(default_factory=dict)
    auto_top_ups: dict[tuple[str, int], AutoTopUp] = field(default_factory=dict)
    last_id: int = 0  # of ledger entries and jobs (each an autoincrement column)

    def copy(self) -> Tables:
        """A snapshot: new containers holding the same (immutable) records."""
        snapshot = copy.copy(self)
        for column in fields(self):
            value = getattr(self, column.name)
            if isinstance(value, dict | list):
                setattr(snapshot, column.name, value.copy())
        return snapshot

    def restore(self, other: Tables) -> None:
        """Hold what ``other`` holds (a rollback), in place: repositories keep this object."""
        snapshot = other.copy()
        for column in fields(self):
            setattr(self, column.name, getattr(snapshot, column.name))

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def require_renewal(self, renewal_id: str | None) -> None:
        """The foreign key to a renewal."""
        if renewal_id is not None and renewal_id not in self.renewals:
            raise InvariantError(f"foreign key: no renewal {renewal_id}")

    def require_card(self, card_id: str | None) -> None:
        if card_id is not None and card_id not in self.cards:
            raise InvariantError(f"foreign key: no card {card_id}")


def unique_violation(table: str, key: object) -> InvariantError:
    """What the database refuses with an integrity error, the fakes refuse with this."""
    return InvariantError(f"unique key: {table} already has {key!r}")
