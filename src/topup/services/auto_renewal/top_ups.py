"""Auto top-up: when a card's data falls below its threshold, buy the top-up plan, within the
month's caps, once per crossing of the threshold.

A top-up pending at the PSP counts against the caps until its outcome is known;
``settle_top_ups`` records it (bought, or failed and no longer counted), as it does a top-up
that was paid and then refunded (its activation failed).

A crossing is numbered (the settings' ``top_ups`` + 1) and is one ``auto_top_ups`` row (primary
key card and crossing) and one renewal with the key ``autotopup:<card>:<crossing>``: two workers,
or one worker twice, buy it once. The rule re-arms when the quota is back at or above the
threshold (the top-up's activation, or a renewal through any channel)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from topup.domain.auto_renewal import (
    AutoRenewal,
    AutoTopUp,
    PaymentSource,
    TopUpStatus,
    month_start,
    top_up_allowed,
    top_up_key,
)
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardStatus
from topup.domain.errors import TopupError
from topup.domain.money import Money
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RenewalStatus
from topup.services.auto_renewal.credit import pay_with_credit
from topup.services.auto_renewal.runs import paying_organisation
from topup.services.auto_renewal.settings import fix_path, method_label
from topup.services.context import Services
from topup.services.renewals import RenewalRequest, renew
from topup.services.saved_payment_cards import method_for

PAID = (RenewalStatus.ACTIVATING, RenewalStatus.COMPLETED)
UNPAID_CLOSED = (RenewalStatus.DECLINED, RenewalStatus.CANCELLED, RenewalStatus.REFUNDED)


async def run_auto_top_ups(services: Services) -> int:
    """Cards whose top-up rule must fire (data below the threshold, armed) or re-arm, a batch
    at a time, then the outcomes of top-ups that were pending (``settle_top_ups``). Returns how
    many were looked at."""
    async with services.unit_of_work() as uow:
        due = await uow.auto_renewals.top_ups_due(
            limit=services.limits.auto_renewal.auto_renewal_batch_size
        )
    for setting, card in due:
        await top_up_if_due(services, setting, card)
    return len(due) + await settle_top_ups(services)


async def settle_top_ups(services: Services) -> int:
    """Record how top-ups that were still under way ended, a batch at a time: a renewal pending
    at the PSP that was paid is ``bought``; one declined or cancelled, never sent (the worker
    died before sending it), or paid and then refunded is ``failed`` (or ``refunded``) and no
    longer counts against the month's caps. Each outcome is one ``auto_top_up`` event, written
    by the transaction that moves the top-up from its status (two workers record it once).
    Returns how many outcomes were recorded."""
    now = services.clock.now()
    limits = services.limits.auto_renewal
    zone = ZoneInfo(services.profile.time_zone)
    # A top-up younger than a lease may still be on its way to the gateway.
    started_before = now - dt.timedelta(seconds=limits.auto_renewal_lease_s)
    async with services.unit_of_work() as uow:
        unsettled = await uow.auto_renewals.unsettled_top_ups(
            started_before=started_before,
            refunded_since=month_start(now.astimezone(zone)).astimezone(dt.UTC),
            limit=limits.auto_renewal_batch_size,
        )
    settled = 0
    for top_up in unsettled:
        settled += await _settle(services, top_up, started_before)
    return settled


def _ending(
    top_up: AutoTopUp, renewal: RenewalRecord | None, started_before: dt.datetime
) -> tuple[TopUpStatus, str, str | None] | None:
    """(new status, outcome, problem) of an unsettled top-up, or None while it is under way."""
    if top_up.status is TopUpStatus.SUCCEEDED:
        if renewal is not None and renewal.status is RenewalStatus.REFUNDED:
            return TopUpStatus.FAILED, "refunded", "refunded"
        return None
    if renewal is None:
        return (TopUpStatus.FAILED, "failed", "not_sent") if top_up.at < started_before else None
    if renewal.status in PAID:
        return TopUpStatus.SUCCEEDED, "bought", None
    if renewal.status in UNPAID_CLOSED:
        return TopUpStatus.FAILED, "failed", renewal.decline_code or renewal.status.value
    return None  # still pending: the payment checks ask the gateway


async def _settle(services: Services, top_up: AutoTopUp, started_before: dt.datetime) -> int:
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        renewal = await uow.renewals.by_idempotency_key(top_up.renewal_key)
        ending = _ending(top_up, renewal, started_before)
        if ending is None:
            return 0
        status, outcome, problem = ending
        if not await uow.auto_renewals.update_top_up(
            top_up.card_id,
            top_up.crossing,
            status=status,
            renewal_id=None if renewal is None else renewal.id,
            only_if=top_up.status,
        ):
            return 0  # another worker recorded it
        card = await uow.cards.get(top_up.card_id)
        setting = await uow.auto_renewals.get(top_up.card_id)
        if card is None or setting is None:
            await uow.commit()
            return 1
        detail: dict[str, str | int] = {
            "period": validity_period(card),
            "plan_code": top_up.plan_code,
            "amount_minor": top_up.amount.minor,
            "currency": top_up.amount.currency,
            "method": await method_label(uow, setting),
            "data_quota_mb": card.data_quota_mb,
            "crossing": top_up.crossing,
            "fix_path": fix_path(card.id),
            "outcome": outcome,
        }
        if setting.top_up is not None:
            detail["below_mb"] = setting.top_up.below_mb
        if problem:
            detail["problem"] = problem
        if renewal is not None:
            detail["renewal_id"] = renewal.id
        await uow.cards.add_event(
            card_id=card.id, kind=CardEventKind.AUTO_TOP_UP.value, at=now, detail=detail
        )
        await uow.commit()
    return 1


async def top_up_if_due(services: Services, setting: AutoRenewal, card: Card) -> str | None:
    """Fire or re-arm the card's rule; what happened (``bought``, ``capped``, ``failed``,
    ``pending``, ``armed``), or None if nothing."""
    rule = setting.top_up
    if rule is None or not setting.enabled or card.status is CardStatus.EXPIRED:
        return None
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        current = await uow.auto_renewals.get(card.id, for_update=True)
        fresh = await uow.cards.get(card.id)
        if current is None or fresh is None or current.top_up is None or not current.enabled:
            return None
        below = fresh.data_quota_mb < current.top_up.below_mb
        if not below:
            if current.top_up_armed:
                return None
            await uow.auto_renewals.set_top_up_state(card.id, armed=True, top_ups=current.top_ups)
            await uow.commit()
            return "armed"
        if not current.top_up_armed:
            return None
        plan = await uow.plans.get(current.top_up.plan_code)
        if plan is None:
            return None
        crossing = current.top_ups + 1
        zone = ZoneInfo(services.profile.time_zone)
        since = month_start(now.astimezone(zone)).astimezone(dt.UTC)
        count, spent = await uow.auto_renewals.top_ups_since(card.id, since=since)
        allowed = (
            top_up_allowed(
                current.top_up,
                count_this_month=min(
                    count, services.limits.auto_renewal.auto_top_ups_per_month_max
                ),
                spent_this_month=Money(spent, plan.price.currency),
                price=plan.price,
            )
            and count < services.limits.auto_renewal.auto_top_ups_per_month_max
        )
        status = TopUpStatus.STARTED if allowed else TopUpStatus.CAPPED
        key = top_up_key(card.id, crossing)
        paid_by = await paying_organisation(uow, current)
        top_up = AutoTopUp(
            card.id, crossing, key, plan.code, plan.price, status, None, now, paid_by
        )
        if not await uow.auto_renewals.add_top_up(top_up):
            return None
        await uow.auto_renewals.set_top_up_state(card.id, armed=False, top_ups=crossing)
        method = await method_label(uow, current)
        detail: dict[str, str | int] = {
            "period": validity_period(fresh),
            "plan_code": plan.code,
            "amount_minor": plan.price.minor,
            "currency": plan.price.currency,
            "method": method,
            "data_quota_mb": fresh.data_quota_mb,
            "below_mb": current.top_up.below_mb,
            "crossing": crossing,
            "fix_path": fix_path(card.id),
        }
        if not allowed:
            detail["outcome"] = "capped"
            await uow.cards.add_event(
                card_id=card.id, kind=CardEventKind.AUTO_TOP_UP.value, at=now, detail=detail
            )
        await uow.commit()
    if not allowed:
        return "capped"
    outcome, renewal_id, code = await _buy(services, current, fresh, plan.code, key)
    async with services.unit_of_work() as uow:
        if outcome != "pending":
            await uow.auto_renewals.update_top_up(
                card.id,
                crossing,
                status=TopUpStatus.SUCCEEDED if outcome == "bought" else TopUpStatus.FAILED,
                renewal_id=renewal_id,
            )
        else:
            await uow.auto_renewals.update_top_up(
                card.id, crossing, status=TopUpStatus.STARTED, renewal_id=renewal_id
            )
        detail["outcome"] = outcome
        if code:
            detail["problem"] = code
        if renewal_id:
            detail["renewal_id"] = renewal_id
        await uow.cards.add_event(
            card_id=card.id, kind=CardEventKind.AUTO_TOP_UP.value, at=now, detail=detail
        )
        await uow.commit()
    return outcome


async def _buy(
    services: Services, setting: AutoRenewal, card: Card, plan_code: str, key: str
) -> tuple[str, str | None, str | None]:
    """(outcome, renewal id, refusal code) of buying the top-up plan under ``key``."""
    try:
        if setting.payment is PaymentSource.CREDIT:
            renewal = await pay_with_credit(
                services, card_id=card.id, plan_code=plan_code, key=key, channel=setting.channel
            )
        else:
            async with services.unit_of_work() as uow:
                saved = (
                    await uow.saved_payment_cards.get(
                        setting.payment_account_id, setting.saved_payment_card_id
                    )
                    if setting.payment_account_id and setting.saved_payment_card_id
                    else None
                )
            if saved is None:
                return "failed", None, "payment_card_removed"
            view = await renew(
                services,
                RenewalRequest(
                    card_number=card.msisdn,
                    plan_code=plan_code,
                    payment=None,
                    channel=setting.channel,
                    idempotency_key=key,
                    method=method_for(saved.funding),
                    payment_token=services.tokens.open(saved.token_sealed),
                    merchant_initiated=True,
                ),
            )
            renewal = view.renewal
    except TopupError as error:
        return "failed", None, error.code
    if renewal.status in PAID:
        return "bought", renewal.id, None
    if renewal.status in UNPAID_CLOSED:
        return "failed", renewal.id, renewal.decline_code
    return "pending", renewal.id, None
