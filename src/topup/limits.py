"""The bounds the services work within (STYLE.md rule 7), grouped by concern.

Values come from ``topup.settings.LimitSettings`` (one flat ``TOPUP_*`` variable each, checked
there) through bootstrap; the services see only these frozen groups, never the settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PaymentLimits:
    """Talking to gateways, checking payments whose outcome is unknown, payment passwords."""

    gateway_timeout_s: float
    charge_send_attempts_max: int
    payment_check_attempts_max: int
    payment_check_base_s: float
    payment_check_cap_s: float
    payment_staff_recheck_s: float
    requires_action_timeout_s: float
    payment_password_attempts_max: int
    payment_password_lock_s: float  # also how long wrong answers count
    payment_password_length_max: int


@dataclass(frozen=True, slots=True)
class ActivationLimits:
    """Applying paid renewals on the network, refunding them, e-mailing receipts."""

    network_timeout_s: float
    activation_attempts_max: int
    activation_backoff_base_s: float
    activation_backoff_cap_s: float
    activation_deadline_s: float
    activation_typical_delay_s: int
    activation_late_after_s: int
    refund_attempts_max: int
    receipt_attempts_max: int
    refund_reason_length_max: int


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """The worker's leases, batches, concurrency and pauses."""

    job_lease_s: float
    worker_batch_size: int
    worker_concurrency: int
    worker_idle_sleep_s: float
    worker_error_pause_cap_s: float
    lifecycle_batch_size: int
    lifecycle_interval_s: float


@dataclass(frozen=True, slots=True)
class WriteLimits:
    """Group commit: renewals written in one transaction, and such transactions at once."""

    write_batch_size_max: int
    write_batches_in_flight_max: int


@dataclass(frozen=True, slots=True)
class PageLimits:
    """The most rows one listing returns."""

    list_limit_max: int
    history_limit_max: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per client address, and per account or API key, per window."""

    card_lookup_per_minute_max: int
    recovery_per_hour_max: int
    login_per_minute_max: int
    confirm_per_minute_max: int
    sms_codes_per_hour_max: int


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """Sign-in attempts before a lock, the lock, the slow-down and how long a sign-in lasts (a
    web session: its absolute and idle timeouts)."""

    login_failures_max: int
    login_lock_s: int
    access_token_lifetime_s: int
    login_slowdown_s: float
    web_session_lifetime_s: int  # a signed-in web session ends this long after sign-in
    web_session_idle_s: int  # ...or this long after its last request


@dataclass(frozen=True, slots=True)
class IdempotencyLimits:
    """How long a key's first answer is replayed, and how long an unfinished request holds it."""

    idempotency_replay_s: int
    idempotency_lease_s: int


@dataclass(frozen=True, slots=True)
class MailLimits:
    """E-mails under way in the background at once; more are dropped with a log line."""

    mailings_in_flight_max: int


@dataclass(frozen=True, slots=True)
class FleetLimits:
    """Enterprise fleets: bulk renewals (lines per run, lines leased at once, renewals in flight
    against the gateway, leases), the fleet page and its exports, invoices."""

    bulk_lines_max: int
    bulk_batch_size: int
    bulk_concurrency: int
    bulk_line_lease_s: float
    bulk_waiting_recheck_s: float
    bulk_activation_recheck_s: float  # a line whose renewal is being applied: first look again
    bulk_renewed_recently_s: float  # a card on a bulk renewal this recently: not again unasked
    bulk_line_attempts_max: int
    fleet_page_size: int
    fleet_near_expiry_days: int
    fleet_export_rows_max: int
    invoice_renewals_max: int
    bulk_upload_bytes_max: int  # a CSV uploaded (or lines pasted) on the bulk renewal page
    fleet_policy_batch_size: int  # cards read at once while a fleet-wide policy is applied
    fleet_policy_cards_max: int  # cards one "apply the policy" request reaches
    fleet_policy_lease_s: float  # a worker applies a batch of a policy request for this long


@dataclass(frozen=True, slots=True)
class ReminderLimits:
    """Reminders (issue 11): batches, leases, retries, and sending rates per provider (over the
    rate a message waits; it is never dropped)."""

    reminder_batch_size: int
    reminder_batches_per_pass_max: int
    reminder_interval_s: float
    reminder_lease_s: float
    reminder_send_attempts_max: int
    reminder_retry_base_s: float
    reminder_retry_cap_s: float
    reminder_event_gap_wait_s: float
    reminder_sms_per_minute_max: int
    reminder_email_per_minute_max: int
    reminder_push_per_minute_max: int
    push_timeout_s: float
    push_ttl_s: int


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """Usage records (issue 11): records per transaction and per signed request, the largest
    record, how far ahead of our clock and how old a signature may be, the low-data threshold,
    the network's data bar, and how many lifecycle batches one pass of the worker runs."""

    usage_batch_size: int
    usage_records_per_request_max: int
    usage_problems_kept_max: int
    usage_data_used_mb_max: int
    usage_future_skew_s: int
    usage_signature_tolerance_s: int
    data_low_percent: int
    data_access_batch_size: int
    data_access_retry_s: float
    lifecycle_batches_per_pass_max: int


@dataclass(frozen=True, slots=True)
class AutoRenewalLimits:
    """Auto-renewal (issue 11): when a period is charged, pre-checked and tried again, and how
    many cards the worker takes at once."""

    auto_renewal_lead_s: int  # charge this long before validity ends
    auto_renewal_precheck_early_s: int  # first pre-check this long before the charge
    auto_renewal_precheck_late_s: int  # second pre-check this long before the charge
    auto_renewal_tries_max: int  # charges of one period (each after the last was declined)
    auto_renewal_retry_base_s: int  # backoff after the first declined try, doubling
    auto_renewal_retry_cap_s: int
    auto_renewal_batch_size: int  # cards leased by one pass
    auto_renewal_lease_s: int  # a leased card is hidden from other workers this long
    auto_renewal_recheck_s: int  # look again this soon at a charge still under way
    auto_top_ups_per_month_max: int  # whatever a card's own cap says
    auto_renewals_listed_days_max: int  # `topup auto-renewals --days`: how far ahead it looks


@dataclass(frozen=True, slots=True)
class Limits:
    payments: PaymentLimits
    activation: ActivationLimits
    worker: WorkerLimits
    writes: WriteLimits
    pages: PageLimits
    rates: RateLimits
    accounts: AccountLimits
    idempotency: IdempotencyLimits
    mail: MailLimits
    fleets: FleetLimits
    reminders: ReminderLimits
    usage: UsageLimits
    auto_renewal: AutoRenewalLimits


GROUPS: dict[str, type] = {
    "payments": PaymentLimits,
    "activation": ActivationLimits,
    "worker": WorkerLimits,
    "writes": WriteLimits,
    "pages": PageLimits,
    "rates": RateLimits,
    "accounts": AccountLimits,
    "idempotency": IdempotencyLimits,
    "mail": MailLimits,
    "fleets": FleetLimits,
    "reminders": ReminderLimits,
    "usage": UsageLimits,
    "auto_renewal": AutoRenewalLimits,
}
