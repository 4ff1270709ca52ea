"""The payment password / 3-D Secure step, on SQLite and PostgreSQL: a right answer pays, wrong
answers may be retried, and too many lock the card for a while; the answer is never stored."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import select

from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox import AUTHENTICATION_ANSWER
from topup.bootstrap import Application
from topup.domain.errors import TopupError
from topup.ports import PaymentCardDetails
from topup.services.confirmation import confirm_payment
from topup.services.demo import load_demo
from topup.services.renewals import RenewalRequest, get_renewal, renew

NEEDS_PASSWORD = PaymentCardDetails(
    number="4000000000003220", expiry_month=12, expiry_year=2030, cvc="123"
)
WRONG = "999999"
ATTEMPTS_MAX = 5
LOCK_S = 1800


async def demo_with_clock(make_app: AppFactory) -> tuple[Application, FixedClock]:
    clock = FixedClock(START)
    application = make_app(clock=clock)
    await load_demo(application.services)
    return application, clock


def order(key: str) -> RenewalRequest:
    return RenewalRequest(
        card_number="+60123456789",
        plan_code="pack_5gb_7d",
        payment=NEEDS_PASSWORD,
        idempotency_key=key,
    )


async def refused_code(application: Application, renewal_id: str, answer: str) -> str:
    with pytest.raises(TopupError) as caught:
        await confirm_payment(application.services, renewal_id, answer)
    return caught.value.code


async def test_the_right_payment_password_pays_for_the_renewal(make_app: AppFactory) -> None:
    application, _ = await demo_with_clock(make_app)
    waiting = await renew(application.services, order("password-right"))
    assert waiting.status == "requires_action"
    paid = await confirm_payment(application.services, waiting.id, AUTHENTICATION_ANSWER)
    assert paid.status == "activating"
    assert await refused_code(application, waiting.id, AUTHENTICATION_ANSWER) == (
        "renewal_not_awaiting_confirmation"
    )


async def test_a_wrong_password_may_be_tried_again_and_says_how_many_tries_are_left(
    make_app: AppFactory,
) -> None:
    application, _ = await demo_with_clock(make_app)
    waiting = await renew(application.services, order("password-wrong-once"))
    with pytest.raises(TopupError) as caught:
        await confirm_payment(application.services, waiting.id, WRONG)
    assert caught.value.code == "payment_password_wrong"
    assert caught.value.params == {"attempts_left": str(ATTEMPTS_MAX - 1)}
    assert (await get_renewal(application.services, waiting.id)).status == "requires_action"
    paid = await confirm_payment(application.services, waiting.id, AUTHENTICATION_ANSWER)
    assert paid.status == "activating"


async def test_five_wrong_passwords_decline_the_renewal_and_lock_the_card_for_thirty_minutes(
    make_app: AppFactory,
) -> None:
    application, clock = await demo_with_clock(make_app)
    services = application.services
    waiting = await renew(services, order("password-locked"))
    codes = [await refused_code(application, waiting.id, WRONG) for _ in range(ATTEMPTS_MAX)]
    assert codes == ["payment_password_wrong"] * (ATTEMPTS_MAX - 1) + ["payment_method_locked"]
    declined = await get_renewal(services, waiting.id)
    assert declined.status == "declined"
    assert declined.renewal.decline_code == "authentication_failed"
    with pytest.raises(TopupError) as caught:  # the same card, a new renewal: refused at once
        await renew(services, order("password-locked-again"))
    assert caught.value.code == "payment_method_locked"
    assert caught.value.retryable
    clock.advance(LOCK_S + 1)
    later = await renew(services, order("password-after-the-lock"))
    assert later.status == "requires_action"


async def test_the_payment_password_is_never_stored(make_app: AppFactory) -> None:
    application, _ = await demo_with_clock(make_app)
    waiting = await renew(application.services, order("password-not-stored"))
    await refused_code(application, waiting.id, "314159")
    async with application.services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        for table in t.metadata.sorted_tables:
            for row in await connection.execute(select(table)):
                assert "314159" not in repr(tuple(row)), table.name


async def test_ten_wrong_passwords_sent_at_once_reach_the_gateway_at_most_five_times(
    make_app: AppFactory,
) -> None:
    application, _ = await demo_with_clock(make_app)
    services = application.services
    waiting = await renew(services, order("password-parallel"))
    gateway = services.gateway
    calls: list[str] = []

    class Counting:
        name = gateway.name

        def __getattr__(self, attribute: str) -> object:
            return getattr(gateway, attribute)

        async def confirm(self, request: object, answer: str) -> object:
            calls.append(answer)
            return await gateway.confirm(request, answer)  # type: ignore[arg-type]

    services.gateway = Counting()  # type: ignore[assignment]
    outcomes = await asyncio.gather(
        *(confirm_payment(services, waiting.id, WRONG) for _ in range(10)),
        return_exceptions=True,
    )
    codes = {outcome.code for outcome in outcomes if isinstance(outcome, TopupError)}
    assert len(calls) <= ATTEMPTS_MAX
    assert "payment_method_locked" in codes


async def test_a_locked_card_stays_locked_when_tokenised_again_with_another_expiry(
    make_app: AppFactory,
) -> None:
    application, clock = await demo_with_clock(make_app)
    services = application.services
    waiting = await renew(services, order("password-lock-follows-the-card"))
    for _ in range(ATTEMPTS_MAX):
        await refused_code(application, waiting.id, WRONG)
    other_expiry = replace(NEEDS_PASSWORD, expiry_month=11, expiry_year=2031, cvc="456")
    same_card = replace(order("password-other-expiry"), payment=other_expiry)
    with pytest.raises(TopupError) as caught:
        await renew(services, same_card)
    assert caught.value.code == "payment_method_locked"
    payment_token = await services.gateway.tokenize(
        other_expiry
    )  # a token made by the payer's device
    with pytest.raises(TopupError) as caught:
        await renew(
            services,
            replace(order("password-other-token"), payment=None, payment_token=payment_token.token),
        )
    assert caught.value.code == "payment_method_locked"
    another_card = replace(NEEDS_PASSWORD, number="4242424242424242")
    paid = await renew(services, replace(order("password-another-card"), payment=another_card))
    assert paid.status == "activating"  # the lock is on that card, not on the payer
    clock.advance(LOCK_S + 1)
    assert (await renew(services, same_card)).status == "requires_action"


async def test_wrong_answers_count_per_card_across_its_tokens(make_app: AppFactory) -> None:
    application, _ = await demo_with_clock(make_app)
    services = application.services
    first = await renew(services, order("password-count-1"))
    for _ in range(ATTEMPTS_MAX - 1):
        await refused_code(application, first.id, WRONG)
    other_expiry = replace(NEEDS_PASSWORD, expiry_month=1, expiry_year=2032)
    second = await renew(services, replace(order("password-count-2"), payment=other_expiry))
    assert await refused_code(application, second.id, WRONG) == "payment_method_locked"
