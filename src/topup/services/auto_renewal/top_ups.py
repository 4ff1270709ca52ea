"""Auto top-up: when a card's data falls below its threshold, buy the top-up plan, within the
month's caps, once per crossing of the threshold.

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
from topup.domain.renewal import RenewalStatus
from topup.services.auto_renewal.credit import pay_with_credit
from topup.services.auto_renewal.settings import fix_path, method_label
from topup.services.context import Services
from topup.services.renewals import RenewalRequest, renew
from topup.services.saved_payment_cards import method_for

PAID = (RenewalStatus.ACTIVATING, RenewalStatus.COMPLETED)
UNPAID_CLOSED = (RenewalStatus.DECLINED, RenewalStatus.CANCELLED, RenewalStatus.REFUNDED)


async def run_auto_top_ups(services: Services) -> int:
    """Cards whose top-up rule must fire (data below the threshold, armed) or re-arm, a batch
    at a time. Returns how many were looked at."""
    async with services.unit_of_work() as uow:
        due = await uow.auto_renewals.top_ups_due(
            limit=services.limits.auto_renewal.auto_renewal_batch_size
        )
    for setting, card in due:
        await top_up_if_due(services, setting, card)
    return len(due)


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
        top_up = AutoTopUp(card.id, crossing, key, plan.code, plan.price, status, None, now)
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
