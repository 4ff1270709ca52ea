"""Auto-renewal on SQLite and PostgreSQL: two workers charge a card's period once (the lease, and
under it the attempt row and the try's unique key); a worker that dies after sending the charge is
resolved by asking the gateway, never by charging again; a declined card is tried again, then
left to go into grace."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import START, AppFactory
from tests.mailed_links import confirmed_account
from tests.unit.fakes import CountingGateway
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.auto_renewal import AttemptStatus, SetterKind, TopUpRule
from topup.domain.card_events import CardEventKind
from topup.domain.cards import CardStatus
from topup.entrypoints.worker import check_payments, move_card_lifecycles, run_jobs
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    NetworkProvisioner,
    PaymentCardDetails,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
)
from topup.services import saved_payment_cards
from topup.services.audit import audit
from topup.services.auto_renewal import (
    PaymentChoice,
    SetBy,
    run_auto_renewals,
    run_auto_top_ups,
    set_auto_renewal,
)
from topup.services.auto_renewal.runs import _look_at
from topup.services.demo import load_demo
from topup.settings import LimitSettings

CARD = "+60123456789"  # demo: prepaid, validity ends START + 10 days
EMAIL = "mei@example.com"
LEAD_S = 12 * 3600
POOL_SIZE = 5


def _limits(**overrides: Any) -> LimitSettings:
    values: dict[str, Any] = {
        "login_slowdown_s": 0,
        "auto_renewal_lead_s": LEAD_S,
        "auto_renewal_tries_max": 2,
        "auto_renewal_retry_base_s": 3600,
    }
    values.update(overrides)
    return LimitSettings(**values)


@dataclass
class Setup:
    first: Application
    second: Application
    clock: FixedClock
    card_id: str
    validity_end: dt.datetime
    gateways: list[CountingGateway] = field(default_factory=list)

    @property
    def charge_at(self) -> dt.datetime:
        return self.validity_end - dt.timedelta(seconds=LEAD_S)

    def payment_ids_charged(self) -> set[str]:
        return {payment_id for gateway in self.gateways for payment_id in gateway.charges}


async def _setup(make_app: AppFactory, number: str, **limits: Any) -> Setup:
    clock = FixedClock(START)
    first = make_app(clock=clock, seed=2, limits=_limits(**limits), pool_size=POOL_SIZE)
    second = make_app(clock=clock, seed=3, limits=_limits(**limits), pool_size=POOL_SIZE)
    gateways = []
    for application in (first, second):
        counting = CountingGateway(application.services.gateway)
        application.services.gateway = counting
        gateways.append(counting)
    services = first.services
    await load_demo(services)
    await confirmed_account(services, email=EMAIL, password="correct horse battery")
    async with services.unit_of_work() as uow:
        account = await uow.accounts.by_email(EMAIL)
        card = await uow.cards.by_number(msisdn=CARD)
    assert account is not None and card is not None and card.validity_end is not None
    details = PaymentCardDetails(number=number, expiry_month=12, expiry_year=2030, cvc="123")
    token = await services.gateway.tokenize(details)
    saved = await saved_payment_cards.save_payment_token(services, account.id, token.token)
    await set_auto_renewal(
        services,
        card_id=card.id,
        plan_code="pack_5gb_7d",
        payment=PaymentChoice.saved_card(account.id, saved.id),
        set_by=SetBy(SetterKind.ACCOUNT, account.id),
    )
    return Setup(first, second, clock, card.id, card.validity_end, gateways)


async def _count(application: Application, table: Any) -> int:
    async with application.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _events(application: Application, card_id: str, kind: CardEventKind) -> list[Any]:
    async with application.services.unit_of_work() as uow:
        events = await uow.cards.events(card_id, limit=100)
    return [event for event in reversed(events) if event.kind == kind.value]


async def test_two_workers_charge_a_cards_period_once(make_app: AppFactory) -> None:
    setup = await _setup(make_app, "4242424242424242")
    setup.clock.set(setup.charge_at)

    await asyncio.gather(
        run_auto_renewals(setup.first.services), run_auto_renewals(setup.second.services)
    )
    # Past the lease, both look at the same card at once: the attempt row decides.
    async with setup.first.services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(setup.card_id)
    assert setting is not None
    await asyncio.gather(
        _look_at(setup.first.services, setting), _look_at(setup.second.services, setting)
    )

    assert len(setup.payment_ids_charged()) == 1
    assert await _count(setup.first, t.renewals) == 1
    assert await _count(setup.first, t.auto_renewal_attempts) == 1
    # Paid, not renewed yet: told succeeded once its activation applies it, by one worker.
    assert await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED) == []
    await asyncio.gather(run_jobs(setup.first.services), run_jobs(setup.second.services))
    await asyncio.gather(
        _look_at(setup.first.services, setting), _look_at(setup.second.services, setting)
    )
    assert len(await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED)) == 1


@dataclass
class DiesAfterSending:
    """A gateway whose caller dies once the charge has gone out (before it hears the answer)."""

    inner: Any
    died: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        await self.inner.charge(request)
        self.died += 1
        raise asyncio.CancelledError  # the worker is killed with the charge sent


async def test_a_worker_killed_after_sending_the_charge_never_charges_again(
    make_app: AppFactory,
) -> None:
    setup = await _setup(make_app, "4242424242424242")
    setup.clock.set(setup.charge_at)
    counting = setup.gateways[0]
    dying = DiesAfterSending(counting)
    setup.first.services.gateway = dying  # type: ignore[assignment]

    with pytest.raises(asyncio.CancelledError):
        await run_auto_renewals(setup.first.services)
    assert dying.died == 1

    # Another worker: the lease keeps it off the card for a while; the payment checks ask the
    # gateway about the charge (its payment id is the gateway's idempotency key).
    services = setup.second.services
    setup.clock.set(setup.charge_at + dt.timedelta(minutes=10))
    for _ in range(3):
        await check_payments(services)
        await run_auto_renewals(services)
        await run_jobs(services)

    assert len(setup.payment_ids_charged()) == 1
    assert await _count(setup.first, t.renewals) == 1
    async with services.unit_of_work() as uow:
        attempt = await uow.auto_renewals.attempt(
            setup.card_id, setup.validity_end.isoformat(timespec="seconds")
        )
        card = await uow.cards.get(setup.card_id)
    assert attempt is not None and attempt.status is AttemptStatus.SUCCEEDED
    assert card is not None and card.validity_end == setup.validity_end + dt.timedelta(days=7)
    assert (await audit(services)).clean


async def test_a_declined_card_is_tried_again_then_left_to_grace(make_app: AppFactory) -> None:
    setup = await _setup(make_app, "4000000000000002")
    services = setup.first.services

    for at in (
        setup.charge_at,
        setup.charge_at + dt.timedelta(hours=1),
        setup.validity_end + dt.timedelta(minutes=1),
    ):
        setup.clock.set(at)
        await run_auto_renewals(services)
        await run_auto_renewals(setup.second.services)
    await move_card_lifecycles(services)

    assert len(setup.payment_ids_charged()) == 2  # tries_max
    retrying = await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_RETRYING)
    assert [event.detail["final"] for event in retrying] == [0]
    [failed] = await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_FAILED)
    assert failed.detail["final"] == 1 and failed.detail["problem"] == "charge_declined"
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(setup.card_id)
    assert card is not None and card.status is CardStatus.GRACE


async def test_a_top_up_pending_at_the_psp_is_settled_once_and_frees_the_cap(
    make_app: AppFactory,
) -> None:
    # The gateway times out and has taken nothing: the top-up is pending until it is asked.
    setup = await _setup(make_app, "4000009990000302")
    services = setup.first.services
    async with services.unit_of_work() as uow:
        setting = await uow.auto_renewals.get(setup.card_id)
        card = await uow.cards.get(setup.card_id, for_update=True)
        assert setting is not None and card is not None
        await uow.cards.save(
            replace(card, data_quota_mb=100, version=card.version + 1),
            expected_version=card.version,
            at=START,
        )
        await uow.commit()
    rule = TopUpRule("pack_5gb_7d", below_mb=500, month_count_max=2, month_amount_max=None)
    await set_auto_renewal(
        services,
        card_id=setup.card_id,
        plan_code="pack_5gb_7d",
        payment=PaymentChoice.saved_card(
            setting.payment_account_id or "", setting.saved_payment_card_id or ""
        ),
        set_by=SetBy(SetterKind.ACCOUNT, setting.payment_account_id or ""),
        top_up=rule,
    )
    await run_auto_top_ups(services)
    since = START - dt.timedelta(days=40)
    async with services.unit_of_work() as uow:
        assert (await uow.auto_renewals.top_ups_since(setup.card_id, since=since))[0] == 1

    setup.clock.set(START + dt.timedelta(minutes=10))
    await check_payments(services)  # declined: nothing was taken
    await asyncio.gather(run_auto_top_ups(services), run_auto_top_ups(setup.second.services))

    events = await _events(setup.first, setup.card_id, CardEventKind.AUTO_TOP_UP)
    assert [event.detail["outcome"] for event in events] == ["pending", "failed"]
    async with services.unit_of_work() as uow:
        assert (await uow.auto_renewals.top_ups_since(setup.card_id, since=since))[0] == 0
        assert (
            await uow.auto_renewals.unsettled_top_ups(
                started_before=setup.clock.now(), refunded_since=since, limit=10
            )
            == []
        )
    assert (await audit(services)).clean


class RefusingNetwork:
    """The network refuses every activation for good."""

    def __init__(self, network: NetworkProvisioner) -> None:
        self._network = network

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        return ProvisionResult(ProvisionStatus.PERMANENT_FAILURE, message="no such subscriber")


class NotInTimeOnce:
    """The network stays busy for the first renewal it is asked to apply; applies the others."""

    def __init__(self, network: NetworkProvisioner, busy: set[str]) -> None:
        self._network = network
        self._busy = busy  # shared by the two workers' networks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._network, name)

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        if not self._busy:
            self._busy.add(request.activation_id)
        if request.activation_id in self._busy:
            return ProvisionResult(ProvisionStatus.TRANSIENT_FAILURE, message="network busy")
        return await self._network.apply(request)


async def _both(setup: Setup, run: Any) -> None:
    await asyncio.gather(run(setup.first.services), run(setup.second.services))


async def _attempt_and_setting(setup: Setup) -> tuple[Any, Any]:
    async with setup.first.services.unit_of_work() as uow:
        attempt = await uow.auto_renewals.attempt(
            setup.card_id, setup.validity_end.isoformat(timespec="seconds")
        )
        setting = await uow.auto_renewals.get(setup.card_id)
    return attempt, setting


async def _try_renewals(setup: Setup) -> list[Any]:
    r = t.renewals
    query = (
        select(r.c.id, r.c.idempotency_key, r.c.status)
        .where(r.c.idempotency_key.like(f"auto:{setup.card_id}:%"))
        .order_by(r.c.idempotency_key)
    )
    async with setup.first.engine.connect() as connection:
        return list(await connection.execute(query))


async def test_a_paid_renewal_the_network_refuses_fails_the_period_once_and_is_left_alone(
    make_app: AppFactory,
) -> None:
    setup = await _setup(make_app, "4242424242424242")
    for application in (setup.first, setup.second):
        application.services.network = RefusingNetwork(application.services.network)  # type: ignore[assignment]
    recheck = dt.timedelta(seconds=setup.first.services.limits.auto_renewal.auto_renewal_recheck_s)
    setup.clock.set(setup.charge_at)

    await _both(setup, run_auto_renewals)  # charged once: paid, activating
    attempt, _ = await _attempt_and_setting(setup)
    assert attempt is not None and attempt.status is AttemptStatus.PAID
    for _ in range(3):  # activation refused for good; the refund to the payment card
        await _both(setup, run_jobs)
    setup.clock.set(setup.charge_at + recheck)
    await _both(setup, run_auto_renewals)

    [renewal] = await _try_renewals(setup)
    assert renewal.status == "refunded"
    assert len(setup.payment_ids_charged()) == 1
    attempt, setting = await _attempt_and_setting(setup)
    assert attempt.status is AttemptStatus.GAVE_UP and attempt.problem == "activation_failed"
    assert await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED) == []
    assert await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_RETRYING) == []
    [failed] = await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_FAILED)
    assert failed.detail["final"] == 1 and failed.detail["problem"] == "activation_failed"
    assert failed.detail["renewal_id"] == renewal.id and failed.detail["fix_path"] == "/help"
    grace_days = setup.first.services.profile.grace_period_days
    grace_end = setup.validity_end + dt.timedelta(days=grace_days)
    assert setting.next_check_at == grace_end
    # No endless rechecks: nothing more for the card until a new period (or grace's end).
    async with setup.first.services.unit_of_work() as uow:
        seen = len(await uow.cards.events(setup.card_id, limit=100))
    for hours in (1, 6, 13, 48, 24 * (grace_days - 1)):
        setup.clock.set(setup.charge_at + dt.timedelta(hours=hours))
        looked = await asyncio.gather(
            run_auto_renewals(setup.first.services), run_auto_renewals(setup.second.services)
        )
        assert looked == [0, 0], hours
        await move_card_lifecycles(setup.first.services)
    async with setup.first.services.unit_of_work() as uow:
        events = await uow.cards.events(setup.card_id, limit=100)
        card = await uow.cards.get(setup.card_id)
    assert [e.kind for e in events if e.kind.startswith("auto_renewal")] == [
        CardEventKind.AUTO_RENEWAL_FAILED.value,
        CardEventKind.AUTO_RENEWAL_ATTEMPT.value,
    ]
    assert len(events) >= seen and card is not None and card.status is CardStatus.GRACE
    assert len(setup.payment_ids_charged()) == 1
    assert (await audit(setup.first.services)).clean


async def test_a_paid_renewal_not_applied_in_time_is_tried_again_once_by_two_workers(
    make_app: AppFactory,
) -> None:
    setup = await _setup(make_app, "4242424242424242", activation_attempts_max=1)
    busy: set[str] = set()
    for application in (setup.first, setup.second):
        application.services.network = NotInTimeOnce(application.services.network, busy)  # type: ignore[assignment]
    setup.clock.set(setup.charge_at)
    await _both(setup, run_auto_renewals)
    for _ in range(3):  # the network stays busy: activation gives up, the payment refunded
        await _both(setup, run_jobs)
    setup.clock.set(setup.charge_at + dt.timedelta(minutes=30))
    await _both(setup, run_auto_renewals)
    attempt, setting = await _attempt_and_setting(setup)
    assert attempt.status is AttemptStatus.RETRY and setting.next_check_at == attempt.next_try_at

    setup.clock.set(attempt.next_try_at)
    await _both(setup, run_auto_renewals)  # one second try, its own key
    for _ in range(3):
        await _both(setup, run_jobs)  # applied; the pass is woken
    await _both(setup, run_auto_renewals)

    tries = await _try_renewals(setup)
    period = setup.validity_end.isoformat(timespec="seconds")
    assert [(row.idempotency_key, row.status) for row in tries] == [
        (f"auto:{setup.card_id}:{period}:1", "refunded"),
        (f"auto:{setup.card_id}:{period}:2", "completed"),
    ]
    assert len(setup.payment_ids_charged()) == 2
    [retrying] = await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_RETRYING)
    assert retrying.detail["problem"] == "activation_timed_out" and retrying.detail["refunded"]
    [succeeded] = await _events(setup.first, setup.card_id, CardEventKind.AUTO_RENEWAL_SUCCEEDED)
    assert succeeded.detail["renewal_id"] == tries[1].id and succeeded.detail["attempt"] == 2
    attempt, setting = await _attempt_and_setting(setup)
    assert attempt.status is AttemptStatus.SUCCEEDED
    async with setup.first.services.unit_of_work() as uow:
        card = await uow.cards.get(setup.card_id)
    assert card is not None and card.validity_end == setup.validity_end + dt.timedelta(days=7)
    new_charge_at = card.validity_end - dt.timedelta(seconds=LEAD_S)
    assert setting.next_check_at == new_charge_at - dt.timedelta(days=3)
    assert (await audit(setup.first.services)).clean
