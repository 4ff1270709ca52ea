"""A fleet-wide auto-renewal policy: an owner or admin turns auto-renewal on for every card of
the organisation, with one plan for all or a plan per card kind, paid by the organisation's
saved payment card (the one bulk renewals are charged to).

Asking writes a durable **policy request** (``request_fleet_policy``; one runs at a time per
organisation) and returns at once: a fleet of thousands of cards is not set inside a web
request. The worker's pass ``fleet policies`` (``process_policy_requests``) leases running
requests and applies the next ``fleet_policy_batch_size`` cards of each: it is
``auto_renewal.set_auto_renewal`` card by card (``SetBy`` the organisation), and the request's
counts move with each batch, so its page shows how far it is. A card that has the same policy
already is left as it is and counted ``already``, so a batch a killed worker left half done is
simply done again once its lease (``fleet_policy_lease_s``) ends. A request reaches at most
``fleet_policy_cards_max`` cards. A card the policy cannot apply to (a postpaid card, a plan not
sold to it) is counted with its error code (the first ones listed) and the others are set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from topup.domain.auto_renewal import AutoRenewal, PaymentSource, SetterKind
from topup.domain.cards import CardKind
from topup.domain.errors import ConflictError, InputError, TopupError
from topup.domain.fleets import (
    FleetFilter,
    PolicyRefusal,
    PolicyRequest,
    PolicyRequestStatus,
    error_params_kept,
)
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.services.auto_renewal import PaymentChoice, SetBy, set_auto_renewal
from topup.services.context import Services
from topup.services.fleets.bulk import (
    BULK_CHANNEL,
    organisation_payment_card,
    payment_card_missing,
)
from topup.services.fleets.organisations import manager, membership, organisation_unknown

REFUSALS_LISTED_MAX = 50  # cards a request names one by one; the rest are counted
POLICY_REQUESTS_PER_PASS = 8  # requests one pass of the worker moves on by a batch each


@dataclass(frozen=True)
class PolicyChoice:
    """The plan for each card kind (a kind left out is left alone)."""

    plans: Mapping[CardKind, str] = field(default_factory=dict)

    @staticmethod
    def one_plan(plan_code: str) -> PolicyChoice:
        return PolicyChoice({kind: plan_code for kind in CardKind})


def _no_plan_chosen() -> InputError:
    return InputError(
        "choose the plan the fleet's cards renew with",
        code="fleet_policy_plan_missing",
        field="plan",
        params={},
    )


def _running() -> ConflictError:
    return ConflictError(
        "the fleet's auto-renewal policy is being applied; apply another once it has finished",
        code="fleet_policy_running",
        field="plan",
        params={},
    )


def _same(setting: AutoRenewal | None, plan_code: str, organisation_id: str, saved: str) -> bool:
    return (
        setting is not None
        and setting.enabled
        and setting.plan_code == plan_code
        and setting.payment is PaymentSource.SAVED_PAYMENT_CARD
        and setting.saved_payment_card_id == saved
        and setting.set_by is SetterKind.ORGANISATION
        and setting.set_by_id == organisation_id
    )


async def request_fleet_policy(
    services: Services, account_id: str, organisation_id: str, choice: PolicyChoice
) -> PolicyRequest:
    """Ask the worker to turn auto-renewal on for the organisation's cards (owners and admins);
    see the module. One runs at a time per organisation (``fleet_policy_running``)."""
    plans = {kind.value: code.strip()[:64] for kind, code in choice.plans.items() if code.strip()}
    if not plans:
        raise _no_plan_chosen()
    limits = services.limits.fleets
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
        if organisation is None:
            raise organisation_unknown()
        if organisation.payment_card_id is None or organisation.payment_card_account_id is None:
            raise payment_card_missing()
        total = await uow.organisations.count_cards(organisation_id, FleetFilter())
        request = PolicyRequest(
            id=services.new_id(),
            organisation_id=organisation_id,
            requested_by=account_id,
            plans=plans,
            status=PolicyRequestStatus.RUNNING,
            cards_total=min(total, limits.fleet_policy_cards_max),
            created_at=services.clock.now(),
        )
        if not await uow.policy_requests.add(request):
            raise _running()
        await uow.commit()
    return request


async def latest_policy_request(
    services: Services, account_id: str, organisation_id: str
) -> PolicyRequest | None:
    """The organisation's newest policy request, running or finished (any member)."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        return await uow.policy_requests.latest_of(organisation_id)


def _finished(
    request: PolicyRequest, at: dt.datetime, error_code: str | None = None
) -> PolicyRequest:
    return replace(
        request,
        status=PolicyRequestStatus.FINISHED,
        finished_at=at,
        error_code=error_code or request.error_code,
    )


async def _apply_batch(services: Services, request: PolicyRequest) -> PolicyRequest:
    """The next ``fleet_policy_batch_size`` cards of the request, set card by card (each its
    own transaction, in ``set_auto_renewal``); the request as it stands after them."""
    limits = services.limits.fleets
    now = services.clock.now()
    organisation_id = request.organisation_id
    async with services.unit_of_work() as uow:
        organisation = await uow.organisations.get(organisation_id)
        size = min(limits.fleet_policy_batch_size, request.cards_total - request.reached)
        cards = (
            await uow.organisations.fleet_cards_after(
                organisation_id, after_card_id=request.reached_card_id, limit=size
            )
            if size > 0
            else []
        )
        settings = await uow.auto_renewals.of_cards([card.id for card in cards])
    if organisation is None:
        return _finished(request, now, "organisation_unknown")
    saved_id, payer_id = organisation.payment_card_id, organisation.payment_card_account_id
    if saved_id is None or payer_id is None:  # taken away since: nothing more is set
        return _finished(request, now, "organisation_payment_card_missing")
    payment = PaymentChoice.saved_card(payer_id, saved_id)
    set_by = SetBy(SetterKind.ORGANISATION, organisation_id)
    counts = {"applied": 0, "already": 0, "left_alone": 0, "refused": 0}
    refusals = list(request.refusals)
    for card in cards:
        plan_code = request.plans.get(card.kind.value)
        if plan_code is None:
            counts["left_alone"] += 1
        elif _same(settings.get(card.id), plan_code, organisation_id, saved_id):
            counts["already"] += 1
        else:
            try:
                await set_auto_renewal(
                    services,
                    card_id=card.id,
                    plan_code=plan_code,
                    payment=payment,
                    set_by=set_by,
                    channel=BULK_CHANNEL,
                )
                counts["applied"] += 1
            except TopupError as error:
                counts["refused"] += 1
                if len(refusals) < REFUSALS_LISTED_MAX:
                    params = error_params_kept(error.params)
                    refusals.append(PolicyRefusal(card.msisdn, error.code, params))
    moved = replace(
        request,
        reached=request.reached + len(cards),
        reached_card_id=cards[-1].id if cards else request.reached_card_id,
        applied=request.applied + counts["applied"],
        already=request.already + counts["already"],
        left_alone=request.left_alone + counts["left_alone"],
        refused=request.refused + counts["refused"],
        refusals=tuple(refusals),
    )
    if len(cards) < size or size <= 0 or moved.reached >= moved.cards_total:
        return _finished(moved, services.clock.now())  # every card reached (or the fleet shrank)
    return moved


async def process_policy_requests(services: Services) -> int:
    """The worker's pass: lease up to ``POLICY_REQUESTS_PER_PASS`` running requests and apply
    the next batch of cards of each. Returns how many requests moved."""
    limits = services.limits.fleets
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        leased = await uow.policy_requests.lease(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.fleet_policy_lease_s),
            limit=POLICY_REQUESTS_PER_PASS,
        )
        await uow.commit()
    moved = 0
    for request in leased:
        after = await _apply_batch(services, request)
        async with services.unit_of_work() as uow:
            saved = await uow.policy_requests.save_progress(
                after, reached_before=request.reached, at=services.clock.now()
            )
            await uow.commit()
        moved += int(saved)
    return moved


@dataclass(frozen=True)
class CardAutoRenewal:
    """What a fleet page shows of a card's auto-renewal."""

    enabled: bool
    plan_code: str
    by_organisation: bool  # set by the fleet's policy (else by the card's own subscriber)


async def auto_renewals_of(
    services: Services, account_id: str, organisation_id: str, card_ids: Sequence[str]
) -> dict[str, CardAutoRenewal]:
    """The auto-renewal of each of these cards of the organisation (any member), by card id."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        owners = await uow.organisations.owners_of_cards(list(card_ids))
        mine = [card_id for card_id in card_ids if owners.get(card_id) == organisation_id]
        found = await uow.auto_renewals.of_cards(mine)
    return {
        card_id: CardAutoRenewal(
            enabled=setting.enabled,
            plan_code=setting.plan_code,
            by_organisation=setting.set_by is SetterKind.ORGANISATION
            and setting.set_by_id == organisation_id,
        )
        for card_id, setting in found.items()
    }


async def payment_card_of(
    services: Services, account_id: str, organisation_id: str
) -> SavedPaymentCard | None:
    """The saved payment card bulk renewals and the policy are charged to (any member)."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        return await organisation_payment_card(uow, organisation_id)


async def policy_counts(services: Services, account_id: str, organisation_id: str) -> int:
    """How many of the organisation's cards have auto-renewal on by its policy (at most
    ``fleet_policy_cards_max`` looked at)."""
    limits = services.limits.fleets
    counted = looked_at = 0
    after: str | None = None
    while looked_at < limits.fleet_policy_cards_max:
        async with services.unit_of_work() as uow:
            await membership(uow, organisation_id, account_id)
            cards = await uow.organisations.fleet_cards_after(
                organisation_id, after_card_id=after, limit=limits.fleet_policy_batch_size
            )
            settings = await uow.auto_renewals.of_cards([card.id for card in cards])
        if not cards:
            break
        looked_at += len(cards)
        after = cards[-1].id
        counted += sum(
            1
            for setting in settings.values()
            if setting.enabled
            and setting.set_by is SetterKind.ORGANISATION
            and setting.set_by_id == organisation_id
        )
    return counted
