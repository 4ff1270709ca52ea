"""The account's repositories answer alike in memory, on SQLite and on PostgreSQL: a web
session's state and when it was last seen, saved payment cards (one per payment card and
account, each account's own), and an account's history (only its linked cards' renewals)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.conftest import START
from tests.integration.test_repository_contract import (  # noqa: F401 -- fixtures
    UNIQUE_VIOLATION,
    a_card,
    renewal,
    unit_of_work,
    where,
)
from topup.domain.accounts import Account
from topup.domain.cards import Card
from topup.domain.renewal import RenewalStatus
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.ports import UnitOfWork

MINUTE = dt.timedelta(minutes=1)
OTHER_CARD = "+60198765432"


def an_account(account_id: str) -> Account:
    return Account(
        id=account_id,
        email=f"{account_id}@example.com",
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        language="en",
        created_at=START,
        confirmed_at=START,
    )


def saved_card(saved_id: str, account_id: str, fingerprint: str = "fp-1") -> SavedPaymentCard:
    return SavedPaymentCard(
        id=saved_id,
        account_id=account_id,
        gateway="sandbox",
        token_sealed="sealed-token",
        fingerprint=fingerprint,
        brand="visa",
        funding="credit",
        last4="4242",
        expiry_month=12,
        expiry_year=2030,
        created_at=START,
    )


async def test_a_session_is_its_tokens_until_revoked_and_is_seen_at_most_once_a_while(
    unit_of_work: Callable[[], UnitOfWork],  # noqa: F811
) -> None:
    async with unit_of_work() as uow:
        await uow.accounts.add(an_account("a1"))
        await uow.accounts.add_token(
            token_id="t1",
            account_id="a1",
            token_hash="h1",
            created_at=START,
            expires_at=START + dt.timedelta(hours=12),
        )
        await uow.commit()
    async with unit_of_work() as uow:
        fresh = await uow.accounts.session_of_token("h1", now=START)
        await uow.accounts.touch_token("h1", at=START + MINUTE / 2, unseen_since=START - MINUTE)
        kept = await uow.accounts.session_of_token("h1", now=START + MINUTE)
        await uow.accounts.touch_token("h1", at=START + 2 * MINUTE, unseen_since=START + MINUTE)
        touched = await uow.accounts.session_of_token("h1", now=START + 2 * MINUTE)
        await uow.accounts.revoke_token("h1", now=START + 3 * MINUTE)
        revoked = await uow.accounts.session_of_token("h1", now=START + 3 * MINUTE)
        await uow.commit()

    assert fresh is not None and fresh.account_id == "a1" and fresh.last_seen_at == START
    assert kept is not None and kept.last_seen_at == START  # seen within the minute: no write
    assert touched is not None and touched.last_seen_at == START + 2 * MINUTE
    assert revoked is None


async def test_an_expired_token_has_no_session(
    unit_of_work: Callable[[], UnitOfWork],  # noqa: F811
) -> None:
    async with unit_of_work() as uow:
        await uow.accounts.add(an_account("a1"))
        await uow.accounts.add_token(
            token_id="t1", account_id="a1", token_hash="h1", created_at=START, expires_at=START
        )
        assert await uow.accounts.session_of_token("h1", now=START) is None


async def test_a_payment_card_is_saved_once_per_account_and_only_its_owner_sees_or_removes_it(
    unit_of_work: Callable[[], UnitOfWork],  # noqa: F811
) -> None:
    async with unit_of_work() as uow:
        await uow.accounts.add(an_account("a1"))
        await uow.accounts.add(an_account("a2"))
        first = await uow.saved_payment_cards.add(saved_card("s1", "a1"))
        again = await uow.saved_payment_cards.add(saved_card("s2", "a1"))  # same fingerprint
        other = await uow.saved_payment_cards.add(saved_card("s3", "a2"))  # another account's
        later = replace(saved_card("s4", "a1", "fp-2"), created_at=START + MINUTE)
        await uow.saved_payment_cards.add(later)
        await uow.commit()
    async with unit_of_work() as uow:
        listed = await uow.saved_payment_cards.of_account("a1", limit=10)
        not_yours = await uow.saved_payment_cards.get("a2", "s1")
        removed_by_stranger = await uow.saved_payment_cards.remove("a2", "s1")
        removed = await uow.saved_payment_cards.remove("a1", "s1")
        left = await uow.saved_payment_cards.count("a1")
        await uow.commit()

    assert (first, again, other) == (True, False, True)
    assert [card.id for card in listed] == ["s1", "s4"]
    assert listed[0] == saved_card("s1", "a1")
    assert not_yours is None and removed_by_stranger is False
    assert removed is True and left == 1


async def test_a_saved_payment_card_with_an_id_taken_is_refused(
    unit_of_work: Callable[[], UnitOfWork],  # noqa: F811
) -> None:
    async with unit_of_work() as uow:
        await uow.accounts.add(an_account("a1"))
        await uow.saved_payment_cards.add(saved_card("s1", "a1"))
        with pytest.raises(UNIQUE_VIOLATION):
            await uow.saved_payment_cards.add(saved_card("s1", "a1", "fp-2"))


async def _renewals(uow: UnitOfWork, card: Card, other: Card) -> None:
    renewals = [
        replace(renewal(card, f"r{index}", f"k{index}"), created_at=START + index * MINUTE)
        for index in range(5)
    ]
    renewals[1] = replace(renewals[1], status=RenewalStatus.COMPLETED, paid_at=START)
    renewals[3] = replace(renewals[3], status=RenewalStatus.DECLINED)
    renewals.append(replace(renewal(other, "r-other", "k-other"), created_at=START))
    await uow.renewals.add_many(renewals)


async def test_an_accounts_history_is_its_linked_cards_renewals_filtered_and_paged(
    unit_of_work: Callable[[], UnitOfWork],  # noqa: F811
) -> None:
    async with unit_of_work() as uow:
        card = await a_card(uow)
        other = await uow.cards.by_number(msisdn=OTHER_CARD)
        assert other is not None
        await uow.accounts.add(an_account("a1"))
        await uow.accounts.link_card("a1", card.id, at=START)
        await _renewals(uow, card, other)
        await uow.commit()

    async def ids(**asked: object) -> list[str]:
        wanted: dict[str, object] = {
            "card_id": None,
            "since": None,
            "until": None,
            "statuses": (),
            "paid_only": False,
            "limit": 10,
            "offset": 0,
            **asked,
        }
        async with unit_of_work() as uow:
            found = await uow.account_history.renewals_of_account("a1", **wanted)  # type: ignore[arg-type]
        return [each.id for each in found]

    assert await ids() == ["r4", "r3", "r2", "r1", "r0"]  # newest first; not another's card
    assert await ids(limit=2, offset=2) == ["r2", "r1"]
    assert await ids(statuses=(RenewalStatus.DECLINED,)) == ["r3"]
    assert await ids(paid_only=True) == ["r1"]
    assert await ids(since=START + MINUTE, until=START + 3 * MINUTE) == ["r2", "r1"]
    assert await ids(card_id=other.id) == []
