"""The harness of the staying-connected simulation (issue 11): a fleet of cards, the subscribers
who renew them (or forget to), and two workers sharing one database on an injected clock.

Everything the simulation decides is drawn from one ``random.Random(seed)``; the workers' ids come
from their own seeded streams (two workers drawing the same ids would collide). What a run did is
kept in ``Run`` for the invariant checks (``tests/simulation/invariants.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.sql import Executable

from tests.mailed_links import confirmed_account
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways import sandbox
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.bootstrap import Application
from topup.domain import ledger
from topup.domain.auto_renewal import SetterKind
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import TopupError
from topup.domain.methods import PHYSICAL_CHANNELS
from topup.domain.money import Money
from topup.domain.plans import CHANNELS, Plan
from topup.domain.renewal import TERMINAL_STATUSES
from topup.domain.usage_files import UsageFormat
from topup.entrypoints.worker import run_passes
from topup.ports import (
    ChargeRequest,
    GatewayOutcome,
    NetworkProvisioner,
    PaymentCardDetails,
    ProvisionRequest,
    ProvisionResult,
    ProvisionStatus,
    SmsSender,
)
from topup.services import saved_payment_cards
from topup.services.auto_renewal import PaymentChoice as AutoPayment
from topup.services.auto_renewal import SetBy, set_auto_renewal
from topup.services.billing import issue_postpaid_bill
from topup.services.context import Services
from topup.services.demo import demo_plans, iccid_for
from topup.services.fleets.bulk import start_run_as_operator
from topup.services.fleets.organisations import (
    choose_payment_card,
    create_organisation,
    import_cards,
)
from topup.services.renewals import RenewalRequest, renew
from topup.services.usage import import_usage
from topup.services.wallets import handle_webhook
from topup.settings import LimitSettings

START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
CURRENCY = "MYR"
REGION = "klang_valley"  # where the simulation's kiosks and stores stand
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)

# The fleet.
POSTPAID_SHARE = 0.1
LAPSING_SHARE = 0.4  # prepaid subscribers who never renew: their cards expire and forfeit
# A prepaid card's validity ends this many days from the start (before it: the card is in grace).
FIRST_VALIDITY_DAYS = (-25, 30)
NETWORK_REFUSES_EVERY = 50  # one card in this many has a number the network refuses
# Subscribers.
RENEW_AHEAD_S = (
    2 * 86_400
)  # a subscriber starts thinking of renewing this long before validity ends
RENEW_CHANCE_PER_STEP = 0.4  # ... and renews in a step with this chance, until it is renewed
BILL_EVERY_DAYS = 30
FIRST_BILL_DAYS_MAX = 10  # a postpaid card's first bill is issued within this many days
BILL_DUE_DAYS = 14
BILL_PAID_CHANCE_PER_STEP = 0.1  # postpaid subscribers who pay, pay on one step in ten
UNPAID_BILL_SHARE = 0.2  # postpaid subscribers who let their bill go (their card is suspended)
# Usage: once a simulated day the network sends a file of the day's usage records (JSON lines).
USAGE_EVERY_S = 86_400
USAGE_CARD_SHARE = 0.6  # of the cards with data, those that used some that day
USAGE_MB = (50, 2_500)  # what one record used, at most
USAGE_RESENT_SHARE = 0.05  # records of the previous file sent again (applied once all the same)
USAGE_LATE_SHARE = 0.05  # records arriving days late (used before a renewal: not counted)
USAGE_LATE_S = 3 * 86_400
USAGE_MALFORMED_PER_FILE = 2  # lines that cannot be read, reported by their number
WEBHOOK_SHARE = 0.5  # wallet payments told by webhook; the others found by the reconciler
# Auto-renewal: some subscribers who renew turn it on, paying by a saved payment card.
AUTO_RENEWAL_SHARE = 0.2  # of the prepaid subscribers who renew
AUTO_RENEWAL_PLAN = "pack_30gb_30d"
AUTO_RENEWAL_ACCOUNT = "fleet-owner@example.com"
# Fleets: an organisation renews its cards in bulk, uploading each file twice.
FLEET_SHARE = 0.05  # of the prepaid subscribers who renew, not on auto-renewal
BULK_CHANCE_PER_STEP = 0.5  # the fleet admin uploads the cards near their end in a step
BULK_PLAN = "pack_30gb_30d"
# Workers.
WORKER_BATCH_SIZE = 16  # small, so that the two workers share the jobs of a step
WORKER_CONCURRENCY = 4
JOB_LEASE_S = 120.0  # a killed worker's jobs are taken again after this (one step later)
DRAIN_STEP_S = 600.0  # after the last day: the clock moves this much until nothing is due
DRAIN_STEPS_MAX = 400
TRAP_WAIT_S = 10.0  # how long a step waits for the doomed worker to reach the trap


@dataclass(frozen=True)
class PaymentChoice:
    """How a renewal is paid: a sandbox card or an e-wallet account, and its share of renewals."""

    name: str
    weight: int
    method: str = "credit_card"
    number: str | None = None
    wallet_account: str | None = None

    def details(self) -> PaymentCardDetails | None:
        if self.number is None:
            return None
        return PaymentCardDetails(number=self.number, expiry_month=12, expiry_year=2030, cvc="123")


PAYMENTS = (
    PaymentChoice("card", 45, number="4242424242424242"),
    PaymentChoice("debit card", 10, method="debit_card", number="4000056655665556"),
    PaymentChoice("declined card", 5, number="4000000000000002"),
    PaymentChoice("card without funds", 3, number="4000000000009995"),
    PaymentChoice("answer lost, charge taken", 5, number=sandbox.CARD_TIMEOUT_CHARGE_TAKEN),
    PaymentChoice("answer lost, nothing taken", 3, number=sandbox.CARD_TIMEOUT_NOTHING_TAKEN),
    PaymentChoice("slow settlement", 4, number=sandbox.CARD_SLOW_SETTLEMENT),
    PaymentChoice("wallet", 14, method="ewallet:tng", wallet_account="60123400001"),
    PaymentChoice("wallet declined", 3, method="ewallet:tng", wallet_account="60123400000"),
    PaymentChoice("wallet never answered", 3, method="ewallet:tng", wallet_account="60123409999"),
)


@dataclass(frozen=True)
class SavedCard:
    """A payment card saved for auto-renewal, and its share of the cards that auto-renew."""

    name: str
    weight: int
    number: str
    expiry: tuple[int, int] = (12, 2030)  # month, year


SAVED_CARDS = (
    SavedCard("works", 60, "4242424242424242"),
    SavedCard("declines", 15, "4000000000000002"),
    SavedCard("no funds", 10, "4000000000009995"),
    SavedCard("expires in November", 15, "5555555555554444", (11, 2026)),
)
PREPAID_PLANS = (
    ("pack_30gb_30d", 50),
    ("pack_100gb_30d", 20),
    ("reload_30", 27),
    ("pack_5gb_7d", 3),
)


def simulation_limits(*, sqlite: bool) -> LimitSettings:
    return LimitSettings(
        payment_check_base_s=60.0,
        payment_check_cap_s=3_600.0,
        requires_action_timeout_s=3_600.0,
        activation_backoff_base_s=60.0,
        activation_backoff_cap_s=3_600.0,
        job_lease_s=JOB_LEASE_S,
        worker_batch_size=WORKER_BATCH_SIZE,
        worker_concurrency=1 if sqlite else WORKER_CONCURRENCY,
        lifecycle_batch_size=1_000,
    )


# --- the fleet ---------------------------------------------------------------------------------


@dataclass
class Subscriber:
    """A card and how its subscriber behaves, with what the simulation did to it."""

    card: Card  # as created
    lapses: bool  # never renews (prepaid) / never pays (postpaid)
    bills: list[int] = field(default_factory=list)  # minor units issued, in order
    auto_renewal: str | None = None  # the SavedCard's name, if auto-renewal is on
    in_fleet: bool = False  # the organisation renews it in bulk
    next_bill_at: dt.datetime | None = None

    @property
    def prepaid(self) -> bool:
        return self.card.kind is CardKind.PREPAID


def new_card(rng: random.Random, index: int, *, prepaid: bool) -> Card:
    validity = START + dt.timedelta(
        days=rng.randint(*FIRST_VALIDITY_DAYS), seconds=rng.randint(0, 86_399)
    )
    return Card(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        msisdn=(  # the sandbox network refuses numbers ending in 0000: refunded renewals
            f"+6019{index // NETWORK_REFUSES_EVERY:03d}0000"
            if index % NETWORK_REFUSES_EVERY == 0
            else f"+60124{index:06d}"
        ),
        iccid=iccid_for(index + 1, "60"),
        kind=CardKind.PREPAID if prepaid else CardKind.POSTPAID,
        status=CardStatus.ACTIVE,
        currency=CURRENCY,
        credit=Money(rng.choice([0, 0, 500, 1_000, 2_500]) if prepaid else 0, CURRENCY),
        data_quota_mb=rng.choice([0, 1_024, 5_120]) if prepaid else 0,
        validity_end=validity if prepaid else None,
        bill_due=Money.zero(CURRENCY),
        bill_due_date=None,
        holder_name=f"Subscriber {index}",
    )


async def create_fleet(services: Services, rng: random.Random, size: int) -> list[Subscriber]:
    now = services.clock.now()
    fleet: list[Subscriber] = []
    postpaid = 0
    for index in range(size):
        prepaid = rng.random() >= POSTPAID_SHARE
        if prepaid:
            lapses = rng.random() < LAPSING_SHARE
        else:  # every fifth, so that even a small fleet has a card suspended
            lapses = postpaid % round(1 / UNPAID_BILL_SHARE) == 0
            postpaid += 1
        sub = Subscriber(new_card(rng, index, prepaid=prepaid), lapses)
        if not prepaid:
            sub.next_bill_at = now + dt.timedelta(hours=rng.randint(0, FIRST_BILL_DAYS_MAX * 24))
        fleet.append(sub)
    async with services.unit_of_work() as uow:
        for plan in demo_plans(CURRENCY):
            await uow.plans.upsert(plan)
        for sub in fleet:
            await uow.cards.add(sub.card, at=now)
            if not sub.card.credit.is_zero:
                entry = ledger.opening_credit(card_id=sub.card.id, amount=sub.card.credit)
                await uow.ledger.record(entry, at=now)
        await uow.commit()
    return fleet


# --- the workers -------------------------------------------------------------------------------


class Trap:
    """Wraps a worker's network: once armed, the next activation is applied by the network and
    then the worker hangs before it can record that, until the simulation kills it."""

    def __init__(self, inner: NetworkProvisioner) -> None:
        self._inner = inner
        self.armed = False
        self.sprung = asyncio.Event()
        self.caught: list[str] = []  # the activation ids the killed worker was applying

    async def apply(self, request: ProvisionRequest) -> ProvisionResult:
        result = await self._inner.apply(request)
        if self.armed and result.status is ProvisionStatus.APPLIED:
            self.caught.append(request.activation_id)
            self.sprung.set()
            await asyncio.Event().wait()  # never answers: only cancelling ends this
        return result


class CountingSms:
    """Wraps a worker's SMS provider: counts the texts that went out by idempotency key (a
    reminder delivery's id), shared by both workers, so a text sent twice shows."""

    def __init__(self, inner: SmsSender, sent: Counter[str]) -> None:
        self._inner = inner
        self.sent = sent

    async def send(self, msisdn: str, text: str, *, idempotency_key: str | None = None) -> None:
        await self._inner.send(msisdn, text, idempotency_key=idempotency_key)
        self.sent[idempotency_key or "(none)"] += 1


@dataclass
class Worker:
    name: str
    app: Application
    trap: Trap


@dataclass
class Workers:
    """Two workers on one database: both run the worker's passes in every step, at once."""

    make: Callable[[int], Application]
    seed: int
    workers: list[Worker] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)  # activation ids in flight at a kill
    texts: Counter[str] = field(default_factory=Counter)  # SMS sent by the workers, by key
    restarts: int = 0

    def start(self, name: str) -> Worker:
        app = self.make(self.seed + 1 + len(self.workers) + self.restarts)
        trap = Trap(app.services.network)
        app.services.network = trap
        if app.services.sms is not None:
            app.services.sms = CountingSms(app.services.sms, self.texts)
        worker = Worker(name, app, trap)
        self.workers.append(worker)
        return worker

    async def step(self) -> int:
        first, second = self.workers[-2:]
        done = await asyncio.gather(run_passes(first.app.services), run_passes(second.app.services))
        return sum(done)

    async def step_killing_one(self) -> bool:
        """Run a step in which the second worker is killed in the middle of its jobs pass, then
        started again. False if it never reached an activation (nothing was due): try later."""
        survivor, doomed = self.workers[-2:]
        doomed.trap.armed = True
        doomed_pass = asyncio.create_task(run_passes(doomed.app.services))
        sprung = asyncio.create_task(doomed.trap.sprung.wait())
        await asyncio.wait(
            {doomed_pass, sprung}, timeout=TRAP_WAIT_S, return_when="FIRST_COMPLETED"
        )
        if not doomed.trap.sprung.is_set():
            sprung.cancel()
            doomed.trap.armed = False
            await doomed_pass
            return False
        await run_passes(survivor.app.services)
        doomed_pass.cancel()  # the kill: whatever it was doing stays as the database has it
        results = await asyncio.gather(doomed_pass, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError), results
        self.killed += doomed.trap.caught
        await doomed.app.close()
        self.workers.remove(doomed)
        self.restarts += 1
        self.start(doomed.name)  # the restart
        return True


# --- the subscribers ---------------------------------------------------------------------------


async def rows(app: Application, statement: Executable) -> list[Row[Any]]:
    async with app.engine.connect() as connection:
        return list(await connection.execute(statement))


@dataclass
class Run:
    seed: int
    fleet: list[Subscriber]
    plans: dict[str, Plan]
    submitted: Counter[str] = field(default_factory=Counter)  # by channel
    refusals: Counter[str] = field(default_factory=Counter)  # by error code
    payments: Counter[str] = field(default_factory=Counter)  # by PaymentChoice name
    webhooks: Counter[str] = field(default_factory=Counter)  # by handle_webhook's answer
    auto_renewals: Counter[str] = field(default_factory=Counter)  # cards by SavedCard name
    texts: Counter[str] = field(default_factory=Counter)  # SMS the workers sent, by key
    bulk_runs: int = 0
    bulk_lines: int = 0  # lines uploaded (each file twice)
    steps: int = 0
    kills: int = 0
    killed_activations: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time (the database's is not in it)
    drain_steps: int = 0
    drained: bool = False  # the drain ended with nothing due (not cut at DRAIN_STEPS_MAX)
    drain_s: float = 0.0
    subscribers_s: float = 0.0  # of which the subscribers' part of the steps
    workers_s: float = 0.0  # ... and the workers'
    keys: int = 0
    usage_sent: set[str] = field(default_factory=set)  # record ids sent, readable lines
    usage_resent: int = 0  # lines sending a record again
    usage_malformed: int = 0
    usage_reported: int = 0  # bad lines the imports reported, at the lines injected
    usage_duplicates: int = 0  # what the imports counted as sent before
    usage_applied: int = 0

    def hint(self) -> str:
        return (
            f"seed {self.seed} (replay: TOPUP_SIMULATION_SEED={self.seed} pytest tests/simulation)"
        )


class Subscribers:
    """What the subscribers do in a step: renew cards whose validity is ending, pay bills."""

    def __init__(self, app: Application, run: Run, rng: random.Random) -> None:
        self.app = app
        self.run = run
        self.rng = rng
        self.by_id = {sub.card.id: sub for sub in run.fleet}
        self.last_usage: list[str] = []
        self.organisation_id = ""
        self.usage_due = START

    async def turn_on_auto_renewals(self) -> None:
        """One account's saved payment cards (one of each kind) pay the auto-renewals of a
        share of the subscribers who renew."""
        services = self.app.services
        account = await confirmed_account(
            services, email=AUTO_RENEWAL_ACCOUNT, password="correct horse battery"
        )
        saved: dict[str, str] = {}
        for kind in SAVED_CARDS:
            month, year = kind.expiry
            details = PaymentCardDetails(
                number=kind.number, expiry_month=month, expiry_year=year, cvc="123"
            )
            token = await services.gateway.tokenize(details)
            view = await saved_payment_cards.save_payment_token(services, account.id, token.token)
            saved[kind.name] = view.id
        for sub in self.run.fleet:
            if not sub.prepaid or sub.lapses or self.rng.random() >= AUTO_RENEWAL_SHARE:
                continue
            kind = self.rng.choices(SAVED_CARDS, [k.weight for k in SAVED_CARDS])[0]
            try:
                await set_auto_renewal(
                    services,
                    card_id=sub.card.id,
                    plan_code=AUTO_RENEWAL_PLAN,
                    payment=AutoPayment.saved_card(account.id, saved[kind.name]),
                    set_by=SetBy(SetterKind.ACCOUNT, account.id),
                )
            except TopupError as error:
                self.run.refusals[f"auto_renewal:{error.code}"] += 1
                continue
            sub.auto_renewal = kind.name
            self.run.auto_renewals[kind.name] += 1
        await self.set_up_fleet(account.id, saved["works"])

    async def set_up_fleet(self, account_id: str, saved_id: str) -> None:
        services = self.app.services
        organisation = await create_organisation(
            services, name="Simulated Logistics", owner_email=AUTO_RENEWAL_ACCOUNT, language="en"
        )
        self.organisation_id = organisation.id
        members = [
            sub
            for sub in self.run.fleet
            if sub.prepaid and not sub.lapses and sub.auto_renewal is None
        ]
        chosen = [sub for sub in members if self.rng.random() < FLEET_SHARE]
        added = await import_cards(services, organisation.id, [s.card.msisdn for s in chosen])
        assert added.added == len(chosen), added
        for sub in chosen:
            sub.in_fleet = True
        await choose_payment_card(services, account_id, organisation.id, saved_id)

    async def renew_in_bulk(self, cards: dict[str, Any], busy: set[str]) -> None:
        """The fleet admin uploads its cards near their end, and then the same file again."""
        due = [
            sub
            for sub in self.run.fleet
            if sub.in_fleet and sub.card.id in cards and sub.card.id not in busy
        ]
        if not due or self.rng.random() >= BULK_CHANCE_PER_STEP:
            return
        text = "number,plan\n" + "".join(f"{sub.card.msisdn},{BULK_PLAN}\n" for sub in due)
        for _ in range(2):
            try:
                await start_run_as_operator(self.app.services, self.organisation_id, text)
            except TopupError as error:
                self.run.refusals[f"bulk:{error.code}"] += 1
                continue
            self.run.bulk_runs += 1
            self.run.bulk_lines += len(due)

    async def step(self) -> None:
        services = self.app.services
        now = services.clock.now()
        c = t.cards
        ahead = now + dt.timedelta(seconds=RENEW_AHEAD_S)
        wanting = await rows(
            self.app,
            select(c.c.id, c.c.kind, c.c.status, c.c.validity_end, c.c.bill_due_minor).where(
                ((c.c.kind == "prepaid") & (c.c.status != "expired") & (c.c.validity_end <= ahead))
                | ((c.c.kind == "postpaid") & (c.c.bill_due_minor > 0))
            ),
        )
        cards = {row.id: row for row in wanting}
        r = t.renewals
        busy = {
            row.card_id
            for row in await rows(self.app, select(r.c.card_id).where(r.c.status.not_in(TERMINAL)))
        }
        refunded = await rows(self.app, select(r.c.card_id).where(r.c.status == "refunded"))
        for row in refunded:  # the network refused the card: its subscriber gives up
            self.by_id[row.card_id].lapses = True
        requests: list[RenewalRequest] = []
        for sub in self.run.fleet:
            if sub.card.id not in cards or sub.card.id in busy or sub.lapses:
                continue
            if sub.prepaid:
                managed = sub.auto_renewal is not None or sub.in_fleet
                if managed and cards[sub.card.id].status != "grace":
                    continue  # auto-renewal or the fleet renews it; in grace its user steps in
                if self.rng.random() < RENEW_CHANCE_PER_STEP:
                    requests.append(self.request(sub, self.prepaid_plan()))
            elif self.rng.random() < BILL_PAID_CHANCE_PER_STEP:
                requests.append(self.request(sub, self.run.plans["postpaid_bill"]))
        await asyncio.gather(*(self.submit(request) for request in requests))
        await self.renew_in_bulk(cards, busy)
        if now >= self.usage_due:
            await self.send_usage()
            self.usage_due = now + dt.timedelta(seconds=USAGE_EVERY_S)
        for sub in self.run.fleet:
            if sub.next_bill_at is not None and now >= sub.next_bill_at:
                await self.issue_bill(sub)

    def prepaid_plan(self) -> Plan:
        codes, weights = zip(*PREPAID_PLANS, strict=True)
        return self.run.plans[self.rng.choices(codes, weights)[0]]

    def request(self, sub: Subscriber, plan: Plan) -> RenewalRequest:
        rng = self.rng
        channels = [c for c in CHANNELS if c in plan.channels]
        channel = rng.choice(channels)
        payment = rng.choices(PAYMENTS, [p.weight for p in PAYMENTS])[0]
        self.run.submitted[channel] += 1
        self.run.payments[payment.name] += 1
        self.run.keys += 1
        card = sub.card
        return RenewalRequest(
            card_number=card.iccid if channel == "kiosk" else card.msisdn,
            plan_code=plan.code,
            payment=payment.details(),
            channel=channel,
            idempotency_key=f"connected-{self.run.seed}-{self.run.keys}",
            method=payment.method,
            region=REGION if channel in PHYSICAL_CHANNELS else None,
            wallet_account=payment.wallet_account,
        )

    async def submit(self, request: RenewalRequest) -> None:
        try:
            await renew(self.app.services, request)
        except TopupError as error:
            self.run.refusals[error.code] += 1

    async def send_usage(self) -> None:
        """The network's file of a day's usage: a record for most cards that have data, a few
        records of the last file again, a few days late, and a few lines that cannot be read."""
        rng, run, now = self.rng, self.run, self.app.services.clock.now()
        c = t.cards
        with_data = await rows(
            self.app,
            select(c.c.msisdn, c.c.iccid)
            .where(c.c.kind == "prepaid", c.c.status == "active", c.c.data_quota_mb > 0)
            .order_by(c.c.msisdn),
        )
        lines: list[str] = []
        for card in with_data:
            if rng.random() >= USAGE_CARD_SHARE:
                continue
            late = rng.random() < USAGE_LATE_SHARE
            used_at = now - dt.timedelta(seconds=rng.uniform(0, USAGE_LATE_S if late else 86_000))
            record_id = f"usage-{run.seed}-{len(run.usage_sent)}"
            run.usage_sent.add(record_id)
            record = {
                "record_id": record_id,
                "card": card.iccid if rng.random() < 0.2 else card.msisdn,
                "used_at": used_at.isoformat(),
                "data_used_mb": rng.randint(*USAGE_MB),
            }
            lines.append(json.dumps(record))
        resent = [line for line in self.last_usage if rng.random() < USAGE_RESENT_SHARE]
        run.usage_resent += len(resent)
        self.last_usage = lines
        lines = lines + resent
        rng.shuffle(lines)  # out of order
        bad = ['{"record_id": "broken", "card": ', '{"record_id": "x", "data_used_mb": -5}']
        for text in bad[:USAGE_MALFORMED_PER_FILE]:
            lines.insert(rng.randint(0, len(lines)), text)
            run.usage_malformed += 1
        summary = await import_usage(self.app.services, lines, kind=UsageFormat.JSON_LINES)
        bad_lines = {number for number, text in enumerate(lines, start=1) if text in bad}
        run.usage_reported += len({p.line for p in summary.problems} & bad_lines)
        run.usage_duplicates += summary.duplicates
        run.usage_applied += summary.applied

    async def issue_bill(self, sub: Subscriber) -> None:
        services = self.app.services
        amount = self.rng.randint(30, 150) * 100
        now = services.clock.now()
        await issue_postpaid_bill(
            services,
            card_id=sub.card.id,
            amount=Money(amount, CURRENCY),
            due_date=now + dt.timedelta(days=BILL_DUE_DAYS),
        )
        sub.bills.append(amount)
        sub.next_bill_at = now + dt.timedelta(days=BILL_EVERY_DAYS)

    async def send_webhooks(self) -> None:
        """The wallet provider's webhook for some of the wallet payments it has answered."""
        services = self.app.services
        wallet = services.gateways["sandbox_wallet"]
        assert isinstance(wallet, SandboxWallet)
        p = t.payments
        waiting = await rows(
            self.app,
            select(p.c.id, p.c.token_encrypted, p.c.amount_minor, p.c.requested_at)
            .where(p.c.gateway == "sandbox_wallet", p.c.status == "requires_action")
            .order_by(p.c.id),
        )
        for payment in waiting:
            if self.rng.random() >= WEBHOOK_SHARE:
                continue
            charge = ChargeRequest(
                payment_id=payment.id,
                token=services.tokens.open(payment.token_encrypted),
                amount=Money(int(payment.amount_minor), CURRENCY),
                description="",
                requested_at=payment.requested_at,
            )
            result = await wallet.retrieve(charge)
            if result.outcome is GatewayOutcome.PENDING:
                continue  # the payer has not answered yet: nothing to tell
            body, headers = wallet.webhook(charge, sent_at=services.clock.now())
            self.run.webhooks[await handle_webhook(services, "sandbox_wallet", body, headers)] += 1


# --- the run -----------------------------------------------------------------------------------


async def simulate(
    *,
    web: Application,
    workers: Workers,
    clock: FixedClock,
    seed: int,
    cards: int,
    days: int,
    step_s: float,
    kill_at_step: int,
) -> Run:
    """``cards`` cards for ``days`` days in steps of ``step_s``: the subscribers act, then both
    workers run every pass; in step ``kill_at_step`` (or the first after it with an activation
    due) the second worker is killed mid-pass and restarted. Then the workers drain what is due."""
    started, cpu_started = time.perf_counter(), time.process_time()
    rng = random.Random(seed)
    fleet = await create_fleet(web.services, rng, cards)
    run = Run(seed, fleet, {plan.code: plan for plan in demo_plans(CURRENCY)})
    subscribers = Subscribers(web, run, rng)
    await subscribers.turn_on_auto_renewals()
    workers.start("worker-1")
    workers.start("worker-2")
    end = START + dt.timedelta(days=days)
    while clock.now() < end:
        before = time.perf_counter()
        await subscribers.step()
        clock.advance(step_s)
        await subscribers.send_webhooks()  # the wallet's news may come before a worker asks
        middle = time.perf_counter()
        if run.kills == 0 and run.steps >= kill_at_step:
            if await workers.step_killing_one():
                run.kills += 1
        else:
            await workers.step()
        run.steps += 1
        run.subscribers_s += middle - before
        run.workers_s += time.perf_counter() - middle
    drain_started = time.perf_counter()
    for _ in range(DRAIN_STEPS_MAX):
        run.drain_steps += 1
        # Done once everything is settled and no pass finds work: a pass that looked at
        # something every few minutes for ever (e.g. a settled auto-renewal) keeps it going.
        if await workers.step() == 0 and not await unsettled(web):
            run.drained = True
            break
        clock.advance(DRAIN_STEP_S)
    run.drain_s = time.perf_counter() - drain_started
    run.killed_activations = list(workers.killed)
    run.texts = workers.texts
    run.elapsed_s = time.perf_counter() - started
    run.cpu_s = time.process_time() - cpu_started
    return run


async def unsettled(app: Application) -> list[Row[Any]]:
    """Renewals not final yet, and bulk lines not tried or not answered yet."""
    r, b = t.renewals, t.bulk_lines
    open_lines = ("pending", "leased", "waiting")
    return await rows(
        app, select(r.c.id, r.c.status).where(r.c.status.not_in(TERMINAL))
    ) + await rows(app, select(b.c.idempotency_key, b.c.status).where(b.c.status.in_(open_lines)))
