"""Reading renewals: a card by its number, a renewal with its payment, its view, and the answer
to a replayed request."""

from __future__ import annotations

from topup.domain.card_number import CardNumberKind, parse_card_number
from topup.domain.cards import Card
from topup.domain.errors import (
    ConflictError,
    NotFoundError,
)
from topup.domain.records import PaymentRecord, RenewalRecord
from topup.domain.renewal import (
    Transition,
)
from topup.ports import (
    UnitOfWork,
)
from topup.services.context import Services
from topup.services.views import RenewalView


async def find_card(uow: UnitOfWork, services: Services, text: str) -> Card:
    number = parse_card_number(text, services.profile)
    if number.kind is CardNumberKind.MSISDN:
        card: Card | None = await uow.cards.by_number(msisdn=number.value)
    else:
        card = await uow.cards.by_number(iccid=number.value)
    if card is None:
        raise card_unknown()
    return card


def renewal_unknown(renewal_id: str) -> NotFoundError:
    return NotFoundError(
        f"no renewal {renewal_id}",
        code="renewal_unknown",
        field="renewal_id",
        params={"renewal": renewal_id},
    )


async def renewal_with_payment(
    uow: UnitOfWork, renewal_id: str
) -> tuple[RenewalRecord, PaymentRecord]:
    """A renewal and its payment, read (not locked); NotFoundError if there is none."""
    found: dict[str, tuple[RenewalRecord, PaymentRecord, str]] = await uow.renewals.with_payments(
        [renewal_id]
    )
    if renewal_id not in found:
        raise renewal_unknown(renewal_id)
    renewal, payment, _ = found[renewal_id]
    return renewal, payment


def card_unknown() -> NotFoundError:
    return NotFoundError(
        "no card with this number is registered with us; check the number on your receipt "
        "or SIM carrier",
        code="card_unknown",
        field="card_number",
    )


async def replay(uow: UnitOfWork, renewal_id: str, fingerprint: str) -> RenewalView:
    """Read on the caller's connection: taking a second one while holding the first would let
    a burst of replays exhaust the pool and wait on each other until the pool timeout."""
    view = await renewal_view(uow, renewal_id)
    if view.renewal.request_fingerprint != fingerprint:
        raise ConflictError(
            "this idempotency key was already used for a different renewal",
            code="idempotency_key_reused",
            field="idempotency_key",
        )
    return RenewalView(view.renewal, view.payment, view.timeline, view.card_number, replayed=True)


async def replay_after_race(uow: UnitOfWork, key: str, fingerprint: str) -> RenewalView:
    existing: RenewalRecord | None = await uow.renewals.by_idempotency_key(key)
    if existing is None:
        raise ConflictError(
            "this renewal is being created; try again",
            code="idempotency_key_in_use",
            retryable=True,
        )
    return await replay(uow, existing.id, fingerprint)


async def renewal_views(uow: UnitOfWork, renewal_ids: list[str]) -> dict[str, RenewalView]:
    found: dict[str, tuple[RenewalRecord, str, str]] = await uow.renewals.with_card_numbers(
        renewal_ids
    )
    payments: dict[str, PaymentRecord] = await uow.payments.for_renewals(renewal_ids)
    timelines: dict[str, list[Transition]] = await uow.renewals.timelines(renewal_ids)
    return {
        renewal_id: RenewalView(
            renewal, payments.get(renewal_id), timelines.get(renewal_id, []), msisdn
        )
        for renewal_id, (renewal, msisdn, _iccid) in found.items()
    }


async def renewal_view(uow: UnitOfWork, renewal_id: str) -> RenewalView:
    view = (await renewal_views(uow, [renewal_id])).get(renewal_id)
    if view is None:
        raise renewal_unknown(renewal_id)
    return view


async def get_renewal(services: Services, renewal_id: str) -> RenewalView:
    async with services.unit_of_work() as uow:
        return await renewal_view(uow, renewal_id)
