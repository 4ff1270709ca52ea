"""A 10,000-line bulk renewal end to end on PostgreSQL with the sandbox gateway at 50 ms, next
to references measured in the same run.

What it does, in order:

1. creates a fresh database ``topup_bulk_<random>`` on the server named by
   TOPUP_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), migrates it,
   loads the demo plans, ``2 x --lines`` prepaid cards, an organisation owning the first half, its
   owner's account and a saved payment card (the sandbox's 4242 test card);
2. bulk renewal: from the upload's text to a finished run — the dry run and the run's rows
   (``start_run``), then the worker's passes in this process (``process_bulk_lines``, then the
   jobs' ``run_due_jobs`` applying the paid renewals to the sandbox network) until every line
   is renewed (its renewal completed); each line is a renewal of its own (``renewals.renew``:
   group-committed intake, the gateway called with no transaction open, group-committed
   outcomes);
3. references, on the other half of the cards: (a) the same number of renewals through the
   existing API batch path — ``renew`` called by ``--concurrency`` concurrent callers (what a
   partner's API batch does), and (b) the single-line rate: ``--single`` renewals one after the
   other, times the number of lines;
4. prints seconds, lines/s and the ratios, then drops the database.

Activation is part of the bulk figure (a line is done once its renewal is applied; the sandbox
network answers at once, ``network_delay_s`` 0); the API references stop once renewals are paid.
A benchmark prints figures, it asserts nothing; the issue's target is <= 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import secrets
import sys
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from topup.adapters.db import tables
from topup.adapters.db.cards import card_values
from topup.bootstrap import Application, build, migrate
from topup.domain.accounts import Account
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.money import Money
from topup.entrypoints import runtime
from topup.ports import PaymentCardDetails
from topup.services.activation import run_due_jobs
from topup.services.demo import demo_plans, iccid_for
from topup.services.fleets import bulk, organisations
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings, Settings

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
PLAN_CODE = "pack_5gb_7d"
PAYMENT_CARD = PaymentCardDetails("4242424242424242", 12, 2030, "123")
CARD_ICCID_SEED_BASE = 2_000_000
TARGET_S = 60.0


@dataclass(frozen=True)
class Options:
    server_url: str
    lines: int
    latency_s: float
    concurrency: int
    batch: int
    single: int


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="gateway latency, s")
    parser.add_argument("--concurrency", type=int, default=128, help="renewals in flight")
    parser.add_argument("--batch", type=int, default=1000, help="lines leased at once")
    parser.add_argument("--single", type=int, default=100, help="one-at-a-time renewals timed")
    values = parser.parse_args(argv)
    server = os.environ.get("TOPUP_BENCH_DATABASE_URL", DEFAULT_SERVER_URL)
    return Options(
        server, values.lines, values.latency, values.concurrency, values.batch, values.single
    )


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plain_url(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def msisdns(count: int) -> list[str]:
    """+60 11-2xxx xxxx numbers; none ends in 0000 (the sandbox network refuses those)."""
    found: list[str] = []
    serial = 1
    while len(found) < count:
        number = f"+60112{serial:07d}"
        serial += 1
        if not number.endswith("0000"):
            found.append(number)
    return found


async def load(application: Application, numbers: list[str]) -> None:
    services = application.services
    profile = services.profile
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        for plan in demo_plans(profile.currency):
            await uow.plans.upsert(plan)
        await uow.accounts.add(
            Account(services.new_id(), "owner@bench.example", "not-a-hash", "en", now, now)
        )
        await uow.commit()
    zero = Money.zero(profile.currency)
    rows = [
        {
            **card_values(
                Card(
                    id=services.new_id(),
                    msisdn=msisdn,
                    iccid=iccid_for(CARD_ICCID_SEED_BASE + index, str(profile.calling_code)),
                    kind=CardKind.PREPAID,
                    status=CardStatus.ACTIVE,
                    currency=profile.currency,
                    credit=zero,
                    data_quota_mb=1024,
                    validity_end=now + dt.timedelta(days=30),
                    bill_due=zero,
                    bill_due_date=None,
                )
            ),
            "created_at": now,
            "updated_at": now,
        }
        for index, msisdn in enumerate(numbers)
    ]
    async with application.engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            await connection.execute(tables.cards.insert(), rows[start : start + 5000])


async def bench(options: Options, database_url: str, key: str) -> dict[str, float]:
    settings = Settings(
        database_url=database_url,
        secret_key=key,
        sandbox_journal="",
        sandbox_sms_outbox="",
        mail_outbox="",
        gateway_latency_s=options.latency_s,
        network_delay_s=0,
    )
    limits = LimitSettings(bulk_concurrency=options.concurrency, bulk_batch_size=options.batch)
    application = build(settings, limits=limits)
    services = application.services
    try:
        numbers = msisdns(2 * options.lines + options.single)
        fleet_numbers = numbers[: options.lines]
        reference_numbers = numbers[options.lines : 2 * options.lines]
        single_numbers = numbers[2 * options.lines :]
        progress(f"loading {len(numbers)} cards")
        await load(application, numbers)
        made = await organisations.create_organisation(
            services, name="Bench Sdn Bhd", owner_email="owner@bench.example", language="en"
        )
        imported = await organisations.import_cards(services, made.id, fleet_numbers)
        progress(f"organisation {made.id} with {imported.added} cards")
        token = (await services.gateway.tokenize(PAYMENT_CARD)).token
        await organisations.set_payment_token_as_operator(services, made.id, token)
        text = "number,plan\n" + "\n".join(f"{n},{PLAN_CODE}" for n in fleet_numbers)

        progress(f"bulk renewal of {options.lines} lines")
        started = time.monotonic()
        run = await bulk.start_run_as_operator(services, made.id, text)
        accepted_s = time.monotonic() - started
        while not (await bulk.run_progress(services, None, made.id, run.id)).finished:
            done = await bulk.process_bulk_lines(services) + await run_due_jobs(services)
            if not done:
                await asyncio.sleep(0.05)
        bulk_s = time.monotonic() - started
        final = await bulk.run_progress(services, None, made.id, run.id)

        progress(f"reference: {options.lines} renewals by {options.concurrency} API callers")
        gate = asyncio.Semaphore(options.concurrency)

        async def one(number: str) -> None:
            async with gate:
                await renew(
                    services,
                    RenewalRequest(
                        card_number=number,
                        plan_code=PLAN_CODE,
                        payment=None,
                        channel="api",
                        idempotency_key=f"bench-{number}",
                        payment_token=token,
                    ),
                )

        started = time.monotonic()
        await asyncio.gather(*(one(number) for number in reference_numbers))
        api_s = time.monotonic() - started

        progress(f"reference: {options.single} renewals one at a time")
        started = time.monotonic()
        for number in single_numbers:
            await one(number)
        single_s = (time.monotonic() - started) / max(1, options.single) * options.lines
        return {
            "bulk_s": bulk_s,
            "accepted_s": accepted_s,
            "succeeded": float(final.count("succeeded")),
            "failed": float(final.count("failed")),
            "api_s": api_s,
            "single_s": single_s,
        }
    finally:
        await application.close()


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    name = f"topup_bulk_{secrets.token_hex(6)}"
    with psycopg.connect(plain_url(options.server_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = plain_url(options.server_url, name)
    try:
        migrate(database_url)
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        figures = runtime.run(bench(options, database_url, key))
    finally:
        with psycopg.connect(plain_url(options.server_url), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    lines = options.lines
    print(
        f"bulk renewal: {lines} lines, gateway {options.latency_s * 1000:.0f} ms, "
        f"{options.concurrency} in flight, {options.batch} leased at once (PostgreSQL)"
    )
    rows = [
        ("bulk renewal (upload to every line applied)", figures["bulk_s"]),
        ("  of which the dry run and the run's rows", figures["accepted_s"]),
        (f"reference: {lines} renewals, API batch path", figures["api_s"]),
        (f"reference: single-line rate x {lines}", figures["single_s"]),
    ]
    for label, seconds in rows:
        print(f"  {label:<46} {seconds:9.1f} s  {lines / seconds:9.1f} lines/s")
    print(
        f"  lines succeeded {figures['succeeded']:.0f}, failed {figures['failed']:.0f}; "
        f"target <= {TARGET_S:.0f} s: {'met' if figures['bulk_s'] <= TARGET_S else 'NOT met'}"
    )
    print(f"  ratio bulk / API batch path:   {figures['bulk_s'] / figures['api_s']:.2f}")
    print(f"  ratio bulk / single-line rate: {figures['bulk_s'] / figures['single_s']:.4f}")


if __name__ == "__main__":
    main()
