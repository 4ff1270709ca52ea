"""Usage import and the daily lifecycle pass on PostgreSQL, next to the same run's pgbench.

What it does, in order (each in a scratch database it creates, dropped at the end):

1. pgbench: initialises a scratch database (scale 10) and runs the built-in simple-update
   script (``-N``) and the select-only one (``-S``) for ``--pgbench-s`` seconds each with two
   clients; prints their tps.
2. usage import: migrates a scratch database, loads ``--usage-cards`` cards (one INSERT ...
   SELECT FROM generate_series), writes ``--usage-records`` records (CSV) over them, and imports
   the file with ``topup.services.usage.import_usage`` (the service ``topup usage import`` calls):
   records/s, then the same file again (every record already applied); prints records/s and
   the ratio to pgbench's simple-update tps (each pgbench transaction writes 3 rows and reads 1).
3. the daily pass: loads ``--lifecycle-cards`` cards with a realistic mix (most active with
   validity ahead; some past validity, due for grace; some past grace, due for expiry with a
   forfeit; some postpaid with an overdue bill, due for suspension), shows EXPLAIN of each "due"
   query (the index it uses), then runs ``topup.services.lifecycle.advance_cards`` until nothing
   is due: cards advanced/s; then EXPLAIN of the reminder scheduler's "due" query (cards whose
   validity ends within a reminder's window and that have no such reminder yet) and
   ``topup.services.reminders.scheduling.queue_due_reminders`` until it queues nothing (the
   validity-ending reminders 3 and 1 days before, and those of the events the pass wrote:
   entered grace...): reminders queued/s, by kind.

A benchmark prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

DATABASE_URL_DEFAULT = os.environ.get(
    "TOPUP_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 2
COMMAND_TIMEOUT_S = 600
LIFECYCLE_BATCH_SIZE = 5000
REMINDER_PASSES_MAX = 100
SHARE_PAST_VALIDITY = 0.08  # due for grace
SHARE_PAST_GRACE = 0.04  # due for expiry (forfeit)
SHARE_POSTPAID_OVERDUE = 0.02  # due for suspension
SHARE_POSTPAID = 0.10


def _url_for(base: str, database: str) -> str:
    return re.sub(r"/[^/]*$", f"/{database}", base)


def _pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise SystemExit("pgbench not found (apt-get install postgresql-client)")


async def _admin(base: str, sql: str) -> None:
    connection = await asyncpg.connect(base)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _tps(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+)", output)
    return float(match.group(1)) if match else float("nan")


def run_pgbench(url: str, seconds: int) -> tuple[float, float]:
    pgbench = _pgbench()
    subprocess.run(
        [pgbench, "-i", "-q", "-s", str(PGBENCH_SCALE), url],
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    common = ["-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_CLIENTS), "-T", str(seconds), url]
    update = subprocess.run(
        [pgbench, "-N", *common],
        check=True,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    select = subprocess.run(
        [pgbench, "-S", *common],
        check=True,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    return _tps(update.stdout), _tps(select.stdout)


CARDS_SQL = """
INSERT INTO cards (id, msisdn, iccid, kind, status, currency, credit_minor, data_quota_mb,
                   validity_end, bill_due_minor, bill_due_date, holder_name, email, version,
                   created_at, updated_at)
SELECT 'card-' || i,
       '+6011' || lpad(i::text, 8, '0'),
       '8960' || lpad(i::text, 15, '0'),
       CASE WHEN i % 1000 < $2 THEN 'postpaid' ELSE 'prepaid' END,
       'active', 'MYR',
       CASE WHEN i % 1000 < $2 THEN 0 ELSE 500 END,
       CASE WHEN i % 10 = 0 THEN 100 ELSE 100000 END,
       CASE WHEN i % 1000 < $2 THEN NULL
            WHEN i % 1000 < $2 + $3 THEN $6::timestamptz - interval '1 day'
            WHEN i % 1000 < $2 + $3 + $4 THEN $6::timestamptz - interval '40 days'
            ELSE $6::timestamptz + (i % 30 + 1) * interval '1 day' END,
       CASE WHEN i % 1000 < $2 THEN 8800 ELSE 0 END,
       CASE WHEN i % 1000 < $5 THEN $6::timestamptz - interval '2 days'
            WHEN i % 1000 < $2 THEN $6::timestamptz + interval '5 days' ELSE NULL END,
       '', '', 0, $6::timestamptz, $6::timestamptz
FROM generate_series(1, $1) AS i
"""


async def load_cards(
    url: str,
    count: int,
    now: dt.datetime,
    *,
    postpaid_share: float,
    past_validity_share: float,
    past_grace_share: float,
    overdue_share: float,
) -> None:
    """``count`` cards by one statement. Per 1000: postpaid first (the first of them overdue),
    then prepaid past validity, past grace, and the rest with validity ahead. The grace-expired
    ones are stored as in grace (the worker moved them into grace 30 days ago)."""
    postpaid = int(postpaid_share * 1000)
    past_validity = int(past_validity_share * 1000)
    past_grace = int(past_grace_share * 1000)
    overdue = int(overdue_share * 1000)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            CARDS_SQL, count, postpaid, past_validity, past_grace, overdue, now
        )
        await connection.execute(
            "UPDATE cards SET status = 'grace' WHERE validity_end < $1::timestamptz - interval '30 days'",
            now,
        )
        await connection.execute("ANALYZE cards")
    finally:
        await connection.close()


def write_usage_file(path: Path, records: int, cards: int, now: dt.datetime) -> None:
    randomness = random.Random(11)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["record_id", "card", "used_at", "data_used_mb"])
        for number in range(records):
            card = randomness.randrange(1, cards + 1)
            used_at = now - dt.timedelta(seconds=randomness.randrange(1, 86_400))
            writer.writerow(
                [
                    f"cdr-{number:09d}",
                    f"+6011{card:08d}",
                    used_at.isoformat().replace("+00:00", "Z"),
                    randomness.randrange(0, 6),
                ]
            )


def _application(url: str, directory: Path, **limits: int) -> object:
    from topup.bootstrap import build
    from topup.settings import LimitSettings, Settings

    settings = Settings(
        database_url=url,
        secret_key_file=str(directory / "secret.key"),
        usage_secret_file=str(directory / "usage.key"),
        mail_outbox="",
        sandbox_journal="",
        sandbox_sms_outbox="",
        network_latency_s=0,
    )
    return build(settings, limits=LimitSettings(**limits))


async def bench_usage(url: str, directory: Path, records: int, cards: int) -> tuple[float, float]:
    from topup.bootstrap import Application, migrate
    from topup.domain.usage_files import UsageFormat
    from topup.services.usage import import_usage

    await asyncio.to_thread(migrate, url)
    now = dt.datetime.now(dt.UTC)
    await load_cards(
        url,
        cards,
        now,
        postpaid_share=0,
        past_validity_share=0,
        past_grace_share=0,
        overdue_share=0,
    )
    path = directory / "usage.csv"
    write_usage_file(path, records, cards, now)
    application = _application(url, directory)
    assert isinstance(application, Application)
    rates = []
    try:
        for _ in range(2):  # the file, then the same file re-sent
            with path.open(newline="") as handle:
                started, cpu = time.perf_counter(), time.process_time()
                summary = await import_usage(
                    application.services, handle, kind=UsageFormat.CSV, pause_collector=True
                )
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            rates.append(records / elapsed)
            print(
                f"  {records:,} records in {elapsed:.2f} s: {records / elapsed:,.0f} records/s "
                f"(applied {summary.applied:,}, already applied {summary.duplicates:,}, "
                f"{summary.cards:,} cards debited, {summary.events:,} threshold events, "
                f"{summary.problem_count} bad lines); Python's CPU {cpu:.2f} s "
                f"({cpu / elapsed:.0%} of the time)"
            )
    finally:
        await application.close()
    return rates[0], rates[1]


DUE_EXPLAINED = (
    (
        "past validity",
        "SELECT id FROM cards WHERE status = 'active' AND validity_end <= now() "
        "AND kind = 'prepaid' ORDER BY validity_end LIMIT 5000 FOR NO KEY UPDATE SKIP LOCKED",
    ),
    (
        "past grace",
        "SELECT id FROM cards WHERE status = 'grace' AND validity_end <= now() - interval '30 days' "
        "AND kind = 'prepaid' AND id NOT IN (SELECT card_id FROM renewals WHERE status = "
        "'activating') ORDER BY validity_end LIMIT 5000 FOR NO KEY UPDATE SKIP LOCKED",
    ),
    (
        "bill overdue",
        "SELECT id FROM cards WHERE status = 'active' AND bill_due_minor > 0 AND "
        "bill_due_date <= now() AND kind = 'postpaid' ORDER BY bill_due_date LIMIT 5000 "
        "FOR NO KEY UPDATE SKIP LOCKED",
    ),
)


# The scheduler's query for the reminder 3 days before validity ends (the 1-day one's is the same
# with its window), as ReminderRepository.due_by_date builds it, its second batch (after a card):
# the next cards of the window by index, then each one's reminder looked up by index.
REMINDERS_DUE_EXPLAINED = (
    (
        "validity ending in 3 days, reminder not yet queued",
        "WITH due_window AS MATERIALIZED (SELECT * FROM cards WHERE status = 'active' "
        "AND validity_end > now() + interval '1 day' AND validity_end <= now() + interval "
        "'3 days' AND kind = 'prepaid' AND validity_end >= now() + interval '2 days' AND "
        "(validity_end > now() + interval '2 days' OR (validity_end = now() + interval "
        "'2 days' AND id > 'card-1')) ORDER BY validity_end, id LIMIT 5000) "
        "SELECT due_window.*, (SELECT 1 FROM reminders WHERE reminders.card_id = "
        "due_window.id AND reminders.kind = 'validity_ending_3d' AND reminders.period_end = "
        "due_window.validity_end LIMIT 1) IS NOT NULL AS reminded FROM due_window "
        "ORDER BY validity_end, id",
    ),
)


async def explain(url: str, queries: tuple[tuple[str, str], ...] = DUE_EXPLAINED) -> None:
    connection = await asyncpg.connect(url)
    try:
        for name, query in queries:
            plan = await connection.fetch(f"EXPLAIN {query}")
            scans = [
                row[0].strip()
                for row in plan
                if any(word in row[0] for word in ("Index", "Seq Scan", "Bitmap", "SubPlan"))
            ]
            print(f"  EXPLAIN due ({name}): {' | '.join(scans)}")
    finally:
        await connection.close()


async def bench_lifecycle(url: str, directory: Path, cards: int) -> tuple[float, int]:
    from topup.bootstrap import Application, migrate
    from topup.services.lifecycle import advance_cards
    from topup.services.reminders.scheduling import queue_due_reminders

    await asyncio.to_thread(migrate, url)
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    await load_cards(
        url,
        cards,
        now,
        postpaid_share=SHARE_POSTPAID,
        past_validity_share=SHARE_PAST_VALIDITY,
        past_grace_share=SHARE_PAST_GRACE,
        overdue_share=SHARE_POSTPAID_OVERDUE,
    )
    print(f"  loaded {cards:,} cards in {time.perf_counter() - started:.1f} s")
    await explain(url)
    application = _application(
        url,
        directory,
        lifecycle_batch_size=LIFECYCLE_BATCH_SIZE,
        lifecycle_batches_per_pass_max=100_000,
        reminder_batch_size=LIFECYCLE_BATCH_SIZE,
        reminder_batches_per_pass_max=1000,
        # One writer here: no event id is left behind by a transaction still open.
        reminder_event_gap_wait_s=0,
    )
    assert isinstance(application, Application)
    try:
        started = time.perf_counter()
        moved = await advance_cards(application.services)
        elapsed = time.perf_counter() - started
        print(f"  {moved:,} cards advanced in {elapsed:.2f} s: {moved / elapsed:,.0f} cards/s")
        await explain(url, REMINDERS_DUE_EXPLAINED)
        started, queued, passes = time.perf_counter(), 0, 0
        while passes < REMINDER_PASSES_MAX:  # the worker's passes, until one queues nothing
            passes += 1
            found = await queue_due_reminders(application.services)
            queued += found
            if not found:
                break
        reminding = time.perf_counter() - started
    finally:
        await application.close()
    connection = await asyncpg.connect(url)
    try:
        kinds = await connection.fetch(
            "SELECT kind, count(*) FROM reminders GROUP BY kind ORDER BY count(*) DESC"
        )
        deliveries = await connection.fetchval("SELECT count(*) FROM reminder_deliveries")
    finally:
        await connection.close()
    by_kind = ", ".join(f"{row[0]} {row[1]:,}" for row in kinds)
    print(
        f"  {queued:,} reminders queued ({deliveries:,} deliveries) in {reminding:.2f} s "
        f"({passes} passes): {queued / reminding:,.0f} reminders/s ({by_kind})"
    )
    return moved / elapsed, moved


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DATABASE_URL_DEFAULT)
    parser.add_argument("--usage-records", type=int, default=1_000_000, help="0: no usage part")
    parser.add_argument("--usage-cards", type=int, default=10_000)
    parser.add_argument("--lifecycle-cards", type=int, default=1_000_000, help="0: no daily pass")
    parser.add_argument("--pgbench-s", type=int, default=10)
    arguments = parser.parse_args()
    base = arguments.database_url
    suffix = f"{os.getpid()}"
    names = {part: f"topup_bench_{part}_{suffix}" for part in ("pgbench", "usage", "lifecycle")}
    directory = Path(tempfile.mkdtemp(prefix="topup-bench-"))
    try:
        for name in names.values():
            await _admin(base, f'CREATE DATABASE "{name}"')
        print(
            f"pgbench (scale {PGBENCH_SCALE}, {PGBENCH_CLIENTS} clients, {arguments.pgbench_s} s each)"
        )
        update_tps, select_tps = await asyncio.to_thread(
            run_pgbench, _url_for(base, names["pgbench"]), arguments.pgbench_s
        )
        print(
            f"  simple update (-N): {update_tps:,.0f} tps; select only (-S): {select_tps:,.0f} tps"
        )
        if arguments.usage_records > 0:  # 0: the usage part is skipped
            print(
                f"usage import ({arguments.usage_records:,} records over "
                f"{arguments.usage_cards:,} cards)"
            )
            first, again = await bench_usage(
                _url_for(base, names["usage"]),
                directory,
                arguments.usage_records,
                arguments.usage_cards,
            )
            print(
                f"  ratio: {first / update_tps:.1f} records per pgbench simple-update "
                f"transaction (re-sent file: {again / update_tps:.1f})"
            )
        if arguments.lifecycle_cards > 0:  # 0: the daily pass is skipped
            print(f"daily pass ({arguments.lifecycle_cards:,} cards)")
            await bench_lifecycle(
                _url_for(base, names["lifecycle"]), directory, arguments.lifecycle_cards
            )
    finally:
        for name in names.values():
            await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
