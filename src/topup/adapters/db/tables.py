"""SQLAlchemy Core tables. The schema is created by Alembic migrations (migrations/), never by create_all
outside tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.types import TypeDecorator

from topup.domain.errors import InvariantError

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise InvariantError(f"naive or non-datetime value {value!r} given to a UTC column")
        utc: dt.datetime = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise InvariantError(f"unexpected stored datetime {value!r}")
        aware: dt.datetime = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
        return aware.astimezone(dt.UTC)


ID = String(36)

cards = Table(
    "cards",
    metadata,
    Column("id", ID, primary_key=True),
    Column("msisdn", String(20), nullable=False, unique=True),
    Column("iccid", String(22), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("credit_minor", BigInteger, nullable=False),
    Column("data_quota_mb", BigInteger, nullable=False),
    Column("validity_end", UtcDateTime),
    Column("bill_due_minor", BigInteger, nullable=False),
    Column("bill_due_date", UtcDateTime),
    Column("holder_name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
Index("ix_cards_status_validity_end", cards.c.status, cards.c.validity_end)
# Card-number recovery looks cards up by e-mail without regard to case.
Index("ix_cards_email_lower", func.lower(cards.c.email))

plans = Table(
    "plans",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("names", JSON, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("data_quota_mb", BigInteger, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("card_kinds", JSON, nullable=False),
    Column("channels", JSON, nullable=False),
    Column("active_from", UtcDateTime),
    Column("active_until", UtcDateTime),
)

renewals = Table(
    "renewals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("card_id", ID, ForeignKey("cards.id"), nullable=False),
    # No foreign key: the plan's row would be locked by every renewal of it (a hot row), and a
    # renewal keeps the terms it was sold at below, so the plan may later be withdrawn.
    Column("plan_code", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # What was bought, as it was when paid for: editing a plan later changes nothing here.
    Column("data_quota_mb", BigInteger, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("request_fingerprint", String(64), nullable=False),
    Column("decline_code", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("paid_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("expected_by", UtcDateTime),
    Column("contact_after", UtcDateTime),
    # Printed on the receipt once paid; chosen at random when the renewal is made (R8).
    Column("receipt_number", String(16), unique=True),
    # Where and in which language to e-mail the receipt once paid (optional).
    Column("receipt_email", String(320)),
    Column("receipt_language", String(16)),
)
Index("ix_renewals_card_id_created_at", renewals.c.card_id, renewals.c.created_at)
Index("ix_renewals_status", renewals.c.status)
# Card-number recovery also finds the cards of paid renewals that gave an e-mail; most give none.
Index(
    "ix_renewals_receipt_email_lower",
    func.lower(renewals.c.receipt_email),
    postgresql_where=renewals.c.receipt_email.is_not(None),
    sqlite_where=renewals.c.receipt_email.is_not(None),
)

renewal_events = Table(
    "renewal_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("renewal_id", ID, ForeignKey("renewals.id"), nullable=False, index=True),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("renewal_id", ID, ForeignKey("renewals.id"), nullable=False, unique=True),
    Column("gateway", String(32), nullable=False),
    Column("method", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("token_encrypted", Text, nullable=False),
    Column("brand", String(32), nullable=False),
    Column("funding", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("expiry_month", Integer, nullable=False),
    Column("expiry_year", Integer, nullable=False),
    Column("issuer_country", String(2), nullable=False),
    Column("gateway_reference", String(128)),
    Column("decline_code", String(64)),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("check_attempts", Integer, nullable=False),
    Column("next_check_at", UtcDateTime),
    Column("flagged_for_staff", Boolean, nullable=False),
    Column("refund_reference", String(128)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # A keyed hash of the gateway token: finds the payment card's lock, reveals nothing.
    Column("instrument_fingerprint", String(64)),
    # E-wallets: a keyed hash of the payer's wallet account (daily limits), and where the payer
    # approves the payment.
    Column("wallet_account_fingerprint", String(64)),
    Column("action_url", Text),
    # A charge the merchant started with nobody present (auto-renewal): no CVC, no 3-D Secure
    # (migration 0013, auto-renewal).
    Column("merchant_initiated", Boolean, nullable=False, server_default=false()),
)
Index("ix_payments_status_next_check_at", payments.c.status, payments.c.next_check_at)
Index(
    "ix_payments_wallet_account_fingerprint_requested_at",
    payments.c.wallet_account_fingerprint,
    payments.c.requested_at,
)

# Webhooks already handled, by the gateway's event id: a repeat is answered and ignored.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("gateway", String(32), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("payment_id", ID),
    Column("received_at", UtcDateTime, nullable=False),
)

# Wrong payment passwords (3-D Secure codes) per payment card, and the lock they lead to.
instrument_locks = Table(
    "instrument_locks",
    metadata,
    Column("instrument_fingerprint", String(64), primary_key=True),
    Column("failed_attempts", Integer, nullable=False),
    Column("first_failed_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(16), nullable=False),
    Column("renewal_id", ID, ForeignKey("renewals.id")),
    Column("card_id", ID, ForeignKey("cards.id")),
    Column("memo", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # One capture, one activation, one refund per renewal, enforced by the database itself.
    UniqueConstraint("renewal_id", "kind", name="uq_ledger_entries_renewal_id_kind"),
)
Index("ix_ledger_entries_card_id", ledger_entries.c.card_id)

ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("entry_id", BigInteger, ForeignKey("ledger_entries.id"), nullable=False, index=True),
    Column("account", String(80), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
)
Index("ix_ledger_postings_account", ledger_postings.c.account)

account_balances = Table(
    "account_balances",
    metadata,
    Column("account", String(80), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("balance_minor", BigInteger, nullable=False),
)

# The worker's jobs (migration 0010): each about a subject, a renewal today (no foreign key: the
# subject may be a renewal, a card or a batch; `topup audit` checks renewal subjects exist).
jobs = Table(
    "jobs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(16), nullable=False),
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claims", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("first_requested_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("reason", Text),  # why it was queued (a refund: the reason its timeline gives)
    Column("outcome", String(16)),  # what the outside world answered, e.g. `applied`
    # One job of a kind per subject; also finds a subject's jobs (its leading columns).
    UniqueConstraint(
        "subject_kind", "subject_id", "kind", name="uq_jobs_subject_kind_subject_id_kind"
    ),
)
Index("ix_jobs_status_next_attempt_at", jobs.c.status, jobs.c.next_attempt_at)

card_events = Table(
    "card_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("card_id", ID, ForeignKey("cards.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("detail", Text, nullable=False),
)

# API keys of stores, kiosks, partners and staff: only a keyed hash of the secret part is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("prefix", String(16), nullable=False, unique=True),  # shown in lists, found by
    Column("secret_hash", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("outlet", String(64)),  # the store or kiosk it belongs to
    Column("region", String(64)),  # where that store or kiosk stands
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

# HTTP requests sent with an Idempotency-Key: the first one's response, replayed for 24 h.
idempotency_requests = Table(
    "idempotency_requests",
    metadata,
    Column("id", ID, primary_key=True),  # the key the service itself is given
    Column("scope", String(80), nullable=False),  # the caller the key belongs to
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # of the request's method, path and body
    Column("state", String(16), nullable=False),  # running, open (may run again), done
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("status_code", Integer),
    Column("content_type", String(100)),
    Column("body", LargeBinary),
    UniqueConstraint("scope", "key", name="uq_idempotency_requests_scope_key"),
)
Index("ix_idempotency_requests_created_at", idempotency_requests.c.created_at)

# --- accounts (migration 0007) ----------------------------------------------------------------

# Subscribers' accounts. The e-mail is kept lower-case; the password only as an argon2id hash.
accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("language", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # Set when a link e-mailed to the address is followed; only confirmed accounts sign in.
    Column("confirmed_at", UtcDateTime),
)

# Single-use links e-mailed to an account (confirm the address, reset the password): only a
# keyed hash of each token is kept. A confirmation keeps the password hash and language of the
# sign-up that asked for it.
account_email_tokens = Table(
    "account_email_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("password_hash", String(255)),
    Column("language", String(16)),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_account_email_tokens_expires_at", account_email_tokens.c.expires_at)

# Bearer tokens of signed-in accounts: only a keyed hash of each token is kept.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    # When the token was last used (at most once a minute is written): a web session unused
    # for longer than its idle timeout ends. Tokens issued before it was kept: NULL.
    Column("last_seen_at", UtcDateTime),
)

# Sign-in attempts within a window, counted before the password is checked, under a keyed hash
# of the e-mail (registered or not) from one client address (these lead to a temporary lock) or
# of the e-mail alone (these only slow answers down). The worker forgets rows whose window and
# lock are over.
login_failures = Table(
    "login_failures",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),  # attempts, the successful one clears them
    Column("first_failed_at", UtcDateTime, nullable=False),  # when the window began
    Column("locked_until", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # A keyed hash of the e-mail alone, so that a password reset forgets the e-mail's counts
    # and locks from every address.
    Column("email_key", String(64)),
)
Index("ix_login_failures_first_failed_at", login_failures.c.first_failed_at)
Index("ix_login_failures_email_key", login_failures.c.email_key)

# The cards an account has proved it holds (by a code sent to the card's number).
card_links = Table(
    "card_links",
    metadata,
    Column("account_id", ID, ForeignKey("accounts.id"), primary_key=True),
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("linked_at", UtcDateTime, nullable=False),
)
Index("ix_card_links_card_id", card_links.c.card_id)

# One-time codes sent by SMS to link a card; only a keyed hash of each code is kept.
card_link_codes = Table(
    "card_link_codes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("card_id", ID, ForeignKey("cards.id"), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
)
Index(
    "ix_card_link_codes_account_id_card_id", card_link_codes.c.account_id, card_link_codes.c.card_id
)

# Payment cards an account saved for one-tap renewals (and auto-renewal): the PSP's token, sealed,
# our keyed hash of the PSP's fingerprint (one row per payment card and account), and what the
# payer recognises it by. Never a card number.
saved_payment_cards = Table(
    "saved_payment_cards",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("gateway", String(32), nullable=False),
    Column("token_sealed", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("brand", String(32), nullable=False),
    Column("funding", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("expiry_month", Integer, nullable=False),
    Column("expiry_year", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint(
        "account_id", "fingerprint", name="uq_saved_payment_cards_account_id_fingerprint"
    ),
)


# --- usage (migration 0013, _upgrade_usage) ----------------------------------------------------
# Usage records from the network and what they debited.

# Each record the network sent, once by its id (a re-sent one is left out by the primary key);
# ``counted``: whether it debited the card's period (False: used before the period began, or a
# postpaid or expired card's, which usage does not debit). No
# foreign key to cards: records go in 100,000 at a time and the check's trigger, once per row,
# cost more than the insert itself; their card ids come from the card rows the import has just
# locked, and cards are never deleted. Nor an index by card: nothing reads them by card yet,
# and each index is paid on every one of millions of rows.
usage_records = Table(
    "usage_records",
    metadata,
    Column("record_id", String(64), primary_key=True),
    Column("card_id", ID, nullable=False),
    Column("used_at", UtcDateTime, nullable=False),
    Column("data_used_mb", BigInteger, nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

# What usage remembers of a card: its period's quota (the 100 % of thresholds), what it used,
# the thresholds raised in which period, and whether the network is to bar its data.
card_usage = Table(
    "card_usage",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("period", String(40), nullable=False),
    Column("period_quota_mb", BigInteger, nullable=False),
    Column("used_mb", BigInteger, nullable=False),
    Column("data_low_period", String(40)),
    Column("data_exhausted_period", String(40)),
    Column("data_barred", Boolean, nullable=False),
    Column("network_pending", Boolean, nullable=False),
    Column("network_attempts", Integer, nullable=False),
    Column("network_next_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)
# The few cards the network must still be told about, and the few barred (renewal lifts it).
Index(
    "ix_card_usage_network_next_at",
    card_usage.c.network_next_at,
    postgresql_where=card_usage.c.network_pending,
    sqlite_where=card_usage.c.network_pending,
)
Index(
    "ix_card_usage_barred_card_id",
    card_usage.c.card_id,
    postgresql_where=card_usage.c.data_barred,
    sqlite_where=card_usage.c.data_barred,
)

# Signed deliveries from the mediation system, by signature: the same signed body twice is a
# replay (refused); forgotten once older than the signature tolerance.
usage_deliveries = Table(
    "usage_deliveries",
    metadata,
    Column("signature", String(64), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
)
Index("ix_usage_deliveries_received_at", usage_deliveries.c.received_at)

# The lifecycle finds postpaid cards whose bill became overdue by index (suspension); prepaid
# cards past validity or grace by ix_cards_status_validity_end.
Index(
    "ix_cards_status_bill_due_date",
    cards.c.status,
    cards.c.bill_due_date,
    postgresql_where=cards.c.bill_due_minor > 0,
    sqlite_where=cards.c.bill_due_minor > 0,
)

# (end of usage)


# --- reminders (migration 0013, _upgrade_reminders) --------------------------------------------
# Reminders (one per card, period and kind), their deliveries per channel, preferences, push
# subscriptions.

# A reminder: at most one per (card, validity period, kind), enforced here. ``period_end`` is the
# period's date (the card's validity end it was made for), which the scheduler compares with the
# card's to find the cards still without one, by index.
reminders = Table(
    "reminders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("card_id", ID, ForeignKey("cards.id"), nullable=False),
    Column("period", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("period_end", UtcDateTime),
    Column("status", String(16), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("detail", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("card_id", "kind", "period", name="uq_reminders_card_id_kind_period"),
)
Index(
    "ix_reminders_card_id_kind_period_end",
    reminders.c.card_id,
    reminders.c.kind,
    reminders.c.period_end,
)

# One delivery per reminder and channel, enforced here; its id is the provider's idempotency key.
# A claim leases it (next_attempt_at moves past the lease, claims goes up by one).
reminder_deliveries = Table(
    "reminder_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("reminder_id", ID, ForeignKey("reminders.id"), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claims", Integer, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("last_error", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("reminder_id", "channel", name="uq_reminder_deliveries_reminder_id_channel"),
)
Index(
    "ix_reminder_deliveries_status_next_attempt_at",
    reminder_deliveries.c.status,
    reminder_deliveries.c.next_attempt_at,
)

# How far the scheduler has read the card events (a durable cursor, one row per reader).
reminder_cursors = Table(
    "reminder_cursors",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A card's channel turned off (or on again); no row: on.
reminder_preferences = Table(
    "reminder_preferences",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("channel", String(8), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The installed app's Web Push subscription, one per account (the newest replaces the last).
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("account_id", ID, ForeignKey("accounts.id"), primary_key=True),
    Column("endpoint", Text, nullable=False),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# (end of reminders)


# --- auto-renewal (migration 0013, _upgrade_auto_renewal) --------------------------------------
# Auto-renewal and auto top-up settings per card, and their attempts (one charge per period).
# Also ``payments.merchant_initiated`` (above, in ``payments``).

auto_renewals = Table(
    "auto_renewals",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("plan_code", String(64), nullable=False),
    Column("payment", String(24), nullable=False),  # saved_payment_card | credit
    # No foreign key: removing a saved payment card is allowed; the pre-check then says so.
    Column("saved_payment_card_id", ID),
    Column("payment_account_id", ID),
    Column("set_by", String(16), nullable=False),  # account | organisation
    Column("set_by_id", ID, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("top_up_plan_code", String(64)),
    Column("top_up_below_mb", BigInteger),
    Column("top_up_month_count_max", Integer),
    Column("top_up_month_amount_max_minor", BigInteger),
    Column("top_up_armed", Boolean, nullable=False),
    Column("top_ups", Integer, nullable=False),
    Column("next_check_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
# The worker finds the cards due by this index (enabled ones only).
Index(
    "ix_auto_renewals_enabled_next_check_at",
    auto_renewals.c.enabled,
    auto_renewals.c.next_check_at,
)

# One row per (card, period): the one charge of that period, whatever its tries.
auto_renewal_attempts = Table(
    "auto_renewal_attempts",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("tries", Integer, nullable=False),
    Column("try_key", String(255), nullable=False, unique=True),
    Column("renewal_id", ID, ForeignKey("renewals.id")),
    Column("next_try_at", UtcDateTime),
    Column("problem", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The organisation the current try is charged to (None: the subscriber): its invoices.
    Column("paid_by_organisation_id", ID),
)
# An organisation's invoice finds the auto-renewals charged to it by this index.
Index(
    "ix_auto_renewal_attempts_paid_by_organisation_id_created_at",
    auto_renewal_attempts.c.paid_by_organisation_id,
    auto_renewal_attempts.c.created_at,
)

# A pre-check done (once per card, period and offset): its problems went out as card events.
auto_renewal_prechecks = Table(
    "auto_renewal_prechecks",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("offset_s", Integer, primary_key=True),
    Column("problems", String(255), nullable=False),  # codes, comma-separated; "" if none
    Column("checked_at", UtcDateTime, nullable=False),
)

# One row per crossing of a card's top-up threshold (its number is the card's ``top_ups``).
auto_top_ups = Table(
    "auto_top_ups",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("crossing", Integer, primary_key=True),
    Column("renewal_key", String(255), nullable=False, unique=True),
    Column("plan_code", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # started | succeeded | failed | capped
    Column("renewal_id", ID, ForeignKey("renewals.id")),
    Column("at", UtcDateTime, nullable=False),
    # The organisation the top-up is charged to (None: the subscriber): its invoices (0014).
    Column("paid_by_organisation_id", ID),
)
Index("ix_auto_top_ups_card_id_at", auto_top_ups.c.card_id, auto_top_ups.c.at)
Index(
    "ix_auto_top_ups_paid_by_organisation_id_at",
    auto_top_ups.c.paid_by_organisation_id,
    auto_top_ups.c.at,
)
# Top-ups whose renewal's outcome is not recorded yet (pending at the PSP), oldest first.
Index("ix_auto_top_ups_status_at", auto_top_ups.c.status, auto_top_ups.c.at)

# (end of auto-renewal)


# --- fleets (migration 0013, _upgrade_fleets; and 0014) ---------------------------------------
# Organisations, members, their cards, bulk renewal runs and lines, monthly invoices.

# An enterprise account. Bulk renewals are charged to one of its members' saved payment cards.
organisations = Table(
    "organisations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("language", String(16), nullable=False),
    Column("payment_card_id", ID, ForeignKey("saved_payment_cards.id", ondelete="SET NULL")),
    Column("payment_card_account_id", ID),
    Column("created_at", UtcDateTime, nullable=False),
)

organisation_members = Table(
    "organisation_members",
    metadata,
    Column("organisation_id", ID, ForeignKey("organisations.id"), primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
)
Index("ix_organisation_members_account_id", organisation_members.c.account_id)

# A card belongs to at most one organisation.
organisation_cards = Table(
    "organisation_cards",
    metadata,
    Column("card_id", ID, ForeignKey("cards.id"), primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
)
Index(
    "ix_organisation_cards_organisation_id_card_id",
    organisation_cards.c.organisation_id,
    organisation_cards.c.card_id,
)

bulk_runs = Table(
    "bulk_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("created_by", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("lines_total", Integer, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("retry_of", ID),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
)
Index(
    "ix_bulk_runs_organisation_id_created_at", bulk_runs.c.organisation_id, bulk_runs.c.created_at
)

# One line of a run; each line is its own renewal, under its own idempotency key (not unique
# here: the same file uploaded twice makes the same keys, and the renewals' key is unique).
bulk_lines = Table(
    "bulk_lines",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", ID, ForeignKey("bulk_runs.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("number", String(40), nullable=False),
    Column("card_id", ID),
    Column("plan_code", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("renewal_id", ID),
    Column("receipt_number", String(16)),
    Column("error_code", String(64)),
    Column("attempts", Integer, nullable=False),
    Column("lease_until", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    # The error's params as JSON text (a few short strings): what fills its message.
    Column("error_params", String(1200)),
    UniqueConstraint("run_id", "line_no", name="uq_bulk_lines_run_id_line_no"),
)
# The worker finds open lines by this index (status first: finished lines are never looked at).
Index("ix_bulk_lines_status_lease_until", bulk_lines.c.status, bulk_lines.c.lease_until)
Index("ix_bulk_lines_renewal_id", bulk_lines.c.renewal_id)
# A dry run finds the cards its organisation renewed recently by bulk renewal by this index.
Index("ix_bulk_lines_card_id", bulk_lines.c.card_id)

# Monthly consolidated invoices: numbered in sequence per organisation and month.
invoices = Table(
    "invoices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("month", String(7), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("number", String(40), nullable=False, unique=True),
    Column("renewals_count", Integer, nullable=False),
    Column("gross_minor", BigInteger, nullable=False),
    Column("net_minor", BigInteger, nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint(
        "organisation_id", "month", "sequence", name="uq_invoices_organisation_id_month_sequence"
    ),
)

# Requests to apply a fleet-wide auto-renewal policy, applied by the worker a batch of cards at a
# time. ``running_organisation_id`` is the organisation's id while it runs (NULL once finished):
# its unique key lets one run per organisation.
policy_requests = Table(
    "policy_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("organisation_id", ID, ForeignKey("organisations.id"), nullable=False),
    Column("running_organisation_id", ID, unique=True),
    Column("requested_by", ID, nullable=False),
    Column("plans", String(400), nullable=False),  # JSON: card kind -> plan code
    Column("status", String(16), nullable=False),
    Column("cards_total", Integer, nullable=False),
    Column("reached", Integer, nullable=False),
    Column("reached_card_id", ID),  # the last card reached, by id (migration 0014)
    Column("applied", Integer, nullable=False),
    Column("already", Integer, nullable=False),
    Column("left_alone", Integer, nullable=False),
    Column("refused", Integer, nullable=False),
    Column("refusals", Text, nullable=False),  # JSON: the first refusals, [msisdn, code, params]
    Column("error_code", String(64)),
    Column("lease_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
)
Index(
    "ix_policy_requests_organisation_id_created_at",
    policy_requests.c.organisation_id,
    policy_requests.c.created_at,
)
Index(
    "ix_policy_requests_status_lease_until", policy_requests.c.status, policy_requests.c.lease_until
)

# (end of fleets)
