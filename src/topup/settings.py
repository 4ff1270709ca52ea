"""Configuration from the environment (``TOPUP_*``).

Every limit has a name with its unit last; nothing here is read at import time.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from topup.domain.errors import InvariantError
from topup.limits import GROUPS, Limits


def parse_trusted_proxies(
    text: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``TOPUP_TRUSTED_PROXIES``: addresses or networks separated by commas or blanks.
    ValueError names an entry that is neither."""
    networks = []
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or network") from None
    return tuple(networks)


class LimitSettings(BaseSettings):
    """Bounds on retries, batches and waits (STYLE.md rule 7), one ``TOPUP_*`` variable each;
    the services get them grouped by concern (``by_concern``, ``topup.limits``)."""

    model_config = SettingsConfigDict(env_prefix="TOPUP_", extra="ignore")

    gateway_timeout_s: float = Field(10.0, gt=0)
    network_timeout_s: float = Field(30.0, gt=0)
    charge_send_attempts_max: int = Field(5, ge=1)
    payment_check_attempts_max: int = Field(12, ge=1)
    payment_check_base_s: float = Field(5.0, gt=0)
    payment_check_cap_s: float = Field(3600.0, gt=0)
    payment_staff_recheck_s: float = Field(86_400.0, gt=0)
    requires_action_timeout_s: float = Field(1800.0, gt=0)
    payment_password_attempts_max: int = Field(5, ge=1, le=20)
    payment_password_lock_s: float = Field(1800.0, gt=0)  # also how long wrong answers count
    payment_password_length_max: int = Field(64, ge=1, le=256)
    activation_attempts_max: int = Field(8, ge=1)
    activation_backoff_base_s: float = Field(2.0, gt=0)
    activation_backoff_cap_s: float = Field(600.0, gt=0)
    activation_deadline_s: float = Field(172_800.0, gt=0)
    activation_typical_delay_s: int = Field(60, ge=0)
    activation_late_after_s: int = Field(14_400, ge=1)
    refund_attempts_max: int = Field(20, ge=1)
    receipt_attempts_max: int = Field(8, ge=1)  # e-mailing a receipt, with activation's backoff
    refund_reason_length_max: int = Field(500, ge=1, le=10_000)
    job_lease_s: float = Field(120.0, gt=0)
    # Jobs claimed at once, and network calls in flight at once. Their outcomes are written in
    # group-committed batches; only rare outcomes (give up, refund) take a connection each, so
    # keep the concurrency near the connection pool (20 + 20 overflow). A claimed batch should be
    # done within its lease even if every call waits its full timeout: with the defaults, two
    # waves of network_timeout_s (30 s) fit in job_lease_s (120 s).
    worker_batch_size: int = Field(128, ge=1, le=1000)
    worker_concurrency: int = Field(64, ge=1, le=1000)
    worker_idle_sleep_s: float = Field(0.5, gt=0)
    worker_error_pause_cap_s: float = Field(30.0, gt=0)
    # Group commit: concurrent renewals written in one transaction, at most this many each, with
    # at most this many such transactions under way at once.
    write_batch_size_max: int = Field(128, ge=1, le=1000)
    write_batches_in_flight_max: int = Field(2, ge=1, le=16)
    lifecycle_batch_size: int = Field(200, ge=1, le=10_000)
    lifecycle_interval_s: float = Field(60.0, gt=0)
    list_limit_max: int = Field(500, ge=1, le=10_000)
    history_limit_max: int = Field(100, ge=1, le=1000)
    # HTTP API rate limits: requests per client address, and per account or API key, per window.
    card_lookup_per_minute_max: int = Field(60, ge=1)
    recovery_per_hour_max: int = Field(5, ge=1)
    login_per_minute_max: int = Field(10, ge=1)
    confirm_per_minute_max: int = Field(10, ge=1)
    sms_codes_per_hour_max: int = Field(5, ge=1)
    # Accounts: sign-in attempts on an e-mail from one client address before a temporary lock
    # of that pair, the lock (also the window attempts count in), and how long a sign-in lasts.
    login_failures_max: int = Field(5, ge=1, le=100)
    login_lock_s: int = Field(900, ge=1)
    access_token_lifetime_s: int = Field(43_200, ge=60)
    # A failed sign-in from the third attempt on its e-mail (any address) waits this long.
    login_slowdown_s: float = Field(1.0, ge=0, le=10)
    # A web session (the site's sign-in cookie) ends this long after signing in, or after this
    # long without a request, whichever comes first.
    web_session_lifetime_s: int = Field(43_200, ge=60)
    web_session_idle_s: int = Field(1800, ge=60)
    # HTTP idempotency: how long a key's first response is replayed, and how long a request
    # that never finished (its server died) holds its key.
    idempotency_replay_s: int = Field(86_400, ge=60)
    idempotency_lease_s: int = Field(60, ge=1)
    # E-mails (card-number recovery, receipts sent later) under way in the background at once;
    # more are dropped with a log line.
    mailings_in_flight_max: int = Field(32, ge=1, le=10_000)
    # Fleets: lines in one bulk renewal; lines a worker leases at once (each batch's renewals are
    # group-committed) and renewals in flight at once against the gateway; how long a leased line
    # is hidden from other workers (a killed worker's lines are taken again after it), and when a
    # line whose payment's outcome is not known yet is looked at again (a line whose renewal is
    # paid and being applied: first after bulk_activation_recheck_s, then twice as long each
    # time up to bulk_waiting_recheck_s). The fleet page's size,
    # what "near expiry" means, the most rows one CSV export or invoice holds.
    bulk_lines_max: int = Field(20_000, ge=1, le=1_000_000)
    bulk_batch_size: int = Field(1000, ge=1, le=10_000)
    bulk_concurrency: int = Field(128, ge=1, le=1000)
    bulk_line_lease_s: float = Field(120.0, gt=0)
    bulk_waiting_recheck_s: float = Field(30.0, gt=0)
    bulk_activation_recheck_s: float = Field(1.0, gt=0)
    # A card on a line of a bulk renewal this recently (pending, waiting or succeeded) is left
    # out of the next upload's run unless the admin asks to renew it again.
    bulk_renewed_recently_s: float = Field(86_400.0, ge=0, le=31 * 86_400)
    bulk_line_attempts_max: int = Field(8, ge=1, le=100)  # a line refused for a passing reason
    fleet_page_size: int = Field(50, ge=1, le=500)
    fleet_near_expiry_days: int = Field(7, ge=1, le=365)
    fleet_export_rows_max: int = Field(100_000, ge=1, le=1_000_000)
    invoice_renewals_max: int = Field(100_000, ge=1, le=1_000_000)
    # The fleet pages: the largest CSV upload (or pasted lines) of a bulk renewal (1 MiB holds
    # about 30,000 lines; the bulk_lines_max above still applies); a fleet-wide auto-renewal
    # policy reads the organisation's cards in batches and reaches at most this many per request
    # (applying it again goes on with the cards not yet set). At most 1 MiB: the pasted lines
    # and the dry run's Start carry the text in one form field, and a form field is at most that.
    bulk_upload_bytes_max: int = Field(1_048_576, ge=1024, le=1_048_576)
    fleet_policy_batch_size: int = Field(200, ge=1, le=10_000)
    fleet_policy_cards_max: int = Field(5000, ge=1, le=1_000_000)
    # Reminders (README "Reminders"): cards or deliveries taken at once, how often the worker
    # looks, a claimed delivery's lease, sends of one delivery before it is given up and their
    # backoff, how long a gap in the card events' ids is waited for (a transaction still
    # writing), and messages per minute per provider (across workers when Redis is set).
    reminder_batch_size: int = Field(200, ge=1, le=10_000)
    reminder_batches_per_pass_max: int = Field(20, ge=1, le=1000)
    reminder_interval_s: float = Field(30.0, gt=0)
    reminder_lease_s: float = Field(120.0, gt=0)
    reminder_send_attempts_max: int = Field(8, ge=1, le=100)
    reminder_retry_base_s: float = Field(30.0, gt=0)
    reminder_retry_cap_s: float = Field(3600.0, gt=0)
    reminder_event_gap_wait_s: float = Field(60.0, ge=0)
    reminder_sms_per_minute_max: int = Field(600, ge=1)
    reminder_email_per_minute_max: int = Field(600, ge=1)
    reminder_push_per_minute_max: int = Field(1200, ge=1)
    push_timeout_s: float = Field(10.0, gt=0, le=120)
    push_ttl_s: int = Field(86_400, ge=0, le=2_419_200)
    fleet_policy_lease_s: float = Field(300.0, gt=0)
    # Usage (issue 11): records written per transaction, records one signed request may carry,
    # bad lines listed in a summary, the largest record, how far in the future a record's time
    # and a signature's may be (and how old a signature), the share of a period's quota that is
    # "low", cards whose data bar the network is told of per batch and the wait after a refusal,
    # and lifecycle batches per worker pass (each lifecycle_batch_size cards). A usage batch
    # debits each of its cards once (the fewer batches, the fewer debits) and holds their locks
    # while it is written (a few seconds for 250,000 records on PostgreSQL here).
    usage_batch_size: int = Field(250_000, ge=1, le=1_000_000)
    # A request's body may take this many records of the longest fields (512 bytes each).
    usage_records_per_request_max: int = Field(1000, ge=1, le=10_000)
    usage_problems_kept_max: int = Field(1000, ge=1, le=100_000)
    usage_data_used_mb_max: int = Field(1_048_576, ge=1)
    usage_future_skew_s: int = Field(300, ge=0, le=86_400)
    usage_signature_tolerance_s: int = Field(300, ge=1, le=3600)
    data_low_percent: int = Field(20, ge=0, le=100)
    data_access_batch_size: int = Field(200, ge=1, le=10_000)
    data_access_retry_s: float = Field(60.0, gt=0)
    lifecycle_batches_per_pass_max: int = Field(100, ge=1, le=100_000)
    # Auto-renewal (issue 11): a period is charged auto_renewal_lead_s before validity ends,
    # pre-checked auto_renewal_precheck_early_s and ..._late_s before that charge; a declined
    # charge is tried again after base, 2 x base, ... (at most cap) while validity lasts, at most
    # auto_renewal_tries_max times in all.
    auto_renewal_lead_s: int = Field(43_200, ge=0, le=30 * 86_400)
    auto_renewal_precheck_early_s: int = Field(259_200, ge=1, le=60 * 86_400)
    auto_renewal_precheck_late_s: int = Field(86_400, ge=1, le=60 * 86_400)
    auto_renewal_tries_max: int = Field(4, ge=1, le=20)
    auto_renewal_retry_base_s: int = Field(1800, ge=1)
    auto_renewal_retry_cap_s: int = Field(14_400, ge=1)
    auto_renewal_batch_size: int = Field(100, ge=1, le=10_000)
    auto_renewal_lease_s: int = Field(300, ge=1)
    auto_renewal_recheck_s: int = Field(600, ge=1)
    auto_top_ups_per_month_max: int = Field(31, ge=1, le=1000)
    auto_renewals_listed_days_max: int = Field(366, ge=1, le=3660)

    def by_concern(self) -> Limits:
        values = self.model_dump()
        groups = {
            name: group(**{field.name: values.pop(field.name) for field in fields(group)})
            for name, group in GROUPS.items()
        }
        if values:
            raise InvariantError(f"limits in no group of topup.limits: {sorted(values)}")
        return Limits(**groups)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOPUP_", extra="ignore")

    database_url: str = "sqlite:///var/topup.sqlite3"
    profile: str = "my"
    methods_file: str = (
        ""  # the operator's payment methods (TOML); empty: the profile's shipped ones
    )
    secret_key: str = ""  # Fernet key; generated into var/secret.key for the demo when empty
    secret_key_file: str = "var/secret.key"  # noqa: S105 - a path, not a secret
    # The secret the network's mediation system signs usage records with (HMAC-SHA256); empty:
    # generated once by `topup init` into usage_secret_file (mode 0600), to give the network.
    usage_secret: str = ""
    usage_secret_file: str = "var/usage-mediation.key"  # noqa: S105 - a path, not a secret
    gateway: str = "sandbox"
    gateway_latency_s: float = Field(0.05, ge=0)
    gateway_fault_rate: float = Field(0.0, ge=0, le=1)
    gateway_settlement_delay_s: int = Field(120, ge=0)
    wallet_approval_delay_s: float = Field(2.0, ge=0)  # sandbox e-wallet: the payer approves
    # Where the sandbox card gateway journals what it settles (`topup sandbox-settlement`);
    # empty: no journal.
    sandbox_journal: str = "var/sandbox-settlements.jsonl"
    # Auto-renewal (issue 11): the sandbox card gateway's revoked tokens (digests, one a line;
    # `topup sandbox-revoke-token`); empty: none can be revoked.
    sandbox_revoked_tokens: str = "var/sandbox-revoked-tokens.txt"
    # Where the sandbox e-wallet posts its webhooks, like a real provider: the base address of a
    # `topup serve` (e.g. http://127.0.0.1:8000). Empty: straight to the handler, in-process.
    sandbox_webhook_url: str = ""
    network_delay_s: float = Field(2.0, ge=0)
    network_latency_s: float = Field(0.05, ge=0)
    network_transient_failure_rate: float = Field(0.0, ge=0, le=1)
    network_permanent_failure_rate: float = Field(0.0, ge=0, le=1)
    sandbox_seed: int = 0
    # `topup serve`: container allocations between two young-generation garbage collections
    # (Python's default is 700; the server's pauses for collection set its latency tail).
    server_gc_gen0_threshold: int = Field(10_000, ge=100, le=1_000_000)
    # The sandbox SMS provider (one-time codes to link a card): its latency, the fraction of
    # messages it fails, and the file it appends each message to, as a JSON line, for the demo
    # user to read (`topup sandbox-sms`); empty: memory only.
    sms_latency_s: float = Field(0.05, ge=0)
    sms_failure_rate: float = Field(0.0, ge=0, le=1)
    sandbox_sms_outbox: str = "var/sandbox-sms.jsonl"
    # E-mail (receipts, card-number recovery): through the SMTP server of TOPUP_SMTP_URL
    # (smtp://user:password@host:587, smtps://host:465); without it, each message is written as
    # an .eml file into mail_outbox for the demo user to read; both empty: kept in memory (tests).
    smtp_url: str = ""
    smtp_timeout_s: float = Field(10.0, gt=0, le=300)
    mail_from: str = "topup <no-reply@topup.example>"
    mail_outbox: str = "var/outbox"
    # Where subscribers reach the web site: links e-mailed to them (confirming a sign-up,
    # resetting a password) start with it. No trailing slash needed.
    public_url: str = "http://127.0.0.1:8000"
    # Fonts for PDF receipts, tried in order (separated by the OS path separator); empty: the
    # usual places of Noto CJK, WenQuanYi, Droid and DejaVu fonts. No font: Latin-1 and English.
    receipt_font_paths: str = ""
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks, separated by
    # commas): the client is the last address it names that is not one of them. Empty: none, the
    # peer of the connection is the client.
    trusted_proxies: str = ""
    # Redis (redis://host:port/db) shared by every server process for rate limits; empty: each
    # process counts in its own memory.
    redis_url: str = ""
    # Web Push (reminders to the installed app): the VAPID key pair, made by `topup init` into
    # this file (mode 0600) when missing, and the contact the push services are given.
    vapid_private_key_file: str = "var/vapid-private.pem"
    vapid_subject: str = "mailto:no-reply@topup.example"

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        parse_trusted_proxies(value)  # a ValueError names the entry that is not one
        return value
