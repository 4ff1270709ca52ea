"""A fleet-wide auto-renewal policy: an owner or admin turns auto-renewal on for every card of
the organisation, with one plan for all or a plan per card kind, paid by the organisation's
saved payment card (the one bulk renewals are charged to).

It is ``auto_renewal.set_auto_renewal`` applied card by card (``SetBy`` the organisation), the
cards read in batches of ``fleet_policy_batch_size`` and at most ``fleet_policy_cards_max``
reached per request; a card that has the same policy already is left as it is, so applying
again goes on with the cards not reached yet. A card the policy cannot apply to (a postpaid
card, a plan not sold to it) is reported with its error code and the others are set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from topup.domain.auto_renewal import AutoRenewal, PaymentSource, SetterKind
from topup.domain.cards import CardKind
from topup.domain.errors import InputError, TopupError
from topup.domain.fleets import FleetFilter
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.services.auto_renewal import PaymentChoice, SetBy, set_auto_renewal
from topup.services.context import Services
from topup.services.fleets.bulk import (
    BULK_CHANNEL,
    organisation_payment_card,
    payment_card_missing,
)
from topup.services.fleets.organisations import manager, membership, organisation_unknown

REFUSALS_LISTED_MAX = 50  # cards the answer names one by one; the rest are counted


@dataclass(frozen=True)
class PolicyResult:
    applied: int  # cards whose auto-renewal was set now
    already: int  # cards that had this policy already
    left_alone: int  # cards of a kind the policy names no plan for
    refused: int
    refusals: list[tuple[str, str, dict[str, str]]]  # (msisdn, error code, params), the first ones
    not_reached: int  # cards beyond fleet_policy_cards_max: apply again to go on

    @property
    def reached(self) -> int:
        return self.applied + self.already + self.left_alone + self.refused


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


async def apply_fleet_policy(
    services: Services, account_id: str, organisation_id: str, choice: PolicyChoice
) -> PolicyResult:
    """Turn auto-renewal on for the organisation's cards (owners and admins); see the module."""
    plans = {kind: code.strip()[:64] for kind, code in choice.plans.items() if code.strip()}
    if not plans:
        raise _no_plan_chosen()
    limits = services.limits.fleets
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
        if organisation is None:
            raise organisation_unknown()
        total = await uow.organisations.count_cards(organisation_id, FleetFilter())
    saved_id, payer_id = organisation.payment_card_id, organisation.payment_card_account_id
    if saved_id is None or payer_id is None:
        raise payment_card_missing()
    payment = PaymentChoice.saved_card(payer_id, saved_id)
    set_by = SetBy(SetterKind.ORGANISATION, organisation_id)
    applied = already = left_alone = refused = 0
    refusals: list[tuple[str, str, dict[str, str]]] = []
    reach = min(total, limits.fleet_policy_cards_max)
    offset = 0
    while offset < reach:
        async with services.unit_of_work() as uow:
            cards = await uow.organisations.fleet_cards(
                organisation_id,
                FleetFilter(),
                limit=min(limits.fleet_policy_batch_size, reach - offset),
                offset=offset,
            )
            settings = await uow.auto_renewals.of_cards([card.id for card in cards])
        if not cards:
            break
        offset += len(cards)
        for card in cards:
            plan_code = plans.get(card.kind)
            if plan_code is None:
                left_alone += 1
                continue
            if _same(settings.get(card.id), plan_code, organisation_id, saved_id):
                already += 1
                continue
            try:
                await set_auto_renewal(
                    services,
                    card_id=card.id,
                    plan_code=plan_code,
                    payment=payment,
                    set_by=set_by,
                    channel=BULK_CHANNEL,
                )
            except TopupError as error:
                refused += 1
                if len(refusals) < REFUSALS_LISTED_MAX:
                    params = {key: str(value) for key, value in error.params.items()}
                    refusals.append((card.msisdn, error.code, params))
                continue
            applied += 1
    return PolicyResult(
        applied=applied,
        already=already,
        left_alone=left_alone,
        refused=refused,
        refusals=refusals,
        not_reached=max(0, total - offset),
    )


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
    counted = offset = 0
    while offset < limits.fleet_policy_cards_max:
        async with services.unit_of_work() as uow:
            await membership(uow, organisation_id, account_id)
            cards = await uow.organisations.fleet_cards(
                organisation_id, FleetFilter(), limit=limits.fleet_policy_batch_size, offset=offset
            )
            settings = await uow.auto_renewals.of_cards([card.id for card in cards])
        if not cards:
            break
        offset += len(cards)
        counted += sum(
            1
            for setting in settings.values()
            if setting.enabled
            and setting.set_by is SetterKind.ORGANISATION
            and setting.set_by_id == organisation_id
        )
    return counted
