"""A seeded simulation: thousands of renewals through every channel, with injected gateway and
network faults, checked against the ledger and against a model recomputed from the plans.

One seed drives everything: the fleet of cards, the mix of requests, the sandbox gateway's and
network's faults, and every id and jitter the services draw. A failure names its seed; replay it
with ``TOPUP_SIMULATION_SEED=<seed> pytest tests/simulation``.

Why the services' randomness is replaced: the application built from a seed draws its ids and
backoff jitter from one shared ``random.Random``, so when twenty renewals run at once the ids go
to whichever task the database lets through first, and a run cannot be replayed. Here each task
draws from a stream named after what it works on (a request's idempotency key, or a payment or
activation and the simulated time), whatever order the tasks finish in.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.sql import Executable

from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.db.engine import is_sqlite
from topup.adapters.gateways import sandbox
from topup.adapters.network.sandbox import SandboxNetwork
from topup.bootstrap import Application
from topup.domain import ledger
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InvariantError, TopupError
from topup.domain.methods import PHYSICAL_CHANNELS
from topup.domain.money import Money
from topup.domain.plans import CHANNELS, Plan, PlanKind
from topup.domain.renewal import TERMINAL_STATUSES
from topup.entrypoints.worker import work_once
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    PaymentCardDetails,
    PaymentGateway,
    PaymentToken,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
    RefundResult,
)
from topup.services.audit import audit
from topup.services.billing import issue_postpaid_bill
from topup.services.context import Services
from topup.services.demo import demo_plans, iccid_for
from topup.services.reconcile import CHECKED_STATUSES
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings

SEED = int(os.environ.get("TOPUP_SIMULATION_SEED", "20261125"))
START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
CURRENCY = "MYR"

RENEWALS_MIN = 2_000
FLEET_SIZE = 200
REPLAY_RENEWALS_MIN = 200
REPLAY_FLEET_SIZE = 50
BATCH_SIZE = 20
SQLITE_WORKER_CONCURRENCY = 4  # SQLite has one writer: more concurrent jobs only poll its lock
BATCH_INTERVAL_S = (5.0, 60.0)  # the clock moves this much between batches
AUDIT_EVERY_BATCHES = 25
DRAIN_HORIZON_S = 86_400.0  # everything must settle within a day of the last batch
DRAIN_PASSES_MAX = 5_000
SCHEDULED_WITHIN_S = 86_400.0  # the longest wait any rule schedules (a check flagged for staff)

GATEWAY_FAULT_RATE = 0.1
GATEWAY_SETTLEMENT_DELAY_S = 120
NETWORK_TRANSIENT_FAILURE_RATE = 0.2
NETWORK_PERMANENT_FAILURE_RATE = 0.03
NETWORK_DELAY_S = 5.0

TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)

pytestmark = pytest.mark.slow


def replay_hint() -> str:
    return f"seed {SEED} (replay: TOPUP_SIMULATION_SEED={SEED} pytest tests/simulation)"


def simulation_limits(database_url: str) -> LimitSettings:
    """Small waits so that a day of simulated retries takes seconds; a batch size that lets one
    worker pass take everything due, so which jobs run never depends on the order of ties."""
    return LimitSettings(
        payment_check_base_s=2.0,
        payment_check_cap_s=120.0,
        requires_action_timeout_s=600.0,
        activation_backoff_base_s=2.0,
        activation_backoff_cap_s=60.0,
        worker_batch_size=1_000,
        worker_concurrency=SQLITE_WORKER_CONCURRENCY if is_sqlite(database_url) else BATCH_SIZE,
    )


# --- randomness that replays under concurrency -------------------------------------------------

_stream: contextvars.ContextVar[random.Random] = contextvars.ContextVar("simulation_stream")


def use_stream(*name: object) -> None:
    """Give the running task its own random numbers, named after what it works on."""
    _stream.set(random.Random(":".join(str(part) for part in (SEED, *name))))


class TaskRandom(random.Random):
    """What the services draw ids and jitter from: the stream of the running task."""

    def random(self) -> float:
        return self._current().random()

    def getrandbits(self, k: int) -> int:
        return self._current().getrandbits(k)

    @staticmethod
    def _current() -> random.Random:
        stream = _stream.get(None)
        if stream is None:
            raise InvariantError("a service drew a random number in a task with no stream")
        return stream


class KeyedGateway:
    """The sandbox gateway; each call gives its task a stream named after the payment and time."""

    def __init__(self, inner: PaymentGateway, clock: FixedClock) -> None:
        self._inner = inner
        self._clock = clock
        self.name = inner.name

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        return await self._inner.tokenize(card)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        use_stream("charge", request.payment_id, self._clock.now())
        return await self._inner.charge(request)

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        use_stream("retrieve", request.payment_id, self._clock.now())
        return await self._inner.retrieve(request)

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        use_stream("refund", refund_id, self._clock.now())
        return await self._inner.refund(refund_id=refund_id, charge=charge)


class KeyedNetwork:
    """The sandbox network; each call gives its task a stream named after the activation."""

    def __init__(self, inner: SandboxNetwork) -> None:
        self._inner = inner

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        use_stream("activation", request.activation_id, request.attempt)
        return await self._inner.apply(request)


def make_replayable(services: Services, clock: FixedClock) -> None:
    draws = TaskRandom()
    services.random = draws
    services.new_id = lambda: str(uuid.UUID(int=draws.getrandbits(128), version=4))
    services.gateway = KeyedGateway(services.gateway, clock)
    assert isinstance(services.network, SandboxNetwork)
    services.network = KeyedNetwork(services.network)


# --- the fleet of cards ------------------------------------------------------------------------


class Group(StrEnum):
    ACTIVE = "active"  # prepaid, validity ahead
    GRACE = "grace"  # prepaid, validity just passed: renewed from now
    EXPIRED = "expired"  # prepaid, grace over: refused; credit and quota forfeited
    NETWORK_REFUSES = "network_refuses"  # prepaid, number ends in 0000: every activation fails
    POSTPAID = "postpaid"


@dataclass
class SimCard:
    card: Card  # as created
    group: Group
    bills: list[int] = field(default_factory=list)  # minor units issued to it, in order

    @property
    def renewable_prepaid(self) -> bool:
        return self.group in (Group.ACTIVE, Group.GRACE, Group.NETWORK_REFUSES)


def fleet_groups(size: int) -> list[Group]:
    postpaid, expired, grace, refuses = size // 10, size // 25, max(1, size * 6 // 100), 2
    active = size - postpaid - expired - grace - refuses
    return (
        [Group.ACTIVE] * active
        + [Group.GRACE] * grace
        + [Group.EXPIRED] * expired
        + [Group.NETWORK_REFUSES] * refuses
        + [Group.POSTPAID] * postpaid
    )


def validity_days_from_start(rng: random.Random, group: Group) -> int | None:
    if group is Group.GRACE:
        return -rng.randint(1, 10)
    if group is Group.EXPIRED:
        return -rng.randint(35, 90)
    return None if group is Group.POSTPAID else rng.randint(1, 30)


def new_card(rng: random.Random, index: int, group: Group) -> Card:
    days = validity_days_from_start(rng, group)
    prepaid = group is not Group.POSTPAID
    msisdn = (
        f"+6012{999 - index % 100}0000"
        if group is Group.NETWORK_REFUSES
        else f"+60123{10_001 + index:06d}"
    )
    return Card(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        msisdn=msisdn,
        iccid=iccid_for(index + 1, "60"),
        kind=CardKind.PREPAID if prepaid else CardKind.POSTPAID,
        status=CardStatus.ACTIVE,
        currency=CURRENCY,
        credit=Money(rng.choice([0, 0, 500, 1_000, 2_500]) if prepaid else 0, CURRENCY),
        data_quota_mb=rng.choice([0, 512, 2_048, 5_120]) if prepaid else 0,
        validity_end=None if days is None else START + dt.timedelta(days=days, seconds=index),
        bill_due=Money.zero(CURRENCY),
        bill_due_date=None,
        holder_name=f"Subscriber {index}",
    )


async def create_fleet(services: Services, rng: random.Random, size: int) -> list[SimCard]:
    """Plans and cards in one unit of work, as services/demo.py does; then the first bills."""
    now = services.clock.now()
    fleet = [
        SimCard(new_card(rng, index, group), group)
        for index, group in enumerate(fleet_groups(size))
    ]
    async with services.unit_of_work() as uow:
        for plan in demo_plans(CURRENCY):
            await uow.plans.upsert(plan)
        for sim in fleet:
            await uow.cards.add(sim.card, at=now)
            if not sim.card.credit.is_zero:
                entry = ledger.opening_credit(card_id=sim.card.id, amount=sim.card.credit)
                await uow.ledger.record(entry, at=now)
        await uow.commit()
    for sim in fleet:
        if sim.group is Group.POSTPAID and rng.random() < 0.8:
            await issue_bill(services, rng, sim)
    return fleet


async def issue_bill(services: Services, rng: random.Random, sim: SimCard) -> None:
    amount = rng.randint(20, 200) * 100
    due_date = services.clock.now() + dt.timedelta(days=rng.randint(-5, 14))
    await issue_postpaid_bill(
        services, card_id=sim.card.id, amount=Money(amount, CURRENCY), due_date=due_date
    )
    sim.bills.append(amount)


# --- payment cards from the sandbox's table ----------------------------------------------------

LOST = ("declined", sandbox.CHARGE_NOT_FOUND)  # an injected fault lost the charge: nothing taken
TAKES_MONEY = frozenset({("completed", None), ("refunded", None), LOST})


@dataclass(frozen=True)
class PaymentCard:
    number: str
    weight: int
    endings: frozenset[tuple[str, str | None]]  # (renewal status, decline code) it may end in
    method: str = "credit_card"

    @property
    def details(self) -> PaymentCardDetails:
        cvc = "1234" if sandbox.card_brand(self.number) == "amex" else "123"
        return PaymentCardDetails(number=self.number, expiry_month=12, expiry_year=2030, cvc=cvc)


def declines(code: str) -> frozenset[tuple[str, str | None]]:
    return frozenset({("declined", code), LOST})


PAYMENT_CARDS = (
    PaymentCard("4242424242424242", 30, TAKES_MONEY),
    PaymentCard("5555555555554444", 8, TAKES_MONEY),
    PaymentCard("4000056655665556", 6, TAKES_MONEY, method="debit_card"),
    PaymentCard("378282246310005", 4, TAKES_MONEY),
    PaymentCard("4000000000000002", 5, declines("card_declined")),
    PaymentCard("4000000000009995", 5, declines("insufficient_funds")),
    PaymentCard("4000000000000119", 2, declines("processing_error")),
    PaymentCard(
        sandbox.CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED,
        2,
        declines("international_payments_not_allowed"),
    ),
    PaymentCard(sandbox.CARD_TIMEOUT_CHARGE_TAKEN, 8, TAKES_MONEY),
    PaymentCard(sandbox.CARD_TIMEOUT_NOTHING_TAKEN, 5, frozenset({LOST})),
    PaymentCard(sandbox.CARD_SLOW_SETTLEMENT, 8, TAKES_MONEY),
    PaymentCard(
        sandbox.CARD_GATEWAY_UNREACHABLE, 4, frozenset({("declined", "gateway_unreachable")})
    ),
    PaymentCard("4000000000003220", 5, frozenset({("cancelled", None), LOST})),
)

PREPAID_PLANS = (
    ("pack_5gb_7d", 30),
    ("pack_30gb_30d", 25),
    ("pack_100gb_30d", 10),  # not sold at kiosks: refused there
    ("reload_10", 20),
    ("reload_30", 15),
)


# --- what the simulation submits ---------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    index: int
    card: SimCard
    request: RenewalRequest
    payment_card: PaymentCard
    expected_code: str | None  # the refusal the model predicts; None: a renewal is created
    repeats: int | None = None  # the submission whose idempotency key this one sends again


@dataclass(frozen=True)
class Outcome:
    submission: Submission
    renewal_id: str | None
    code: str | None
    replayed: bool


@dataclass(frozen=True)
class Snapshot:
    """What the simulation reads before a batch: postpaid bills and bill payments under way."""

    bill_due: dict[str, int]
    paying: frozenset[str]


async def submit(services: Services, submission: Submission) -> Outcome:
    # Named by the key, not the submission: of two requests racing with one key, either may be
    # the one that creates the renewal, and it must get the same ids whichever it is.
    use_stream("submission", submission.request.idempotency_key)
    try:
        view = await renew(services, submission.request)
    except TopupError as error:
        return Outcome(submission, None, error.code, replayed=False)
    return Outcome(submission, view.id, None, view.replayed)


def typed_number(rng: random.Random, card: Card, channel: str) -> str:
    """Kiosks scan the ICCID on the SIM carrier; people type the mobile number in many ways."""
    if channel == "kiosk":
        return card.iccid
    national = card.msisdn.removeprefix("+60")
    return rng.choice(
        [card.msisdn, f"0{national}", f"0{national[:2]}-{national[2:5]} {national[5:]}"]
    )


KIOSK_AND_STORE_REGION = "klang_valley"  # kiosks and stores name where they stand


class Planner:
    """Chooses every request from one random.Random, and predicts how each one is answered."""

    def __init__(self, rng: random.Random, fleet: list[SimCard], plans: dict[str, Plan]) -> None:
        self.rng = rng
        self.plans = plans
        self.prepaid = [sim for sim in fleet if sim.renewable_prepaid]
        self.expired = [sim for sim in fleet if sim.group is Group.EXPIRED]
        self.postpaid = [sim for sim in fleet if sim.group is Group.POSTPAID]
        self.created: list[Outcome] = []  # outcomes that created a renewal, in order
        self.outcomes: dict[int, Outcome] = {}
        self.renewal_for_key: dict[str, str] = {}
        self.creations: Counter[str] = Counter()
        self.submitted = 0

    def batch(self, snapshot: Snapshot) -> list[Submission]:
        batch: list[Submission] = []
        paying = set(snapshot.paying)
        while len(batch) < BATCH_SIZE:
            roll = self.rng.random()
            if roll < 0.03:
                batch.append(self.new(self.rng.choice(self.expired)))
            elif roll < 0.07 and self.created:
                batch.append(self.repeat(self.rng.choice(self.created).submission))
            elif roll < 0.09 and self.created:
                batch.append(self.reuse_key(self.rng.choice(self.created).submission))
            elif roll < 0.13:
                original = self.new(self.pick_card(snapshot, paying))
                batch += [original, self.repeat(original)]  # the same request twice at once
            else:
                batch.append(self.new(self.pick_card(snapshot, paying)))
        return batch

    def pick_card(self, snapshot: Snapshot, paying: set[str]) -> SimCard:
        """A prepaid card, or a postpaid card with a bill and no bill payment under way (a
        second payment of the same bill is refunded, which this simulation keeps for the
        network's permanent failures)."""
        billed = [
            sim
            for sim in self.postpaid
            if snapshot.bill_due.get(sim.card.id, 0) > 0 and sim.card.id not in paying
        ]
        if billed and self.rng.random() < 0.15:
            sim = self.rng.choice(billed)
            paying.add(sim.card.id)
            return sim
        return self.rng.choice(self.prepaid)

    def new(self, sim: SimCard) -> Submission:
        rng = self.rng
        if sim.group is Group.POSTPAID:
            plan = self.plans["postpaid_bill"]
        else:
            codes, weights = zip(*PREPAID_PLANS, strict=True)
            plan = self.plans[rng.choices(codes, weights)[0]]
        channel = rng.choice(CHANNELS)
        payment_card = rng.choices(PAYMENT_CARDS, [card.weight for card in PAYMENT_CARDS])[0]
        request = RenewalRequest(
            card_number=typed_number(rng, sim.card, channel),
            plan_code=plan.code,
            payment=payment_card.details,
            channel=channel,
            idempotency_key=f"sim-{SEED}-{self.submitted}",
            method=payment_card.method,
            region=KIOSK_AND_STORE_REGION if channel in PHYSICAL_CHANNELS else None,
        )
        expected = None
        if payment_card.number == sandbox.CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED:
            # Refused before anything is written: the IIN table knows its issuer's rule.
            expected = "international_payments_not_allowed"
        elif channel not in plan.channels:
            expected = "plan_not_on_channel"
        elif sim.group is Group.EXPIRED:
            expected = "card_expired"
        return self.submission(sim, request, payment_card, expected)

    def repeat(self, original: Submission) -> Submission:
        return self.submission(
            original.card,
            original.request,
            original.payment_card,
            original.expected_code,
            repeats=original.index,
        )

    def reuse_key(self, original: Submission) -> Submission:
        other = next(c for c in CHANNELS if c != original.request.channel)
        request = replace(original.request, channel=other)
        return self.submission(
            original.card,
            request,
            original.payment_card,
            "idempotency_key_reused",
            repeats=original.index,
        )

    def submission(
        self,
        sim: SimCard,
        request: RenewalRequest,
        payment_card: PaymentCard,
        expected: str | None,
        repeats: int | None = None,
    ) -> Submission:
        index = self.submitted
        self.submitted += 1
        return Submission(index, sim, request, payment_card, expected, repeats)

    def record(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Keep the outcomes; return how each differs from what the model predicted."""
        wrong: list[str] = []
        for outcome in outcomes:
            submission = outcome.submission
            key = submission.request.idempotency_key or ""
            self.outcomes[submission.index] = outcome
            if outcome.code != submission.expected_code:
                wrong.append(
                    f"submission {submission.index} answered {outcome.code}, "
                    f"expected {submission.expected_code}"
                )
            if outcome.renewal_id is None:
                continue
            if self.renewal_for_key.setdefault(key, outcome.renewal_id) != outcome.renewal_id:
                wrong.append(f"key {key} answered with two renewals")
            if not outcome.replayed:
                self.created.append(outcome)
                self.creations[key] += 1
                if self.creations[key] > 1:
                    wrong.append(f"key {key} created {self.creations[key]} renewals")
        return wrong


# --- running -----------------------------------------------------------------------------------


async def rows(app: Application, statement: Executable) -> list[Row[Any]]:
    async with app.engine.connect() as connection:
        return list(await connection.execute(statement))


async def snapshot(app: Application) -> Snapshot:
    cards = await rows(
        app, select(t.cards.c.id, t.cards.c.bill_due_minor).where(t.cards.c.kind == "postpaid")
    )
    paying = await rows(
        app,
        select(t.renewals.c.card_id).where(
            t.renewals.c.kind == PlanKind.POSTPAID_BILL.value,
            t.renewals.c.status.not_in(TERMINAL),
        ),
    )
    return Snapshot(
        {row.id: int(row.bill_due_minor) for row in cards}, frozenset(r[0] for r in paying)
    )


@dataclass
class Run:
    fleet: list[SimCard]
    planner: Planner
    batches: int
    elapsed_s: float


async def simulate(
    app: Application, clock: FixedClock, *, renewals_min: int, fleet_size: int
) -> Run:
    started = time.perf_counter()
    services = app.services
    make_replayable(services, clock)
    rng = random.Random(SEED)
    fleet = await create_fleet(services, rng, fleet_size)
    planner = Planner(rng, fleet, {plan.code: plan for plan in demo_plans(CURRENCY)})
    batches = 0
    while len(planner.created) < renewals_min:
        state = await snapshot(app)
        for sim in planner.postpaid:
            if state.bill_due.get(sim.card.id) == 0 and rng.random() < 0.1:
                await issue_bill(services, rng, sim)
        batch = planner.batch(await snapshot(app))
        outcomes = await asyncio.gather(*(submit(services, s) for s in batch))
        wrong = planner.record(outcomes)
        assert not wrong, f"{replay_hint()}, batch {batches}: {wrong[:10]}"
        clock.advance(rng.uniform(*BATCH_INTERVAL_S))
        await work_once(services)
        batches += 1
        await check_on_their_way(app)
        if batches % AUDIT_EVERY_BATCHES == 0:
            await check_audit(services)
    await drain(app, clock)
    return Run(fleet, planner, batches, time.perf_counter() - started)


async def next_due(app: Application) -> dt.datetime | None:
    payments, jobs = t.payments, t.jobs
    check = await rows(
        app,
        select(func.min(payments.c.next_check_at)).where(payments.c.status.in_(CHECKED_STATUSES)),
    )
    job = await rows(app, select(func.min(jobs.c.next_attempt_at)).where(jobs.c.status == "queued"))
    due = [at for at in (check[0][0], job[0][0]) if at is not None]
    return min(due) if due else None


async def drain(app: Application, clock: FixedClock) -> None:
    """Run the worker and move the clock to the next thing due until nothing is left to do."""
    horizon = clock.now() + dt.timedelta(seconds=DRAIN_HORIZON_S)
    for _ in range(DRAIN_PASSES_MAX):
        if await work_once(app.services):
            continue
        due = await next_due(app)
        if due is None or due > horizon:
            return
        assert due > clock.now(), f"{replay_hint()}: work due at {due} was not done"
        clock.set(due)
    raise AssertionError(f"{replay_hint()}: still busy after {DRAIN_PASSES_MAX} worker passes")


# --- checks ------------------------------------------------------------------------------------


def not_on_their_way(now: dt.datetime) -> Executable:
    """Renewals neither terminal nor provably on their way to a terminal state. On its way means:
    unpaid, with a payment the reconciler checks and a check scheduled; paid, with a job queued;
    in both cases due within the longest wait any rule schedules."""
    r, p, j = t.renewals, t.payments, t.jobs
    moving = t.renewals.alias("moving")
    soon = now + dt.timedelta(seconds=SCHEDULED_WITHIN_S)
    check_scheduled = and_(
        p.c.status.in_(CHECKED_STATUSES),
        p.c.next_check_at.is_not(None),
        p.c.next_check_at <= soon,
    )
    job_queued = exists().where(
        j.c.subject_id == moving.c.id, j.c.status == "queued", j.c.next_attempt_at <= soon
    )
    on_their_way = (
        select(moving.c.id)
        .select_from(moving.join(p, p.c.renewal_id == moving.c.id))
        .where(
            or_(
                and_(moving.c.status == "pending_payment", p.c.status == "not_sent"),
                and_(moving.c.status == "requires_action", p.c.status == "requires_action"),
                and_(moving.c.status == "payment_pending", p.c.status != "requires_action"),
            ),
            check_scheduled,
        )
        .union(
            select(moving.c.id)
            .select_from(moving.join(p, p.c.renewal_id == moving.c.id))
            .where(moving.c.status == "activating", p.c.status == "succeeded", job_queued)
        )
    )
    return select(r.c.id, r.c.status).where(
        r.c.status.not_in(TERMINAL), not_(r.c.id.in_(on_their_way))
    )


async def check_on_their_way(app: Application) -> None:
    stuck = await rows(app, not_on_their_way(app.services.clock.now()))
    assert not stuck, f"{replay_hint()}: renewals going nowhere: {[tuple(r) for r in stuck[:10]]}"


async def check_audit(services: Services) -> None:
    report = await audit(services)
    assert report.clean, f"{replay_hint()}: audit: {report.violations[:10]}"


async def final_statuses(app: Application) -> dict[str, str]:
    """Idempotency key -> status of its renewal."""
    found = await rows(app, select(t.renewals.c.idempotency_key, t.renewals.c.status))
    return {row.idempotency_key: row.status for row in found}


async def check_ledger_and_keys(app: Application, counts: Counter[str]) -> None:
    e = t.ledger_entries
    entries = await rows(app, select(e.c.kind, func.count()).group_by(e.c.kind))
    by_kind = {row[0]: int(row[1]) for row in entries}
    paid = counts["completed"] + counts["refunded"] + counts["activating"]
    assert by_kind.get("capture", 0) == paid, f"{replay_hint()}: {by_kind} for {dict(counts)}"
    assert by_kind.get("refund", 0) == counts["refunded"], f"{replay_hint()}: {by_kind}"
    key = t.renewals.c.idempotency_key
    twice = await rows(app, select(key).group_by(key).having(func.count() > 1))
    assert not twice, f"{replay_hint()}: keys with two renewals: {[r[0] for r in twice[:10]]}"


async def check_endings(app: Application, run: Run) -> None:
    """Each renewal ended where its payment card says it may, and refunded if and only if the
    network refuses it for good."""
    network = SandboxNetwork(permanent_failure_rate=NETWORK_PERMANENT_FAILURE_RATE, seed=SEED)
    r = t.renewals
    found = await rows(app, select(r.c.idempotency_key, r.c.id, r.c.status, r.c.decline_code))
    creators = {o.submission.request.idempotency_key: o.submission for o in run.planner.created}
    assert len(found) == len(creators), f"{replay_hint()}: {len(found)} != {len(creators)}"
    wrong: list[str] = []
    for row in found:
        submission = creators[row.idempotency_key]
        ending = (row.status, row.decline_code)
        if ending not in submission.payment_card.endings:
            wrong.append(f"{row.id} paid by {submission.payment_card.number} ended {ending}")
        if row.status in ("completed", "refunded"):
            verdict = await network.apply(
                ProvisionRequest(
                    activation_id=row.id,
                    msisdn=submission.card.card.msisdn,
                    iccid=submission.card.card.iccid,
                    plan_code=submission.request.plan_code,
                    data_quota_mb=0,
                    validity_days=0,
                    first_requested_at=START,
                    attempt=1,
                )
            )
            refuses = verdict.status is ProvisionStatus.PERMANENT_FAILURE
            if refuses != (row.status == "refunded"):
                wrong.append(f"{row.id} is {row.status}; the network refuses it: {refuses}")
    assert not wrong, f"{replay_hint()}: {wrong[:10]}"


def expected_card(
    sim: SimCard, completed: list[Row[Any]], plans: dict[str, Plan]
) -> dict[str, Any]:
    """A card's balances recomputed from how it started and the plans of its completed renewals."""
    card = sim.card
    credit, quota, validity = card.credit.minor, card.data_quota_mb, card.validity_end
    if sim.group is Group.EXPIRED:
        credit, quota = 0, 0  # forfeited at expiry, on the ledger
    bill = sum(sim.bills)
    for renewal in sorted(completed, key=lambda row: row.completed_at):
        plan = plans[renewal.plan_code]
        if plan.kind is PlanKind.POSTPAID_BILL:
            bill -= int(renewal.amount_minor)
            continue
        assert validity is not None
        validity = max(renewal.completed_at, validity) + dt.timedelta(days=plan.validity_days)
        quota += plan.data_quota_mb
        if plan.kind is PlanKind.RELOAD:
            credit += plan.price.minor
    return {
        "credit_minor": credit,
        "data_quota_mb": quota,
        "validity_end": validity,
        "bill_due_minor": bill,
    }


async def check_cards(app: Application, run: Run) -> None:
    r, c = t.renewals, t.cards
    completed = await rows(
        app,
        select(r.c.card_id, r.c.plan_code, r.c.amount_minor, r.c.completed_at).where(
            r.c.status == "completed"
        ),
    )
    by_card: dict[str, list[Row[Any]]] = {}
    for row in completed:
        by_card.setdefault(row.card_id, []).append(row)
    plans = run.planner.plans
    stored = {row.id: row for row in await rows(app, select(c))}
    wrong: list[str] = []
    for sim in run.fleet:
        row = stored[sim.card.id]
        expected = expected_card(sim, by_card.get(sim.card.id, []), plans)
        actual = {name: row._mapping[name] for name in expected}
        if actual != expected:
            wrong.append(f"card {sim.card.msisdn} ({sim.group}): {actual} != {expected}")
        if (sim.group is Group.EXPIRED) != (row.status == CardStatus.EXPIRED.value):
            wrong.append(f"card {sim.card.msisdn} ({sim.group}) is {row.status}")
        if sim.group is Group.POSTPAID and row.bill_due_minor == 0 and row.status != "active":
            wrong.append(f"card {sim.card.msisdn} owes nothing and is {row.status}")
    prepaid_price = [
        row for row in completed if plans[row.plan_code].kind is not PlanKind.POSTPAID_BILL
    ]
    for row in prepaid_price:
        if int(row.amount_minor) != plans[row.plan_code].price.minor:
            wrong.append(f"a {row.plan_code} renewal cost {row.amount_minor}")
    assert not wrong, f"{replay_hint()}: {len(wrong)} cards differ: {wrong[:5]}"


async def check_run(app: Application, run: Run) -> Counter[str]:
    """Every invariant after the drain; returns the final counts by status."""
    await check_audit(app.services)
    await check_on_their_way(app)
    counts = Counter((await final_statuses(app)).values())
    unsettled = {s: n for s, n in counts.items() if s not in TERMINAL}
    assert not unsettled, (
        f"{replay_hint()}: still unsettled a day after the last batch: {unsettled}"
    )
    await check_ledger_and_keys(app, counts)
    await check_endings(app, run)
    await check_cards(app, run)
    return counts


async def check_variety(app: Application, run: Run, counts: Counter[str]) -> dict[str, int]:
    """A simulation that never met a fault proves nothing: each kind of event happened."""
    outcomes = list(run.planner.outcomes.values())
    codes = Counter(o.code for o in outcomes if o.code is not None)
    twins = [
        o
        for o in outcomes
        if o.submission.repeats == o.submission.index - 1
        and run.planner.outcomes[o.submission.index - 1].submission.request == o.submission.request
    ]
    r, p, j, e, c = t.renewals, t.payments, t.jobs, t.ledger_entries, t.card_events
    lost = select(func.count()).where(r.c.decline_code == sandbox.CHARGE_NOT_FOUND)
    rechecked = select(func.count()).where(p.c.check_attempts > 1)
    retried = select(func.count()).where(j.c.kind == "activate", j.c.attempts > 0)
    forfeits = select(func.count()).where(e.c.kind == "forfeit")
    suspended = select(func.count()).where(c.c.kind == "status_suspended")
    counted = {
        name: (await rows(app, query))[0][0]
        for name, query in {
            "charges_lost_by_injected_faults": lost,
            "payments_checked_again": rechecked,
            "activations_retried_after_network_failures": retried,
            "forfeits_at_expiry": forfeits,
            "postpaid_suspensions": suspended,
        }.items()
    }
    observed = {
        **{status: counts[status] for status in ("completed", "declined", "refunded", "cancelled")},
        **{
            code: codes[code]
            for code in (
                "card_expired",
                "plan_not_on_channel",
                "international_payments_not_allowed",
            )
        },
        "idempotency_key_reused": codes["idempotency_key_reused"],
        "replays": sum(o.replayed for o in outcomes),
        "concurrent_duplicates": len(twins),
        "bill_payments": sum(
            o.submission.card.group is Group.POSTPAID for o in run.planner.created
        ),
        "grace_renewals": sum(o.submission.card.group is Group.GRACE for o in run.planner.created),
        **counted,
    }
    missing = [name for name, count in observed.items() if count == 0]
    assert not missing, f"{replay_hint()}: the run never exercised {missing}: {observed}"
    return observed


async def wipe(app: Application) -> None:
    async with app.engine.begin() as connection:
        for table in reversed(t.metadata.sorted_tables):
            await connection.execute(table.delete())


FAULTS: dict[str, Any] = {
    "gateway_fault_rate": GATEWAY_FAULT_RATE,
    "gateway_settlement_delay_s": GATEWAY_SETTLEMENT_DELAY_S,
    "network_transient_failure_rate": NETWORK_TRANSIENT_FAILURE_RATE,
    "network_permanent_failure_rate": NETWORK_PERMANENT_FAILURE_RATE,
    "network_delay_s": NETWORK_DELAY_S,
    "sandbox_seed": SEED,
}


# --- the tests ---------------------------------------------------------------------------------


async def test_two_thousand_renewals_under_faults_keep_every_invariant(
    make_app: Any, database_url: str
) -> None:
    clock = FixedClock(START)
    app = make_app(clock=clock, limits=simulation_limits(database_url), seed=SEED, **FAULTS)
    run = await simulate(app, clock, renewals_min=RENEWALS_MIN, fleet_size=FLEET_SIZE)
    counts = await check_run(app, run)
    observed = await check_variety(app, run, counts)
    print(
        f"{replay_hint()}: {len(run.planner.outcomes)} submissions, {len(run.planner.created)} "
        f"renewals in {run.batches} batches, {run.elapsed_s:.1f} s: {dict(sorted(counts.items()))}"
        f"; exercised {observed}"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_same_seed_replays_to_the_same_outcome(make_app: Any, database_url: str) -> None:
    """A smaller run, twice from the same seed: every renewal ends the same way both times."""
    finals: list[dict[str, str]] = []
    for _ in range(2):
        clock = FixedClock(START)
        app = make_app(clock=clock, limits=simulation_limits(database_url), seed=SEED, **FAULTS)
        await wipe(app)
        run = await simulate(
            app, clock, renewals_min=REPLAY_RENEWALS_MIN, fleet_size=REPLAY_FLEET_SIZE
        )
        await check_run(app, run)
        finals.append(await final_statuses(app))
    first, second = finals
    assert Counter(first.values()) == Counter(second.values()), replay_hint()
    assert first == second, f"{replay_hint()}: same counts, but other renewals ended otherwise"


async def test_the_query_finds_a_renewal_with_nothing_scheduled(make_app: Any) -> None:
    """The stuck-renewal query can fail: a paid renewal whose job is gone, and an unpaid one
    whose payment check was dropped, are both reported."""
    clock = FixedClock(START)
    app = make_app(clock=clock, seed=SEED)
    services = app.services
    make_replayable(services, clock)
    fleet = await create_fleet(services, random.Random(SEED), 10)
    sim = next(sim for sim in fleet if sim.group is Group.ACTIVE)
    outcomes = []
    for index, number in enumerate(("4242424242424242", sandbox.CARD_TIMEOUT_CHARGE_TAKEN)):
        request = RenewalRequest(
            card_number=sim.card.msisdn,
            plan_code="pack_5gb_7d",
            payment=PaymentCardDetails(number=number, expiry_month=12, expiry_year=2030, cvc="123"),
            idempotency_key=f"stuck-{index}",
        )
        card = PaymentCard(number, 1, TAKES_MONEY)
        outcomes.append(await submit(services, Submission(index, sim, request, card, None)))
    assert not await rows(app, not_on_their_way(clock.now()))
    async with app.engine.begin() as connection:
        await connection.execute(t.jobs.delete())
        await connection.execute(t.payments.update().values(next_check_at=None))
    stuck = {row.id: row.status for row in await rows(app, not_on_their_way(clock.now()))}
    assert stuck == {
        outcomes[0].renewal_id: "activating",
        outcomes[1].renewal_id: "payment_pending",
    }
