"""Demo data: plans priced in the operator's currency and a handful of cards in every state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from topup.domain import ledger
from topup.domain.card_number import luhn_check_digit
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.money import Money, minor_unit_digits
from topup.domain.plans import CHANNELS, Plan, PlanKind
from topup.services.billing import issue_postpaid_bill
from topup.services.context import Services

ALL_CHANNELS = frozenset(CHANNELS)
PREPAID = frozenset({CardKind.PREPAID})
POSTPAID = frozenset({CardKind.POSTPAID})

# (code, names, kind, price in whole units per profile currency, quota MB, validity days, channels)
_PLANS: list[tuple[str, dict[str, str], PlanKind, dict[str, int], int, int, frozenset[str]]] = [
    (
        "pack_5gb_7d",
        {"en": "5 GB, 7 days", "ms": "5 GB, 7 hari", "zh_Hans": "5 GB，7天", "id": "5 GB, 7 hari"},
        PlanKind.PREPAID_PACK,
        {"MYR": 10, "IDR": 25_000},
        5 * 1024,
        7,
        ALL_CHANNELS,
    ),
    (
        "pack_30gb_30d",
        {
            "en": "30 GB, 30 days",
            "ms": "30 GB, 30 hari",
            "zh_Hans": "30 GB，30天",
            "id": "30 GB, 30 hari",
        },
        PlanKind.PREPAID_PACK,
        {"MYR": 35, "IDR": 100_000},
        30 * 1024,
        30,
        ALL_CHANNELS,
    ),
    (
        "pack_100gb_30d",
        {
            "en": "100 GB, 30 days",
            "ms": "100 GB, 30 hari",
            "zh_Hans": "100 GB，30天",
            "id": "100 GB, 30 hari",
        },
        PlanKind.PREPAID_PACK,
        {"MYR": 55, "IDR": 150_000},
        100 * 1024,
        30,
        frozenset({"web", "app", "store", "api"}),
    ),
    (
        "reload_10",
        {
            "en": "Reload 10 credit",
            "ms": "Tambah nilai 10",
            "zh_Hans": "充值 10",
            "id": "Isi ulang 10",
        },
        PlanKind.RELOAD,
        {"MYR": 10, "IDR": 10_000},
        0,
        7,
        ALL_CHANNELS,
    ),
    (
        "reload_30",
        {
            "en": "Reload 30 credit",
            "ms": "Tambah nilai 30",
            "zh_Hans": "充值 30",
            "id": "Isi ulang 30",
        },
        PlanKind.RELOAD,
        {"MYR": 30, "IDR": 50_000},
        0,
        30,
        ALL_CHANNELS,
    ),
    (
        "postpaid_bill",
        {
            "en": "Pay postpaid bill",
            "ms": "Bayar bil pascabayar",
            "zh_Hans": "缴纳后付费账单",
            "id": "Bayar tagihan pascabayar",
        },
        PlanKind.POSTPAID_BILL,
        {"MYR": 0, "IDR": 0},
        0,
        0,
        ALL_CHANNELS,
    ),
]


def demo_plans(currency: str) -> list[Plan]:
    unit = 10 ** minor_unit_digits(currency)
    return [
        Plan(
            code=code,
            names=names,
            kind=kind,
            price=Money(prices.get(currency, 0) * unit, currency),
            data_quota_mb=quota,
            validity_days=days,
            card_kinds=POSTPAID if kind is PlanKind.POSTPAID_BILL else PREPAID,
            channels=channels,
        )
        for code, names, kind, prices, quota, days, channels in _PLANS
    ]


def iccid_for(seed: int, country_digits: str) -> str:
    body = f"89{country_digits}{seed:013d}"[:18]
    return body + str(luhn_check_digit(body))


@dataclass(frozen=True)
class DemoCard:
    national: str  # national significant number, e.g. "123456789"
    kind: CardKind
    validity_days_from_now: int | None
    credit_whole: int
    quota_mb: int
    bill_whole: int = 0
    bill_due_days_from_now: int = 0
    holder_name: str = ""
    email: str = ""


_DEMO_CARDS = {
    "my": [
        DemoCard(
            "123456789",
            CardKind.PREPAID,
            10,
            5,
            2048,
            holder_name="Aisyah Rahman",
            email="aisyah@example.com",
        ),
        DemoCard(
            "123450001",
            CardKind.PREPAID,
            -3,
            2,
            0,
            holder_name="Tan Wei Ming",
            email="weiming@example.com",
        ),
        DemoCard("123450002", CardKind.PREPAID, -45, 0, 0, holder_name="Ravi Kumar"),
        DemoCard("123400000", CardKind.PREPAID, 5, 0, 1024, holder_name="Network failure demo"),
        DemoCard(
            "198765432",
            CardKind.POSTPAID,
            None,
            0,
            0,
            88,
            5,
            "Syarikat Maju Sdn Bhd",
            "billing@maju.example",
        ),
        DemoCard(
            "198760001",
            CardKind.POSTPAID,
            None,
            0,
            0,
            120,
            -2,
            "Lim Mei Ling",
            "meiling@example.com",
        ),
    ],
    "id": [
        DemoCard(
            "81234567890",
            CardKind.PREPAID,
            10,
            20_000,
            2048,
            holder_name="Budi Santoso",
            email="budi@example.com",
        ),
        DemoCard("81234560001", CardKind.PREPAID, -3, 5_000, 0, holder_name="Siti Aminah"),
        DemoCard("81234560002", CardKind.PREPAID, -45, 0, 0, holder_name="Agus Wijaya"),
        DemoCard("81234000000", CardKind.PREPAID, 5, 0, 1024, holder_name="Network failure demo"),
        DemoCard(
            "81298765432",
            CardKind.POSTPAID,
            None,
            0,
            0,
            150_000,
            5,
            "PT Maju Jaya",
            "billing@majujaya.example",
        ),
    ],
}


async def load_demo(services: Services) -> dict[str, int]:
    """Idempotent: plans are upserted, cards that exist are left alone."""
    profile = services.profile
    now = services.clock.now()
    currency = profile.currency
    unit = 10 ** minor_unit_digits(currency)
    added = 0
    billed: list[tuple[str, DemoCard]] = []
    async with services.unit_of_work() as uow:
        for plan in demo_plans(currency):
            await uow.plans.upsert(plan)
        for index, demo in enumerate(_DEMO_CARDS.get(profile.code, [])):
            msisdn = f"+{profile.calling_code}{demo.national}"
            if await uow.cards.by_number(msisdn=msisdn) is not None:
                continue
            validity_end = (
                None
                if demo.validity_days_from_now is None
                else now + dt.timedelta(days=demo.validity_days_from_now)
            )
            card = Card(
                id=services.new_id(),
                msisdn=msisdn,
                iccid=iccid_for(index + 1, str(profile.calling_code)),
                kind=demo.kind,
                status=CardStatus.ACTIVE,
                currency=currency,
                credit=Money.zero(currency),
                data_quota_mb=demo.quota_mb,
                validity_end=validity_end,
                bill_due=Money.zero(currency),
                bill_due_date=None,
                holder_name=demo.holder_name,
                email=demo.email,
            )
            await uow.cards.add(card, at=now)
            if demo.credit_whole:
                credit = Money(demo.credit_whole * unit, currency)
                await uow.ledger.record(
                    ledger.opening_credit(card_id=card.id, amount=credit), at=now
                )
                await uow.cards.save(
                    replace(card, credit=credit, version=1), expected_version=0, at=now
                )
            if demo.bill_whole:
                billed.append((card.id, demo))
            added += 1
        await uow.commit()
    for card_id, demo in billed:
        await issue_postpaid_bill(
            services,
            card_id=card_id,
            amount=Money(demo.bill_whole * unit, currency),
            due_date=now + dt.timedelta(days=demo.bill_due_days_from_now),
        )
    return {"plans": len(_PLANS), "cards_added": added}
