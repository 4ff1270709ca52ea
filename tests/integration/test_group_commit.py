"""Renewals written together (group commit), on SQLite and PostgreSQL: each caller gets its own
answer, one bad renewal never takes the others down with it, and nothing is half written."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from tests.conftest import START, AppFactory
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.cards import CardStatus
from topup.domain.errors import ConflictError, NotFoundError, TopupError
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services import queries
from topup.services.audit import audit
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.settings import LimitSettings

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
OTHER_CARD = PaymentCardDetails(
    number="5555555555554444", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"
EXPIRED_CARD = "+60123450002"
UNKNOWN_CARD = "+60123999999"
WORK_ROUNDS_MAX = 20
RACES = 60


async def demo_with(make_app: AppFactory, **limits: Any) -> Application:
    application = make_app(limits=LimitSettings(**limits))
    await load_demo(application.services)
    return application


def order(key: str, card: str = ACTIVE_CARD, plan: str = "reload_10") -> RenewalRequest:
    return RenewalRequest(card_number=card, plan_code=plan, payment=GOOD_CARD, idempotency_key=key)


async def count(services: Services, table: Any) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def drain(services: Services) -> None:
    for _ in range(WORK_ROUNDS_MAX):
        if await work_once(services) == 0:
            return
    raise AssertionError(f"the worker still had work after {WORK_ROUNDS_MAX} rounds")


async def test_renewals_asked_for_together_each_get_their_own_answer(
    make_app: AppFactory,
) -> None:
    application = await demo_with(make_app)
    services = application.services
    before = await queries.balance(services, ACTIVE_CARD)
    outcomes = await asyncio.gather(
        renew(services, order("good-1")),
        renew(services, order("unknown-card", card=UNKNOWN_CARD)),
        renew(services, order("unknown-plan", plan="no_such_plan")),
        renew(services, order("expired-card", card=EXPIRED_CARD)),
        renew(services, order("good-2")),
        return_exceptions=True,
    )
    codes = [
        outcome.code if isinstance(outcome, TopupError) else outcome.status  # type: ignore[union-attr]
        for outcome in outcomes
    ]
    assert codes == ["activating", "card_unknown", "plan_unknown", codes[3], "activating"]
    assert isinstance(outcomes[3], ConflictError)  # an expired card cannot be renewed
    assert await count(services, t.renewals) == 2
    assert await count(services, t.payments) == 2
    await drain(services)
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.credit.minor == before.credit.minor + 2 * 1000
    assert (await audit(services)).clean


async def test_one_key_sent_twice_at_once_with_different_requests_refuses_the_second(
    make_app: AppFactory,
) -> None:
    application = await demo_with(make_app)
    services = application.services
    first, second = await asyncio.gather(
        renew(services, order("shared-key", plan="reload_10")),
        renew(services, order("shared-key", plan="reload_30")),
        return_exceptions=True,
    )
    assert not isinstance(first, BaseException) and first.status == "activating"
    assert isinstance(second, ConflictError) and second.code == "idempotency_key_reused"
    assert await count(services, t.renewals) == 1


async def test_a_renewal_that_breaks_its_batch_fails_alone_and_leaves_nothing_behind(
    make_app: AppFactory,
) -> None:
    application = await demo_with(make_app)
    services = application.services
    seal = services.tokens.seal
    vault = services.tokens
    poisoned = (await services.gateway.tokenize(OTHER_CARD)).token

    class BrokenVault:
        """Cannot seal one card's token, every time it is asked."""

        def seal(self, token: str) -> str:
            if token == poisoned:
                raise RuntimeError("the key store cannot seal this token")
            return seal(token)

        def open(self, sealed: str) -> str:
            return vault.open(sealed)

        def fingerprint(self, token: str) -> str:
            return vault.fingerprint(token)

    services.tokens = BrokenVault()  # type: ignore[assignment]
    orders = [order(f"key-{n}") for n in range(4)]
    orders[1] = replace(orders[1], payment=OTHER_CARD)
    outcomes = await asyncio.gather(
        *(renew(services, each) for each in orders), return_exceptions=True
    )
    assert isinstance(outcomes[1], RuntimeError)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], RuntimeError)
    views = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    assert [view.status for view in views] == ["activating"] * 3
    assert await count(services, t.renewals) == 3  # the broken one left no row at all
    assert await count(services, t.renewal_events) == 6


async def test_many_renewals_of_one_card_are_credited_in_one_batch_each_on_top_of_the_last(
    make_app: AppFactory,
) -> None:
    application = await demo_with(make_app, worker_batch_size=100, worker_concurrency=100)
    services = application.services
    before = await queries.balance(services, ACTIVE_CARD)
    views = await asyncio.gather(*(renew(services, order(f"many-{n}")) for n in range(12)))
    await drain(services)
    after = await queries.balance(services, ACTIVE_CARD)
    assert after.credit.minor == before.credit.minor + 12 * 1000
    statuses = {(await get_renewal(services, view.id)).status for view in views}
    assert statuses == {"completed"}
    assert (await audit(services)).clean


async def test_a_renewal_id_nobody_knows_is_reported_as_unknown(make_app: AppFactory) -> None:
    application = await demo_with(make_app)
    try:
        await get_renewal(application.services, "00000000-0000-4000-8000-000000000000")
    except NotFoundError as error:
        assert error.code == "renewal_unknown"
    else:
        raise AssertionError("an unknown renewal id was found")


async def test_a_retry_after_the_card_has_expired_is_answered_with_the_renewal_it_made(
    make_app: AppFactory,
) -> None:
    application = await demo_with(make_app)
    services = application.services
    first = await renew(services, order("retried-key"))
    async with services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=ACTIVE_CARD)
        expired = replace(card, status=CardStatus.EXPIRED, version=card.version + 1)
        await uow.cards.save(expired, expected_version=card.version, at=START)
        await uow.commit()
    with_new_key = renew(services, order("new-key"))
    retried, refused = await asyncio.gather(
        renew(services, order("retried-key")), with_new_key, return_exceptions=True
    )
    assert not isinstance(retried, BaseException)
    assert retried.id == first.id and retried.replayed
    assert isinstance(refused, ConflictError)


async def test_a_retry_that_brings_the_same_ids_while_the_first_is_inserted_is_a_replay(
    make_app: AppFactory,
) -> None:
    """Replayed runs give a retried request the ids its first attempt had; the two may be
    admitted by two transactions at once (a race, so run RACES times: without the fix about one
    run in three failed on PostgreSQL)."""
    application = await demo_with(make_app, write_batches_in_flight_max=2)
    services = application.services
    same_ids = itertools.cycle(
        ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"]
    )
    services.new_id = lambda: next(same_ids)
    for attempt in range(RACES):
        key = f"retried-{attempt}"
        ids = [
            f"00000000-0000-4000-8000-000000001{attempt:03d}",
            f"00000000-0000-4000-8000-000000002{attempt:03d}",
        ]
        same_ids = itertools.cycle(ids)
        first, second = await asyncio.gather(
            renew(services, order(key)), renew(services, order(key))
        )
        assert first.id == second.id == ids[0]
    assert await count(services, t.renewals) == RACES
