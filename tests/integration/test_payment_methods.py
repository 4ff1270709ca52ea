"""Choosing a payment method when renewing, on SQLite and PostgreSQL: a method that is off or not
offered here is refused before anything is written or charged, with what is available instead."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.errors import TopupError
from topup.ports import PaymentCardDetails
from topup.services.context import Services
from topup.services.payment_methods import offered_methods
from topup.services.renewals import RenewalRequest, renew

GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
ACTIVE_CARD = "+60123456789"


def order(key: str, **changes: Any) -> RenewalRequest:
    values: dict[str, Any] = {
        "card_number": ACTIVE_CARD,
        "plan_code": "pack_5gb_7d",
        "payment": GOOD_CARD,
        "idempotency_key": key,
    }
    values.update(changes)
    return RenewalRequest(**values)


async def renewals_count(services: Services) -> int:
    async with services.unit_of_work() as uow:
        connection = uow.connection  # type: ignore[attr-defined]
        query = select(func.count()).select_from(t.renewals)
        return int((await connection.execute(query)).scalar_one())


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"method": "wechat_pay"}, "method_disabled"),
        ({"method": "bitcoin"}, "method_unknown"),
        ({"method": "cash"}, "method_not_offered_here"),
        ({"channel": "kiosk"}, "region_required"),
        ({"channel": "kiosk", "region": "atlantis"}, "region_unknown"),
        ({"method": "ewallet:tng"}, "wallet_account_required"),
        ({"method": "cash", "channel": "store", "region": "penang"}, "method_not_supported"),
    ],
)
async def test_a_method_that_cannot_be_used_here_is_refused_before_anything_is_written(
    demo_app: Application, changes: dict[str, Any], code: str
) -> None:
    services = demo_app.services
    with pytest.raises(TopupError) as caught:
        await renew(services, order(f"refused-{code}", **changes))
    assert caught.value.code == code
    assert await renewals_count(services) == 0


async def test_a_kiosk_renewal_names_its_region_and_goes_through(demo_app: Application) -> None:
    view = await renew(demo_app.services, order("kiosk-1", channel="kiosk", region="penang"))
    assert view.status == "activating"


async def test_the_methods_offered_depend_on_the_channel_and_the_kiosks_region(
    demo_app: Application,
) -> None:
    services = demo_app.services

    async def codes(channel: str, region: str | None) -> list[str]:
        offer = await offered_methods(
            services,
            card_number=ACTIVE_CARD,
            plan_code="pack_5gb_7d",
            channel=channel,
            region=region,
        )
        return [method.code for method in offer.methods]

    assert "ewallet:grabpay" in await codes("kiosk", "penang")
    assert "ewallet:grabpay" not in await codes("kiosk", "sabah")
    assert "cash" not in await codes("web", None)
    assert "wechat_pay" not in await codes("web", None)


async def test_a_payment_card_number_typed_with_dashes_is_accepted(demo_app: Application) -> None:
    dashed = PaymentCardDetails(
        number="4242-4242-4242-4242", expiry_month=12, expiry_year=2030, cvc="123"
    )
    view = await renew(demo_app.services, order("dashes", payment=dashed))
    assert view.status == "activating"


async def test_a_store_is_not_offered_cash_while_topup_cannot_take_it(
    demo_app: Application,
) -> None:
    offer = await offered_methods(
        demo_app.services,
        card_number=ACTIVE_CARD,
        plan_code="pack_5gb_7d",
        channel="store",
        region="sabah",
    )
    codes = [method.code for method in offer.methods]
    assert "cash" not in codes
    assert codes[:2] == ["credit_card", "debit_card"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"method": "alipay"}, "method_disabled"),
        ({"method": "wechat_pay"}, "method_disabled"),
        ({"method": "paypal"}, "method_unknown"),
        ({"method": "ewallet:tnG"}, "method_unknown"),
        ({"method": "cash"}, "method_not_offered_here"),
        ({"method": "cash", "channel": "store", "region": "penang"}, "method_not_supported"),
        ({"method": "alipay", "payment_token": "tok_sbx_x.y"}, "method_disabled"),
    ],
)
async def test_a_method_without_its_details_is_judged_before_the_details_are_asked_for(
    demo_app: Application, changes: dict[str, Any], code: str
) -> None:
    services = demo_app.services
    with pytest.raises(TopupError) as caught:
        await renew(services, order(f"judged-{code}", payment=None, **changes))
    assert caught.value.code == code
    assert caught.value.params["available"].startswith("credit card, debit card")
    assert await renewals_count(services) == 0
