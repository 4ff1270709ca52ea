"""Which payment methods a payer may use for a renewal, asked before paying (R4, R7c, R10).

Only methods topup takes itself are offered (``ONLINE_KINDS``): cash is configured for stores but
not offered until the store console records it, since a renewal would refuse it."""

from __future__ import annotations

from topup.domain.cards import check_renewable
from topup.domain.errors import NotFoundError
from topup.services.context import Services
from topup.services.renewals import amount_due, check_channel, find_card
from topup.services.views import MethodsOffer

__all__ = ["MethodsOffer", "offered_methods"]


async def offered_methods(
    services: Services, *, card_number: str, plan_code: str, channel: str, region: str | None
) -> MethodsOffer:
    """The methods a payer may choose to renew this card with this plan, here."""
    check_channel(channel)
    registry = services.methods
    registry.check_region(channel=channel, region=region)
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
        plan = await uow.plans.get(plan_code)
    if plan is None:
        raise NotFoundError(
            f"there is no plan {plan_code!r}",
            code="plan_unknown",
            field="plan",
            params={"plan": plan_code},
        )
    plan.check_can_buy(card_kind=card.kind, channel=channel, at=now)
    check_renewable(card, now, services.profile.grace_period_days)
    amount = amount_due(card, plan.kind, plan.price)
    methods = registry.offered(channel=channel, region=region, amount=amount)
    reason = None
    if not methods:
        anywhere = registry.offered(channel=channel, region=region)
        reason = (
            f"no payment method offered here takes {amount}"
            if anywhere
            else "no payment method is offered here"
        )
    return MethodsOffer(
        channel=channel, region=region, amount=amount, methods=methods, reason=reason
    )
