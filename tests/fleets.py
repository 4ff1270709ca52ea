"""What the fleet tests share: accounts, an organisation with an owner, an admin and a viewer,
another organisation with its own owner, prepaid cards in the fleet, and a payment card."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from topup.domain.accounts import Account
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.fleets import MemberRole
from topup.domain.money import Money
from topup.ports import PaymentCardDetails
from topup.services.activation import run_due_jobs
from topup.services.context import Services
from topup.services.demo import iccid_for
from topup.services.fleets import bulk, organisations

PAYMENT_CARD = PaymentCardDetails("4242424242424242", 12, 2030, "123")
DECLINED_PAYMENT_CARD = PaymentCardDetails("4000000000000002", 12, 2030, "123")
PLAN = "pack_5gb_7d"
FLEET_ICCID_SEED = 5_000_000


@dataclass(frozen=True)
class Fleet:
    organisation_id: str
    other_organisation_id: str
    owner_id: str
    admin_id: str
    viewer_id: str
    outsider_id: str  # the owner of the other organisation
    msisdns: list[str]
    other_msisdns: list[str]  # cards of the other organisation


async def add_account(services: Services, email: str, password_hash: str = "not-a-hash") -> str:
    account_id = services.new_id()
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        await uow.accounts.add(
            Account(account_id, email, password_hash, "en", now, confirmed_at=now)
        )
        await uow.commit()
    return account_id


async def add_cards(services: Services, count: int, *, first: int) -> list[str]:
    now = services.clock.now()
    msisdns = []
    async with services.unit_of_work() as uow:
        for index in range(first, first + count):
            msisdn = f"+6019{index:07d}"
            card = Card(
                id=services.new_id(),
                msisdn=msisdn,
                iccid=iccid_for(FLEET_ICCID_SEED + index, "60"),
                kind=CardKind.PREPAID,
                status=CardStatus.ACTIVE,
                currency="MYR",
                credit=Money.zero("MYR"),
                data_quota_mb=1024,
                validity_end=now + dt.timedelta(days=3 + index % 20),
                bill_due=Money.zero("MYR"),
                bill_due_date=None,
            )
            await uow.cards.add(card, at=now)
            msisdns.append(msisdn)
        await uow.commit()
    return msisdns


async def make_fleet(
    services: Services,
    *,
    cards: int = 5,
    payment_card: PaymentCardDetails | None = PAYMENT_CARD,
    language: str = "en",
    password_hash: str = "not-a-hash",  # a real hash (accounts.hash_password) to sign in with
) -> Fleet:
    owner = await add_account(services, "owner@fleet.example", password_hash)
    admin = await add_account(services, "admin@fleet.example", password_hash)
    viewer = await add_account(services, "viewer@fleet.example", password_hash)
    outsider = await add_account(services, "owner@other.example", password_hash)
    made = await organisations.create_organisation(
        services, name="Fleet Sdn Bhd", owner_email="owner@fleet.example", language=language
    )
    other = await organisations.create_organisation(
        services, name="Other Bhd", owner_email="owner@other.example", language="en"
    )
    await organisations.put_member(
        services, made.id, email="admin@fleet.example", role=MemberRole.ADMIN
    )
    await organisations.put_member(
        services, made.id, email="viewer@fleet.example", role=MemberRole.VIEWER
    )
    msisdns = await add_cards(services, cards, first=1)
    other_msisdns = await add_cards(services, 2, first=cards + 1)
    await organisations.import_cards(services, made.id, msisdns)
    await organisations.import_cards(services, other.id, other_msisdns)
    if payment_card is not None:
        token = (await services.gateway.tokenize(payment_card)).token
        await organisations.set_payment_token_as_operator(services, made.id, token)
        await organisations.set_payment_token_as_operator(services, other.id, token)
    return Fleet(made.id, other.id, owner, admin, viewer, outsider, msisdns, other_msisdns)


def lines_of(msisdns: list[str], plan: str = PLAN) -> str:
    return "number,plan\n" + "\n".join(f"{msisdn},{plan}" for msisdn in msisdns) + "\n"


async def work_bulk(services: Services) -> int:
    """One worker round for bulk renewals: its lines' pass, then the jobs' (the activations of
    the renewals it paid: a line succeeds once its renewal is applied). Things done."""
    return await bulk.process_bulk_lines(services) + await run_due_jobs(services)
