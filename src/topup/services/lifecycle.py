"""Move cards through their lifecycle as time passes: grace, expiry (with forfeit), suspension.

Set-based: each batch is one transaction that takes up to ``lifecycle_batch_size`` due cards by
index, locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two workers take different cards; the
version check of ``save_many`` would catch any other writer), and writes their moves, events
and forfeits with a few statements. A pass runs batches until nothing is due, at most
``lifecycle_batches_per_pass_max``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from topup.domain import ledger
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardStatus, advance
from topup.domain.ledger import Entry
from topup.services.context import Services

Event = tuple[str, str, dt.datetime, dict[str, str | int]]


async def advance_cards(services: Services) -> int:
    """Bring every card whose stored status is stale up to date, a batch per transaction.
    Returns how many moved."""
    moved = 0
    for _ in range(services.limits.usage.lifecycle_batches_per_pass_max):
        moved_now, taken = await advance_batch(services)
        moved += moved_now
        if moved_now == 0 or taken < services.limits.worker.lifecycle_batch_size:
            break
    return moved


async def advance_batch(services: Services) -> tuple[int, int]:
    """One batch: ``(cards moved, cards taken)``."""
    now = services.clock.now()
    grace_days = services.profile.grace_period_days
    async with services.unit_of_work() as uow:
        due: list[Card] = await uow.cards.lock_due_for_lifecycle(
            now=now, limit=services.limits.worker.lifecycle_batch_size, grace_period_days=grace_days
        )
        changes: list[tuple[Card, int]] = []
        events: list[Event] = []
        forfeits: list[Entry] = []
        for card in due:
            updated, forfeit = advance(card, now, grace_days)
            if updated.status is card.status:
                continue
            if (
                updated.status is CardStatus.EXPIRED
                and card.status is CardStatus.ACTIVE
                and await uow.renewals.has_activating(card.id)
            ):
                continue  # a paid renewal on its way restores the card; expire it later if not
            changes.append((replace(updated, version=card.version + 1), card.version))
            events.append(
                (
                    card.id,
                    CardEventKind(f"status_{updated.status.value}").value,
                    now,
                    {
                        "from": card.status.value,
                        "to": updated.status.value,
                        "period": validity_period(card),
                    },
                )
            )
            if forfeit is not None and updated.status is CardStatus.EXPIRED:
                forfeits.append(
                    ledger.forfeit(
                        card_id=card.id, amount=forfeit.credit, data_quota_mb=forfeit.data_quota_mb
                    )
                )
                events.append(
                    (
                        card.id,
                        CardEventKind.FORFEIT.value,
                        now,
                        {
                            "credit_minor": forfeit.credit.minor,
                            "data_quota_mb": forfeit.data_quota_mb,
                            "period": validity_period(card),
                        },
                    )
                )
        await uow.cards.save_many(changes, at=now)
        await uow.cards.add_events(events)
        await uow.ledger.record_many(forfeits, at=now)
        await uow.commit()
    return len(changes), len(due)
