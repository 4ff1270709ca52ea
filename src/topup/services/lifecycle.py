"""Move cards through their lifecycle as time passes: grace, expiry (with forfeit), suspension."""

from __future__ import annotations

from dataclasses import replace

from topup.domain import ledger
from topup.domain.card_events import CardEventKind
from topup.domain.cards import Card, CardStatus, advance
from topup.services.context import Services


async def advance_cards(services: Services) -> int:
    """Bring a batch of cards whose stored status is stale up to date. Returns how many moved."""
    now = services.clock.now()
    grace_days = services.profile.grace_period_days
    async with services.unit_of_work() as uow:
        card_ids: list[str] = await uow.cards.due_for_lifecycle(
            now=now, limit=services.limits.worker.lifecycle_batch_size, grace_period_days=grace_days
        )
    moved = 0
    for card_id in card_ids:
        async with services.unit_of_work() as uow:
            card: Card | None = await uow.cards.get(card_id, for_update=True)
            if card is None:
                continue
            updated, forfeit = advance(card, now, grace_days)
            if updated.status is card.status:
                continue
            if updated.status is CardStatus.EXPIRED and await uow.renewals.has_activating(card.id):
                continue  # a paid renewal on its way restores the card; expire it later if not
            updated_versioned = replace(updated, version=card.version + 1)
            await uow.cards.save(updated_versioned, expected_version=card.version, at=now)
            await uow.cards.add_event(
                card_id=card.id,
                kind=CardEventKind(f"status_{updated.status.value}").value,
                at=now,
                detail={"from": card.status.value, "to": updated.status.value},
            )
            if forfeit is not None and updated.status is CardStatus.EXPIRED:
                await uow.ledger.record(
                    ledger.forfeit(
                        card_id=card.id, amount=forfeit.credit, data_quota_mb=forfeit.data_quota_mb
                    ),
                    at=now,
                )
                await uow.cards.add_event(
                    card_id=card.id,
                    kind=CardEventKind.FORFEIT.value,
                    at=now,
                    detail={
                        "credit_minor": forfeit.credit.minor,
                        "data_quota_mb": forfeit.data_quota_mb,
                    },
                )
            await uow.commit()
            moved += 1
    return moved
