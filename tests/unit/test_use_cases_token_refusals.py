"""A payment card paid by its PSP token (the web's and the API's way: the number never reaches
topup) is judged before any charge as typed details are: a debit card paid as credit, and a card
whose issuer keeps it at home, are refused with nothing recorded and nothing charged."""

from __future__ import annotations

import pytest

from tests.unit.fakes import on_fakes
from topup.domain.errors import InputError, PaymentError
from topup.ports import PaymentCardDetails
from topup.services.renewals import RenewalRequest, renew


def card(number: str) -> PaymentCardDetails:
    return PaymentCardDetails(number=number, expiry_month=12, expiry_year=2030, cvc="123")


def by_token(token: str, method: str = "credit_card") -> RenewalRequest:
    return RenewalRequest(
        card_number="+60123456789",
        plan_code="pack_5gb_7d",
        payment=None,
        method=method,
        payment_token=token,
        idempotency_key="token-refusals",
    )


async def test_a_token_of_a_card_its_issuer_keeps_at_home_is_refused_before_the_charge() -> None:
    fakes = await on_fakes()
    token = await fakes.services.gateway.tokenize(card("4000009990000104"))
    assert token.international_payments is False
    with pytest.raises(PaymentError) as refused:
        await renew(fakes.services, by_token(token.token))
    assert refused.value.code == "international_payments_not_allowed"
    assert fakes.gateway.charges == []
    assert fakes.committed.renewals == {}


async def test_a_token_of_a_debit_card_paid_as_credit_is_refused_before_the_charge() -> None:
    fakes = await on_fakes()
    token = await fakes.services.gateway.tokenize(card("4000056655665556"))
    with pytest.raises(InputError) as refused:
        await renew(fakes.services, by_token(token.token))
    assert refused.value.code == "card_is_debit"
    assert fakes.gateway.charges == []


async def test_a_token_of_a_card_that_may_pay_abroad_is_charged() -> None:
    fakes = await on_fakes()
    token = await fakes.services.gateway.tokenize(card("4242424242424242"))
    assert token.international_payments is None  # its issuer's rule is not known: it may try
    view = await renew(fakes.services, by_token(token.token))
    assert view.status == "activating"
    assert len(fakes.gateway.charges) == 1
