"""Deliver the reminders that are due, each delivery (reminder x channel) once.

A batch of deliveries is leased (claimed) in one transaction, so that another worker skips them
until the lease ends; each is then decided and sent, and its outcome written by the claim that
holds it, right after the send. What is decided before sending, in order:

- the card moved to another validity period (it was renewed, through any channel) and the kind
  is made moot by a renewal: **cancelled**, never sent;
- the card's channel is turned off, or there is nowhere to send (no e-mail, no push
  subscription, no provider): **skipped**;
- quiet hours on this channel: given back, due when they end;
- over the provider's rate (``RateLimiter``, across workers with Redis): given back, due when
  the window ends (never dropped).

The delivery's id goes to the provider as its idempotency key (the sandbox SMS honours it; push
gets it as its Topic and the notification's tag; e-mail as its Message-ID). A failed send is
tried again with backoff, up to ``reminder_send_attempts_max``, then **failed**.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from topup.domain.card_events import validity_period
from topup.domain.errors import TopupError
from topup.domain.reminders import (
    CANCELLED_BY_RENEWAL,
    Delivery,
    DeliveryStatus,
    Reminder,
    ReminderChannel,
    delivery_retry_s,
)
from topup.i18n import resolve_or_default
from topup.ports import PushOutcome, ReminderRecipient
from topup.services.context import Services
from topup.services.reminders import choices, texts

logger = logging.getLogger("topup.reminders")

RATE_WINDOW_S = 60  # the minute of the reminder_*_per_minute_max limits
SMS_LENGTH_MAX = 480  # the sandbox SMS provider's bound (a few segments)


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of one claimed delivery: finished with ``status``, or given back ``until``."""

    status: DeliveryStatus | None = None
    until: dt.datetime | None = None
    failed_attempt: bool = False
    error: str | None = None


async def send_due_deliveries(services: Services) -> int:
    """One batch of due deliveries; returns how many were finished or given back."""
    now = services.clock.now()
    limits = services.limits.reminders
    async with services.unit_of_work() as uow:
        claimed = await uow.reminders.claim_deliveries(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.reminder_lease_s),
            limit=limits.reminder_batch_size,
        )
        await uow.commit()
    if not claimed:
        return 0
    async with services.unit_of_work() as uow:
        reminders = await uow.reminders.reminders_by_id([d.reminder_id for d in claimed])
        card_ids = sorted({reminder.card_id for reminder in reminders.values()})
        recipients = await uow.reminders.recipients(card_ids)
        preferences = await uow.reminders.preferences(card_ids)
        plan_codes = {str(r.detail.get("plan_code", "")) for r in reminders.values()}
        plans = await uow.plans.get_many(sorted(code for code in plan_codes if code))
    concurrency = asyncio.Semaphore(services.limits.worker.worker_concurrency)

    async def one(delivery: Delivery) -> None:
        async with concurrency:
            reminder = reminders[delivery.reminder_id]
            names = {code: plan.names for code, plan in plans.items()}
            decision = await _decide_and_send(
                services,
                delivery,
                reminder,
                recipients.get(reminder.card_id),
                preferences,
                names,
            )
            await _record(services, delivery, reminder, decision)

    await asyncio.gather(*(one(delivery) for delivery in claimed))
    return len(claimed)


async def _record(
    services: Services, delivery: Delivery, reminder: Reminder, decision: Decision
) -> None:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        if decision.status is not None:
            held = await uow.reminders.finish_delivery(
                delivery, decision.status, at=now, error=decision.error
            )
        else:
            held = await uow.reminders.defer_delivery(
                delivery,
                until=decision.until or now,
                at=now,
                failed_attempt=decision.failed_attempt,
                error=decision.error,
            )
        if not held:
            # Our lease ran out and another claim took it: that claim writes the outcome (and,
            # if it sends again, the provider's idempotency key makes it the same message).
            logger.warning("delivery %s: lease lost before its outcome was written", delivery.id)
            return
        await uow.reminders.settle_reminders([reminder.id], at=now)
        await uow.commit()


def _preference(
    preferences: Mapping[tuple[str, str], bool], card_id: str, channel: ReminderChannel
) -> bool:
    return preferences.get((card_id, channel.value), True)


async def _decide_and_send(
    services: Services,
    delivery: Delivery,
    reminder: Reminder,
    recipient: ReminderRecipient | None,
    preferences: Mapping[tuple[str, str], bool],
    plan_names: Mapping[str, Mapping[str, str]],
) -> Decision:
    now = services.clock.now()
    if recipient is None:
        return Decision(DeliveryStatus.SKIPPED, error="card_missing")
    card = recipient.card
    if reminder.base_kind in CANCELLED_BY_RENEWAL and validity_period(card) != reminder.period:
        return Decision(DeliveryStatus.CANCELLED, error="renewed")
    channel = delivery.channel
    if not _preference(preferences, card.id, channel):
        return Decision(DeliveryStatus.SKIPPED, error="turned_off")
    nowhere = _nowhere(services, channel, recipient)
    if nowhere:
        return Decision(DeliveryStatus.SKIPPED, error=nowhere)
    profile = services.profile
    allowed = profile.reminders.send_at(channel, now, profile.time_zone)
    if allowed > now:
        return Decision(until=allowed, error="quiet_hours")
    limit = _rate_limit(services, channel)
    retry_after_s = await services.rate_limiter.hit(
        f"reminders_{channel.value}", "provider", limit=limit, window_s=RATE_WINDOW_S
    )
    if retry_after_s:
        return Decision(until=now + dt.timedelta(seconds=retry_after_s), error="rate_limited")
    locale = resolve_or_default(
        recipient.language or profile.default_locale, profile.default_locale
    )
    try:
        sent = await _send(services, delivery, reminder, recipient, locale, plan_names, now)
    except TopupError as error:
        return _failed(services, delivery, error, now)
    return Decision(
        DeliveryStatus.SENT if sent else DeliveryStatus.SKIPPED, error=None if sent else "push_gone"
    )


def _nowhere(services: Services, channel: ReminderChannel, recipient: ReminderRecipient) -> str:
    """Why this channel has nowhere to go for this card ("" if it has)."""
    if channel is ReminderChannel.SMS and services.sms is None:
        return "no_provider"
    if channel is ReminderChannel.EMAIL and (services.mailer is None or not recipient.email):
        return "no_address" if services.mailer is not None else "no_provider"
    if channel is ReminderChannel.PUSH and (services.push is None or recipient.push is None):
        return "no_subscription" if services.push is not None else "no_provider"
    return ""


def _rate_limit(services: Services, channel: ReminderChannel) -> int:
    limits = services.limits.reminders
    return {
        ReminderChannel.SMS: limits.reminder_sms_per_minute_max,
        ReminderChannel.EMAIL: limits.reminder_email_per_minute_max,
        ReminderChannel.PUSH: limits.reminder_push_per_minute_max,
    }[channel]


def _failed(
    services: Services, delivery: Delivery, error: TopupError, now: dt.datetime
) -> Decision:
    limits = services.limits.reminders
    attempts = delivery.attempts + 1
    if not error.retryable or attempts >= limits.reminder_send_attempts_max:
        return Decision(DeliveryStatus.FAILED, error=error.code)
    pause_s = delivery_retry_s(
        attempts, base_s=limits.reminder_retry_base_s, cap_s=limits.reminder_retry_cap_s
    )
    return Decision(
        until=now + dt.timedelta(seconds=pause_s), failed_attempt=True, error=error.code
    )


async def _send(
    services: Services,
    delivery: Delivery,
    reminder: Reminder,
    recipient: ReminderRecipient,
    locale: str,
    plan_names: Mapping[str, Mapping[str, str]],
    now: dt.datetime,
) -> bool:
    """Send the delivery; False if the push subscription is gone (it is forgotten)."""
    profile = services.profile
    card = recipient.card
    site = services.public_url.rstrip("/")
    names = {
        code: names.get(locale) or names.get("en") or code for code, names in plan_names.items()
    }
    facts = texts.facts_of(
        reminder,
        card,
        locale=locale,
        time_zone=profile.time_zone,
        grace_period_days=profile.grace_period_days,
        plan_names=names,
        now=now,
    )
    renew_link = (
        f"{site}/accounts/cards/{card.id}/renew" if recipient.account_id is not None else f"{site}/"
    )
    text = texts.reminder_text(reminder, facts, locale=locale, renew_link=renew_link, site=site)
    if delivery.channel is ReminderChannel.SMS and services.sms is not None:
        message = texts.sms_text(locale, text)
        if len(message) > SMS_LENGTH_MAX:
            message = texts.sms_text(
                locale, texts.ReminderText(text.headline, "", text.action, text.link)
            )
        await services.sms.send(card.msisdn, message[:SMS_LENGTH_MAX], idempotency_key=delivery.id)
        return True
    if delivery.channel is ReminderChannel.EMAIL and services.mailer is not None:
        token = choices.unsubscribe_token(services, card.id, ReminderChannel.EMAIL)
        page_link, one_click = choices.unsubscribe_links(services, token)
        body = texts.email_body(
            locale,
            text,
            number=facts.number,
            unsubscribe_link=page_link,
            preferences_link=site + texts.PREFERENCES_PAGE,
        )
        domain = services.public_url.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        headers = {
            "List-Unsubscribe": f"<{one_click}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Message-ID": f"<reminder-{delivery.id}@{domain or 'topup.invalid'}>",
            "Auto-Submitted": "auto-generated",
        }
        await services.mailer.send(recipient.email, text.headline, body, headers=headers)
        return True
    if delivery.channel is ReminderChannel.PUSH and services.push is not None:
        subscription = recipient.push
        if subscription is None:
            return False
        payload = json.dumps(
            {
                "title": text.headline,
                "body": text.body,
                "url": text.link,
                "tag": reminder.id,
                "lang": locale.replace("_", "-"),
            },
            ensure_ascii=False,
        ).encode()
        outcome = await services.push.send(
            subscription,
            payload,
            idempotency_key=delivery.id,
            ttl_s=services.limits.reminders.push_ttl_s,
        )
        if outcome is PushOutcome.GONE and recipient.account_id is not None:
            await choices.forget_gone_subscription(
                services, recipient.account_id, subscription.endpoint
            )
            return False
        return outcome is PushOutcome.SENT
    return False
