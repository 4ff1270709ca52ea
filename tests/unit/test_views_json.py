"""Views, on fakes: renewals, receipts, API keys, method offers and settlement reports come back
from the services as frozen views keeping Money, datetimes and enums raw, and
``entrypoints.views_json`` turns them into the JSON the API answers with and ``--json`` prints,
key for key and in the same order as before the views."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from tests.unit.fakes import GOOD_CARD, START, OnFakes, on_fakes
from topup.domain.callers import ApiKeyRole, Caller, CallerKind
from topup.domain.cards import CardKind
from topup.domain.methods import PaymentMethod
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.views_json import (
    api_key_json,
    methods_json,
    receipt_json,
    renewal_json,
    settlement_json,
)
from topup.services.api_keys import create_api_key, list_api_keys, revoke_api_key
from topup.services.payment_methods import offered_methods
from topup.services.receipts import receipt_of
from topup.services.renewals import RenewalRequest, renew
from topup.services.settlement import DiscrepancyKind, Finding, SettlementReport
from topup.services.views import ApiKeyView, MethodsOffer, ReceiptView, RenewalView

ACTIVE_CARD = "+60123456789"
STAFF = Caller(kind=CallerKind.API_KEY, role=ApiKeyRole.STAFF, api_key_id="k")
PLAN_NAMES = {
    "en": "5 GB, 7 days",
    "ms": "5 GB, 7 hari",
    "zh_Hans": "5 GB，7天",
    "id": "5 GB, 7 hari",
}


async def paid_renewal(fakes: OnFakes) -> RenewalView:
    view = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "pack_5gb_7d", GOOD_CARD))
    await fakes.drain()
    return view


async def test_a_renewal_view_keeps_money_times_and_statuses_raw() -> None:
    view = await paid_renewal(await on_fakes())
    assert isinstance(view, RenewalView)
    assert not hasattr(view, "to_dict")  # JSON is the entrypoints' business
    assert view.renewal.amount == Money(1000, "MYR")
    assert view.renewal.status is RenewalStatus.ACTIVATING
    assert view.renewal.created_at == START
    assert all(isinstance(step.at, dt.datetime) for step in view.timeline)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.card_number = "+60000000000"  # type: ignore[misc]


async def test_a_renewal_as_json_has_the_api_shape() -> None:
    view = await paid_renewal(await on_fakes())
    payment = view.payment
    assert payment is not None
    reference = payment.gateway_reference
    assert renewal_json(view) == {
        "id": view.id,
        "status": "activating",
        "card_number": ACTIVE_CARD,
        "plan": "pack_5gb_7d",
        "kind": "prepaid_pack",
        "channel": "web",
        "amount": "10.00",
        "amount_minor": 1000,
        "currency": "MYR",
        "decline_code": None,
        "created_at": "2026-11-25T08:00:00Z",
        "paid_at": "2026-11-25T08:00:00Z",
        "completed_at": None,
        "estimated_activation_by": "2026-11-25T08:01:00Z",
        "contact_support_after": "2026-11-25T12:00:00Z",
        "idempotency_key": view.renewal.idempotency_key,
        "receipt_number": view.renewal.receipt_number,
        "timeline": [
            {
                "from": None,
                "to": "pending_payment",
                "at": "2026-11-25T08:00:00Z",
                "reason": "renewal of pack_5gb_7d requested through web",
            },
            {
                "from": "pending_payment",
                "to": "activating",
                "at": "2026-11-25T08:00:00Z",
                "reason": f"payment captured ({reference})",
            },
        ],
        "payment": {
            "status": "succeeded",
            "method": "credit_card",
            "brand": "visa",
            "funding": "credit",
            "last4": "4242",
            "expiry": "12/30",
            "gateway_reference": reference,
            "decline_code": None,
            "next_check_at": None,
            "flagged_for_staff": False,
        },
    }
    assert list(renewal_json(view))[-2:] == ["timeline", "payment"]


async def test_a_receipt_is_a_frozen_view_with_money_times_and_enums_raw() -> None:
    fakes = await on_fakes()
    view = await paid_renewal(fakes)
    number = view.renewal.receipt_number
    assert number is not None
    receipt = await receipt_of(fakes.services, STAFF, number)
    assert isinstance(receipt, ReceiptView)
    assert receipt.amount == Money(1000, "MYR")
    assert receipt.paid_at == START
    assert receipt.status is RenewalStatus.COMPLETED
    assert receipt.card_kind is CardKind.PREPAID
    assert receipt.refunded_at is None
    assert receipt.plan_names == PLAN_NAMES
    assert (receipt.method_name("zh_Hans"), receipt.method_name("fr")) == ("信用卡", "credit card")
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.amount = Money(1, "MYR")  # type: ignore[misc]


async def test_a_receipt_as_json_has_the_api_shape_with_names_in_the_callers_language() -> None:
    fakes = await on_fakes()
    view = await paid_renewal(fakes)
    number = view.renewal.receipt_number
    assert number is not None
    receipt = await receipt_of(fakes.services, STAFF, number)
    shown = receipt_json(receipt, "zh_Hans")
    assert shown == {
        "receipt_number": number,
        "verification_code": receipt.verification_code,
        "operator": "Axis-style demo operator (Malaysia)",
        "paid_at": "2026-11-25T08:00:00Z",
        "paid_at_local": "2026-11-25T16:00:00+08:00",
        "time_zone": "Asia/Kuala_Lumpur",
        "card_number": "+60 12-*** 6789",
        "card_kind": "prepaid",
        "plan_code": "pack_5gb_7d",
        "plan_name": "5 GB，7天",
        "plan_names": PLAN_NAMES,
        "amount": "10.00",
        "amount_minor": 1000,
        "currency": "MYR",
        "payment": {
            "method": "credit_card",
            "method_name": "信用卡",
            "brand": "visa",
            "last4": "4242",
        },
        "renewal_id": view.id,
        "status": "completed",
        "refund": None,
    }
    assert list(shown)[:3] == ["receipt_number", "verification_code", "operator"]
    refunded = dataclasses.replace(receipt, refunded_at=START + dt.timedelta(hours=1))
    assert receipt_json(refunded, "en")["refund"] == {
        "refunded_at": "2026-11-25T09:00:00Z",
        "amount": "10.00",
        "amount_minor": 1000,
        "currency": "MYR",
    }
    assert receipt_json(refunded, "en")["payment"]["method_name"] == "credit card"


async def test_an_api_key_is_a_view_and_its_json_is_the_clis_shape() -> None:
    fakes = await on_fakes()
    created, full_key = await create_api_key(
        fakes.services, name="Kiosk 3", role="kiosk", outlet="kls-3", region="penang"
    )
    assert isinstance(created, ApiKeyView)
    assert created.role is ApiKeyRole.KIOSK
    assert created.created_at == START and created.revoked_at is None
    assert not hasattr(created, "secret_hash")
    assert api_key_json(created) == {
        "id": created.id,
        "prefix": created.prefix,
        "name": "Kiosk 3",
        "role": "kiosk",
        "channel": "kiosk",
        "outlet": "kls-3",
        "region": "penang",
        "created_at": "2026-11-25T08:00:00+00:00",
        "revoked_at": None,
        "status": "active",
    }
    revoked = await revoke_api_key(fakes.services, created.id)
    assert revoked.revoked_at == START
    assert (api_key_json(revoked)["status"], api_key_json(revoked)["revoked_at"]) == (
        "revoked",
        "2026-11-25T08:00:00+00:00",
    )
    assert await list_api_keys(fakes.services) == [revoked]
    assert full_key.split("_")[2] == created.prefix


async def test_a_methods_offer_keeps_its_amount_raw_and_its_json_names_methods_in_the_locale() -> (
    None
):
    fakes = await on_fakes()
    offer = await offered_methods(
        fakes.services,
        card_number=ACTIVE_CARD,
        plan_code="pack_5gb_7d",
        channel="web",
        region=None,
    )
    assert isinstance(offer, MethodsOffer)
    assert offer.amount == Money(1000, "MYR")
    assert all(isinstance(method, PaymentMethod) for method in offer.methods)
    assert not hasattr(offer, "to_dict")
    shown = methods_json(offer, "ms")
    assert list(shown) == ["channel", "region", "amount", "amount_minor", "currency", "methods", "reason"]  # fmt: skip
    assert (shown["amount"], shown["amount_minor"], shown["reason"]) == ("10.00", 1000, None)
    assert shown["methods"][0] == {
        "code": "credit_card",
        "kind": "card",
        "name": "kad kredit",
        "amount_min_minor": 100,
        "amount_max_minor": 500000,
    }


def test_a_settlement_report_as_json_has_the_clis_shape() -> None:
    finding = Finding(
        kind=DiscrepancyKind.UNKNOWN_LINE.value, detail="no payment has this reference", line=3
    )
    report = SettlementReport(
        gateway="sandbox",
        days=[dt.date(2026, 11, 25)],
        lines=2,
        matched=1,
        totals={"MYR": {"charges_minor": 1000}},
        discrepancies=[finding],
    )
    assert not hasattr(report, "to_dict") and not hasattr(finding, "to_dict")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.matched = 2  # type: ignore[misc]
    counts: dict[str, Any] = {kind.value: 0 for kind in DiscrepancyKind}
    counts["unknown_line"] = 1
    assert settlement_json(report) == {
        "clean": False,
        "gateway": "sandbox",
        "days": ["2026-11-25"],
        "lines": 2,
        "matched": 1,
        "totals": {"MYR": {"charges_minor": 1000}},
        "counts": counts,
        "discrepancies": [
            {
                "kind": "unknown_line",
                "detail": "no payment has this reference",
                "line": 3,
                "payment_id": None,
                "renewal_id": None,
                "gateway_reference": None,
            }
        ],
        "in_progress": [],
    }
