"""Renewal throughput on PostgreSQL, next to the same machine's pgbench TPC-B figure.

What it does, in order:

1. creates a fresh database ``topup_bench_<random>`` on the server named by
   TOPUP_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), migrates it, loads
   the demo plans and ``--cards`` prepaid cards (+6011..., valid ICCIDs) in two transactions;
2. runs pgbench (``-i -s <scale>`` into its own temporary database, then ``-c 32 -j 2 -T``);
3. for each scenario (card choice uniform or Zipf-skewed; the worker in this process or as
   ``topup worker`` processes): ``--callers`` tasks loop ``renew`` (good test card, pack_5gb_7d,
   distinct idempotency keys) while the worker runs activations; after a warm-up, a window of
   ``--seconds`` is measured, then the worker drains the backlog and the tables are emptied;
4. prints a table (or, with ``--json``, one JSON object) and drops both databases.

Figures per scenario:
    completed/s   renewals whose completed_at falls in the window (from the database)
    paid/s        renewals whose paid_at falls in the window; created/s likewise with created_at
    activation    completed_at - paid_at of the renewals completed in the window, p50 and p99
    renew         latency of the ``renew`` call as the caller saw it, p50 and p99
    ratio         completed/s divided by pgbench tps; targets 0.25 (issue) and 0.5 (product goal)
    statements    SQL statements and units of work per renew call and per activation (counted
                  on this process's engine, so the worker's only when it runs in-process)
    cores         CPU seconds per second used by this process, the worker processes, this
                  database's PostgreSQL backends and everything else on the machine (other
                  load on a shared machine shows up there), and time spent runnable with no core
    sessions      the bench database's sessions by state, sampled: running, waiting on a lock,
                  idle in a transaction (PostgreSQL waiting for the application)

Progress goes to stderr; the figures go to stdout. A benchmark prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import datetime as dt
import itertools
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import make_url

from topup.adapters.db import tables
from topup.adapters.db.cards import card_values
from topup.bootstrap import Application, build, migrate
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import TopupError
from topup.domain.money import Money
from topup.entrypoints import runtime
from topup.entrypoints.worker import run_forever
from topup.ports import PaymentCardDetails
from topup.services.demo import demo_plans, iccid_for
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings, Settings

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
PLAN_CODE = "pack_5gb_7d"
PAYMENT_CARD_NUMBER = "4242424242424242"
ZIPF_EXPONENT = 1.1
CARD_ICCID_SEED_BASE = 1_000_000  # clear of the demo cards' ICCID seeds
CARD_VALIDITY_DAYS = 30
TARGET_RATIO_ISSUE = 0.25
TARGET_RATIO_PRODUCT = 0.5
PGBENCH_THREADS = 2
DRAIN_POLL_S = 0.2
WORKER_START_TIMEOUT_S = 15.0
WORKER_STOP_TIMEOUT_S = 15.0
OPEN_RENEWAL_STATUSES = ("pending_payment", "payment_pending", "requires_action", "activating")
SCENARIO_TABLES = (
    "renewal_events",
    "ledger_postings",
    "ledger_entries",
    "account_balances",
    "payments",
    "jobs",
    "renewals",
    "card_events",
)
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    server_url: str
    seconds: float
    warmup_seconds: float
    drain_seconds_max: float
    callers: int
    cards: int
    workers: int
    worker_modes: tuple[str, ...]
    distributions: tuple[str, ...]
    gateway_latency_s: float
    slow_gateway_scenario: bool
    slow_gateway_latency_s: float
    slow_gateway_callers: int
    worker_batch_size: int
    worker_concurrency: int
    worker_idle_sleep_s: float
    pool_size: int | None
    pgbench_clients: int
    pgbench_scale: int
    pgbench_seconds: float
    seed: int
    as_json: bool


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per scenario")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument(
        "--drain-seconds-max",
        type=float,
        default=10.0,
        help="after the window, wait at most this long for the worker to finish the backlog",
    )
    parser.add_argument("--callers", type=int, default=32, help="concurrent renew loops")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker tasks (in-process) or worker processes"
    )
    parser.add_argument(
        "--worker-mode",
        choices=("in-process", "process", "both"),
        default=None,
        help="run the worker in this process, as `topup worker` processes, or measure both "
        "(default: both; in-process with --quick)",
    )
    parser.add_argument(
        "--distribution", choices=("uniform", "zipf", "both"), default="both", help="card choice"
    )
    parser.add_argument("--gateway-latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--slow-gateway-scenario",
        action="store_true",
        help="also run every scenario again with a slow gateway and more callers",
    )
    parser.add_argument("--slow-gateway-latency-ms", type=float, default=100.0)
    parser.add_argument("--slow-gateway-callers", type=int, default=256)
    parser.add_argument("--worker-batch-size", type=int, default=LimitSettings().worker_batch_size)
    parser.add_argument(
        "--worker-concurrency", type=int, default=LimitSettings().worker_concurrency
    )
    parser.add_argument(
        "--worker-idle-sleep-ms", type=float, default=LimitSettings().worker_idle_sleep_s * 1000
    )
    parser.add_argument(
        "--pool-size", type=int, default=None, help="SQLAlchemy pool size (default: the app's)"
    )
    parser.add_argument("--pgbench-clients", type=int, default=32)
    parser.add_argument("--pgbench-scale", type=int, default=None, help="default: clients")
    parser.add_argument(
        "--pgbench-seconds", type=float, default=None, help="default: --seconds; 0 skips pgbench"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="a ~15 s smoke run (figures not comparable)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.seconds = 2.0
        arguments.warmup_seconds = 0.5
        arguments.drain_seconds_max = 1.0
        arguments.cards = min(arguments.cards, 2_000)
        arguments.worker_mode = arguments.worker_mode or "in-process"
        if arguments.pgbench_seconds is None:
            arguments.pgbench_seconds = 2.0
    worker_mode = arguments.worker_mode or "both"
    modes = ("in-process", "process") if worker_mode == "both" else (worker_mode,)
    distributions = (
        ("uniform", "zipf") if arguments.distribution == "both" else (arguments.distribution,)
    )
    return Options(
        server_url=os.environ.get("TOPUP_BENCH_DATABASE_URL", DEFAULT_SERVER_URL),
        seconds=arguments.seconds,
        warmup_seconds=arguments.warmup_seconds,
        drain_seconds_max=arguments.drain_seconds_max,
        callers=arguments.callers,
        cards=arguments.cards,
        workers=arguments.workers,
        worker_modes=modes,
        distributions=distributions,
        gateway_latency_s=arguments.gateway_latency_ms / 1000,
        slow_gateway_scenario=arguments.slow_gateway_scenario,
        slow_gateway_latency_s=arguments.slow_gateway_latency_ms / 1000,
        slow_gateway_callers=arguments.slow_gateway_callers,
        worker_batch_size=arguments.worker_batch_size,
        worker_concurrency=arguments.worker_concurrency,
        worker_idle_sleep_s=arguments.worker_idle_sleep_ms / 1000,
        pool_size=arguments.pool_size,
        pgbench_clients=arguments.pgbench_clients,
        pgbench_scale=arguments.pgbench_scale or arguments.pgbench_clients,
        pgbench_seconds=arguments.seconds
        if arguments.pgbench_seconds is None
        else arguments.pgbench_seconds,
        seed=arguments.seed,
        as_json=arguments.json,
    )


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- databases ----------------------------------------------------------------------------------


def plain_url(url: str, database: str | None = None) -> str:
    """A libpq URL (for psycopg and pgbench), optionally naming another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def create_database(server_url: str, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(plain_url(server_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(plain_url(server_url), autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def empty_scenario_tables(url: str) -> None:
    """Start every scenario from the same place: no renewals, no jobs, fresh statistics."""
    with psycopg.connect(url, autocommit=True) as connection:
        names = sql.SQL(", ").join(sql.Identifier(table) for table in SCENARIO_TABLES)
        connection.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))
        connection.execute("VACUUM ANALYZE")


def fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def bench_msisdns(count: int) -> list[str]:
    """+60 11-1xxx xxxx numbers; none ends in 0000 (the sandbox network refuses those)."""
    numbers = (f"+60111{serial:07d}" for serial in itertools.count(1))
    return list(itertools.islice((n for n in numbers if not n.endswith("0000")), count))


async def load_cards(application: Application, msisdns: list[str]) -> None:
    """Demo plans, then prepaid cards active for CARD_VALIDITY_DAYS in one bulk insert."""
    services = application.services
    profile = services.profile
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        for plan in demo_plans(profile.currency):
            await uow.plans.upsert(plan)
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
                    validity_end=now + dt.timedelta(days=CARD_VALIDITY_DAYS),
                    bill_due=zero,
                    bill_due_date=None,
                    holder_name=f"Bench card {index}",
                )
            ),
            "created_at": now,
            "updated_at": now,
        }
        for index, msisdn in enumerate(msisdns)
    ]
    async with application.engine.begin() as connection:
        await connection.execute(tables.cards.insert(), rows)


# --- pgbench ------------------------------------------------------------------------------------


@dataclass
class PgbenchResult:
    tps: float
    clients: int
    threads: int
    scale: int
    seconds: float
    latency_average_ms: float | None


def run_pgbench(options: Options) -> PgbenchResult:
    name = create_database(options.server_url, "topup_pgbench")
    url = plain_url(options.server_url, name)
    try:
        progress(f"pgbench -i -s {options.pgbench_scale} into {name}")
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(options.pgbench_scale), url],
            check=True,
            capture_output=True,
            text=True,
        )
        progress(
            f"pgbench -c {options.pgbench_clients} -j {PGBENCH_THREADS} "
            f"-T {options.pgbench_seconds:g}"
        )
        finished = subprocess.run(
            [
                "pgbench",
                "-c",
                str(options.pgbench_clients),
                "-j",
                str(PGBENCH_THREADS),
                "-T",
                str(max(1, round(options.pgbench_seconds))),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        drop_database(options.server_url, name)
    tps = re.search(r"^tps = ([0-9.]+)", finished.stdout, re.MULTILINE)
    latency = re.search(r"^latency average = ([0-9.]+) ms", finished.stdout, re.MULTILINE)
    if tps is None:
        raise SystemExit(f"could not find 'tps = ' in pgbench output:\n{finished.stdout}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        clients=options.pgbench_clients,
        threads=PGBENCH_THREADS,
        scale=options.pgbench_scale,
        seconds=max(1, round(options.pgbench_seconds)),
        latency_average_ms=float(latency.group(1)) if latency else None,
    )


# --- CPU accounting (Linux /proc; figures are None elsewhere) --------------------------------------


def machine_busy_s() -> float | None:
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS_PER_S


def process_cpu_s(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime + stime


def postgres_processes_cpu_s() -> dict[int, float]:
    """CPU seconds of every visible process named postgres, by pid."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        cpu = process_cpu_s(int(entry.name))
        if cpu is not None:
            found[int(entry.name)] = cpu
    return found


def runnable_waiting_s(pid: int | str) -> float | None:
    """Seconds the process's main thread spent runnable but waiting for a CPU (schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class CpuSnapshot:
    machine_s: float | None
    bench_s: float
    bench_waiting_s: float | None
    workers_s: dict[int, float] | None  # by pid; None when the worker runs in-process
    workers_waiting_s: dict[int, float] | None
    postgres_s: dict[int, float]


def cpu_snapshot(worker_pids: list[int]) -> CpuSnapshot:
    def by_pid(read: Any) -> dict[int, float] | None:
        if not worker_pids:
            return None
        values = {pid: read(pid) for pid in worker_pids}
        return {pid: value for pid, value in values.items() if value is not None}

    return CpuSnapshot(
        machine_s=machine_busy_s(),
        bench_s=time.process_time(),
        bench_waiting_s=runnable_waiting_s("self"),
        workers_s=by_pid(process_cpu_s),
        workers_waiting_s=by_pid(runnable_waiting_s),
        postgres_s=postgres_processes_cpu_s(),
    )


# --- callers and workers ------------------------------------------------------------------------


class CardChooser:
    def __init__(self, msisdns: list[str], distribution: str) -> None:
        self._msisdns = msisdns
        self._cumulative: list[float] | None = None
        if distribution == "zipf":
            weights = [1.0 / rank**ZIPF_EXPONENT for rank in range(1, len(msisdns) + 1)]
            self._cumulative = list(itertools.accumulate(weights))

    def hottest_share(self) -> float:
        if self._cumulative is None:
            return 1.0 / len(self._msisdns)
        return self._cumulative[0] / self._cumulative[-1]

    def choose(self, randomness: random.Random) -> str:
        if self._cumulative is None:
            return self._msisdns[randomness.randrange(len(self._msisdns))]
        point = randomness.random() * self._cumulative[-1]
        return self._msisdns[bisect.bisect_right(self._cumulative, point)]


@dataclass
class CallerLog:
    started_at: list[float] = field(default_factory=list)  # loop.time()
    durations_s: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


async def caller(
    application: Application,
    chooser: CardChooser,
    randomness: random.Random,
    key_prefix: str,
    stop_at: float,
    log: CallerLog,
) -> None:
    ROLE.set("caller")
    loop = asyncio.get_running_loop()
    today = dt.date.today()
    payment = PaymentCardDetails(
        number=PAYMENT_CARD_NUMBER, expiry_month=12, expiry_year=today.year + 3, cvc="123"
    )
    for serial in itertools.count():
        started = loop.time()
        if started >= stop_at:
            return
        request = RenewalRequest(
            card_number=chooser.choose(randomness),
            plan_code=PLAN_CODE,
            payment=payment,
            channel="web",
            idempotency_key=f"{key_prefix}-{serial}",
        )
        try:
            view = await renew(application.services, request)
            outcome = view.status
        except TopupError as error:
            outcome = f"error:{error.code}"
        except Exception as error:  # a benchmark keeps going and counts what went wrong
            outcome = f"exception:{type(error).__name__}"
        log.started_at.append(started)
        log.durations_s.append(loop.time() - started)
        log.outcomes[outcome] += 1


async def in_process_worker(application: Application, stop: asyncio.Event) -> None:
    """The real worker loop (topup.entrypoints.worker.run_forever), without its signal handlers."""
    ROLE.set("worker")
    loop = asyncio.get_running_loop()
    try:
        await run_forever(application.services, stop=stop)
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal_number)


def worker_environment(
    database_url: str, key: str, gateway_latency_s: float, options: Options
) -> dict[str, str]:
    return {
        **os.environ,
        "TOPUP_DATABASE_URL": database_url,
        "TOPUP_SECRET_KEY": key,
        "TOPUP_GATEWAY_LATENCY_S": str(gateway_latency_s),
        "TOPUP_NETWORK_DELAY_S": "0",
        "TOPUP_NETWORK_LATENCY_S": "0",
        "TOPUP_SANDBOX_JOURNAL": "",
        "TOPUP_WORKER_BATCH_SIZE": str(options.worker_batch_size),
        "TOPUP_WORKER_CONCURRENCY": str(options.worker_concurrency),
        "TOPUP_WORKER_IDLE_SLEEP_S": str(options.worker_idle_sleep_s),
    }


class WorkerProcesses:
    """`topup worker` processes, restarted like a service manager would if one exits early (e.g.
    'too many clients' on a busy shared server); every restart is reported."""

    def __init__(self, environment: dict[str, str]) -> None:
        executable = Path(sys.executable).with_name("topup")
        self._command = (
            [str(executable), "worker", "--json"]
            if executable.exists()
            else [sys.executable, "-c", "from topup.entrypoints.cli import main; main()", "worker"]
        )
        self._environment = environment
        self._running: list[tuple[asyncio.subprocess.Process, Any]] = []
        self._stopping = False
        self.complaints: list[str] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process, _ in self._running]

    async def start(
        self, count: int, monitor: psycopg.AsyncConnection[Any], database: str
    ) -> asyncio.Task[None]:
        for _ in range(count):
            await self._spawn()
        started = time.monotonic()
        while time.monotonic() - started < WORKER_START_TIMEOUT_S:  # ready once connected
            if await database_connections(monitor, database) >= count:
                break
            await asyncio.sleep(0.1)
        return asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        error_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _collect
        process = await asyncio.create_subprocess_exec(
            *self._command,
            env=self._environment,
            stdout=asyncio.subprocess.DEVNULL,  # one JSON line per activation, as deployed
            stderr=error_file,
        )
        self._running.append((process, error_file))

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(DRAIN_POLL_S)
            for entry in list(self._running):
                if entry[0].returncode is not None and not self._stopping:
                    self._running.remove(entry)
                    self._collect(*entry, note="exited early; restarted")
                    await self._spawn()

    def _collect(self, process: asyncio.subprocess.Process, error_file: Any, note: str) -> None:
        error_file.seek(0)
        text = error_file.read().decode(errors="replace").strip()
        error_file.close()
        if note or text:
            self.complaints.append(f"worker {process.pid} {note} {text[-300:]}".strip())

    async def stop(self, supervisor: asyncio.Task[None]) -> list[str]:
        self._stopping = True
        await supervisor
        for process, _ in self._running:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process, error_file in self._running:
            note = ""
            try:
                await asyncio.wait_for(process.wait(), WORKER_STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
                note = "did not stop on SIGINT; killed"
            self._collect(process, error_file, note)
        return self.complaints


# --- measurement --------------------------------------------------------------------------------


async def database_connections(monitor: psycopg.AsyncConnection[Any], database: str) -> int:
    """Connections to the bench database other than the monitor's own."""
    cursor = await monitor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def database_backend_pids(monitor: psycopg.AsyncConnection[Any], database: str) -> list[int]:
    cursor = await monitor.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )
    return [int(row[0]) for row in await cursor.fetchall()]


async def open_renewals(monitor: psycopg.AsyncConnection[Any]) -> int:
    cursor = await monitor.execute(
        "SELECT count(*) FROM renewals WHERE status = ANY(%s)", (list(OPEN_RENEWAL_STATUSES),)
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


WINDOW_QUERY = """
SELECT
  count(*) FILTER (WHERE created_at >= %(start)s AND created_at < %(end)s),
  count(*) FILTER (WHERE paid_at >= %(start)s AND paid_at < %(end)s),
  count(*) FILTER (WHERE completed_at >= %(start)s AND completed_at < %(end)s),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - paid_at))
    FILTER (WHERE completed_at >= %(start)s AND completed_at < %(end)s),
  percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - paid_at))
    FILTER (WHERE completed_at >= %(start)s AND completed_at < %(end)s),
  max(extract(epoch FROM completed_at - paid_at))
    FILTER (WHERE completed_at >= %(start)s AND completed_at < %(end)s)
FROM renewals
"""


async def window_counts(
    monitor: psycopg.AsyncConnection[Any], start: dt.datetime, end: dt.datetime
) -> tuple[int, int, int, float | None, float | None, float | None]:
    cursor = await monitor.execute(WINDOW_QUERY, {"start": start, "end": end})
    row = await cursor.fetchone()
    if row is None:
        return 0, 0, 0, None, None, None

    def seconds(value: Any) -> float | None:
        return None if value is None else float(value)

    return int(row[0]), int(row[1]), int(row[2]), seconds(row[3]), seconds(row[4]), seconds(row[5])


async def statuses(monitor: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    cursor = await monitor.execute("SELECT status, count(*) FROM renewals GROUP BY status")
    return {str(row[0]): int(row[1]) for row in await cursor.fetchall()}


async def database_statistics(
    monitor: psycopg.AsyncConnection[Any], database: str
) -> tuple[int, int]:
    """Transactions and sessions so far (pg_stat_database; backends report within ~1 s)."""
    cursor = await monitor.execute(
        "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = %s",
        (database,),
    )
    row = await cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


SESSION_STATES_QUERY = """
SELECT
  count(*) FILTER (WHERE state = 'active' AND wait_event_type IS NULL),
  count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'),
  count(*) FILTER (WHERE state = 'active' AND wait_event_type NOT IN ('Lock')),
  count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),
  count(*) FILTER (WHERE state = 'idle')
FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""
SESSION_STATES = ("running", "lock_wait", "other_wait", "idle_in_transaction", "idle")


async def sample_sessions(
    monitor: psycopg.AsyncConnection[Any], database: str, stop: asyncio.Event
) -> dict[str, float]:
    """Average number of this database's sessions in each state, sampled every DRAIN_POLL_S.
    Many sessions idle in a transaction means PostgreSQL is waiting for the application."""
    totals: Counter[str] = Counter()
    samples = 0
    while not stop.is_set():
        cursor = await monitor.execute(SESSION_STATES_QUERY, (database,))
        row = await cursor.fetchone()
        if row is not None:
            totals.update(dict(zip(SESSION_STATES, (int(value) for value in row), strict=True)))
            samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DRAIN_POLL_S)
    return {state: totals[state] / samples if samples else 0.0 for state in SESSION_STATES}


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- one scenario -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    distribution: str
    worker_mode: str
    callers: int
    gateway_latency_s: float


@dataclass
class ScenarioResult:
    scenario: str
    distribution: str
    worker_mode: str
    workers: int
    callers: int
    gateway_latency_ms: float
    window_s: float
    created_per_s: float
    paid_per_s: float
    completed_per_s: float
    activation_p50_ms: float | None
    activation_p99_ms: float | None
    activation_max_ms: float | None
    renew_p50_ms: float | None
    renew_p99_ms: float | None
    renew_calls_per_s: float
    open_at_window_end: int
    drain_s: float
    open_after_drain: int
    outcomes: dict[str, int]
    final_statuses: dict[str, int]
    hottest_card_share: float
    caller_statements_per_renewal: float | None
    caller_checkouts_per_renewal: float | None
    worker_statements_per_activation: float | None
    worker_checkouts_per_activation: float | None
    new_connections_per_s: float
    transactions_per_created: float | None
    cpu_cores: dict[str, float | None]
    sessions: dict[str, float]
    ratio_to_pgbench: float | None = None
    complaints: list[str] = field(default_factory=list)


ROLE: ContextVar[str] = ContextVar("bench_role", default="other")  # "caller" or "worker"


class EngineCounter:
    """Statements sent, pool checkouts (one per unit of work) and new connections made by this
    process's engine, by the role of the task that asked (tasks inherit ROLE from their parent)."""

    def __init__(self, application: Application) -> None:
        self.counts: Counter[str] = Counter()
        engine = application.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._count("statements"))
        event.listen(engine, "checkout", self._count("checkouts"))
        event.listen(engine, "connect", self._count("connects"))

    def _count(self, what: str) -> Any:
        def listener(*_arguments: Any) -> None:
            self.counts[f"{ROLE.get()}_{what}"] += 1

        return listener

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


async def run_scenario(
    options: Options,
    scenario: Scenario,
    *,
    database: str,
    database_url: str,
    key: str,
    msisdns: list[str],
) -> ScenarioResult:
    loop = asyncio.get_running_loop()
    monitor = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    workers: WorkerProcesses | None = None
    supervisor: asyncio.Task[None] | None = None
    if scenario.worker_mode == "process":
        workers = WorkerProcesses(
            worker_environment(database_url, key, scenario.gateway_latency_s, options)
        )
        supervisor = await workers.start(options.workers, monitor, database)
    application = build(
        Settings(
            database_url=database_url,
            secret_key=key,
            gateway_latency_s=scenario.gateway_latency_s,
            network_delay_s=0,
            network_latency_s=0,
            sandbox_journal="",
        ),
        limits=LimitSettings(
            worker_batch_size=options.worker_batch_size,
            worker_concurrency=options.worker_concurrency,
            worker_idle_sleep_s=options.worker_idle_sleep_s,
        ),
        pool_size=options.pool_size,
    )
    counter = EngineCounter(application)
    chooser = CardChooser(msisdns, scenario.distribution)
    stop_workers = asyncio.Event()
    worker_tasks = (
        [
            asyncio.create_task(in_process_worker(application, stop_workers))
            for _ in range(options.workers)
        ]
        if scenario.worker_mode == "in-process"
        else []
    )
    transactions_before, _ = await database_statistics(monitor, database)
    clock = application.services.clock
    begun = loop.time()
    window_start_loop = begun + options.warmup_seconds
    window_end_loop = window_start_loop + options.seconds
    log = CallerLog()
    callers = [
        asyncio.create_task(
            caller(
                application,
                chooser,
                random.Random(options.seed * 1_000_003 + index),
                f"bench-{scenario.name}-{index}",
                window_end_loop,
                log,
            )
        )
        for index in range(scenario.callers)
    ]
    await asyncio.sleep(max(0.0, window_start_loop - loop.time()))
    window_start = clock.now()
    counts_before = counter.snapshot()
    _, sessions_before = await database_statistics(monitor, database)
    cpu_before = cpu_snapshot(workers.pids if workers else [])
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_sessions(monitor, database, stop_sampling))
    await asyncio.sleep(max(0.0, window_end_loop - loop.time()))
    window_end = clock.now()
    counts_after = counter.snapshot()
    _, sessions_after = await database_statistics(monitor, database)
    cpu_after = cpu_snapshot(workers.pids if workers else [])
    stop_sampling.set()
    sessions = await sampler
    backend_pids = await database_backend_pids(monitor, database)
    window_s = (window_end - window_start).total_seconds()
    await asyncio.gather(*callers)
    open_at_end = await open_renewals(monitor)
    drain_started = loop.time()
    open_left = open_at_end
    while open_left and loop.time() - drain_started < options.drain_seconds_max:
        await asyncio.sleep(DRAIN_POLL_S)
        open_left = await open_renewals(monitor)
    drain_s = loop.time() - drain_started
    stop_workers.set()
    await asyncio.gather(*worker_tasks)
    complaints = await workers.stop(supervisor) if workers and supervisor else []
    await application.close()
    created, paid, completed, activation_p50, activation_p99, activation_max = await window_counts(
        monitor, window_start, window_end
    )
    final_statuses = await statuses(monitor)
    created_total = sum(final_statuses.values())
    await asyncio.sleep(0.5)  # closed backends have flushed their statistics by now
    transactions_total = (await database_statistics(monitor, database))[0] - transactions_before
    await monitor.close()

    in_window = [
        duration
        for started, duration in zip(log.started_at, log.durations_s, strict=True)
        if window_start_loop <= started < window_end_loop
    ]
    cpu = cpu_cores(cpu_before, cpu_after, backend_pids, window_s)

    def milliseconds(value: float | None) -> float | None:
        return None if value is None else value * 1000

    counts = counts_after - counts_before

    def per(what: str, role: str, unit_count: int) -> float | None:
        if not unit_count or (role == "worker" and scenario.worker_mode != "in-process"):
            return None
        return counts[f"{role}_{what}"] / unit_count

    return ScenarioResult(
        scenario=scenario.name,
        distribution=scenario.distribution,
        worker_mode=scenario.worker_mode,
        workers=options.workers,
        callers=scenario.callers,
        gateway_latency_ms=scenario.gateway_latency_s * 1000,
        window_s=window_s,
        created_per_s=created / window_s,
        paid_per_s=paid / window_s,
        completed_per_s=completed / window_s,
        activation_p50_ms=milliseconds(activation_p50),
        activation_p99_ms=milliseconds(activation_p99),
        activation_max_ms=milliseconds(activation_max),
        renew_p50_ms=milliseconds(percentile(in_window, 0.5)),
        renew_p99_ms=milliseconds(percentile(in_window, 0.99)),
        renew_calls_per_s=len(in_window) / window_s,
        open_at_window_end=open_at_end,
        drain_s=drain_s,
        open_after_drain=open_left,
        outcomes=dict(log.outcomes),
        final_statuses=final_statuses,
        hottest_card_share=chooser.hottest_share(),
        caller_statements_per_renewal=per("statements", "caller", len(in_window)),
        caller_checkouts_per_renewal=per("checkouts", "caller", len(in_window)),
        worker_statements_per_activation=per("statements", "worker", completed),
        worker_checkouts_per_activation=per("checkouts", "worker", completed),
        new_connections_per_s=(sessions_after - sessions_before) / window_s,
        transactions_per_created=transactions_total / created_total if created_total else None,
        cpu_cores=cpu,
        sessions=sessions,
        complaints=complaints,
    )


def cpu_cores(
    before: CpuSnapshot, after: CpuSnapshot, backend_pids: list[int], window_s: float
) -> dict[str, float | None]:
    """CPU seconds per second of window (1.0 = one core busy), by who used them."""
    backends = sum(
        after.postgres_s[pid] - before.postgres_s.get(pid, 0.0)
        for pid in backend_pids
        if pid in after.postgres_s
    )
    bench = after.bench_s - before.bench_s

    def pid_delta(old: dict[int, float] | None, new: dict[int, float] | None) -> float | None:
        if old is None or new is None:
            return None
        return sum(value - old.get(pid, 0.0) for pid, value in new.items())

    workers = pid_delta(before.workers_s, after.workers_s)
    bench_waiting = (
        None
        if before.bench_waiting_s is None or after.bench_waiting_s is None
        else after.bench_waiting_s - before.bench_waiting_s
    )
    machine = (
        None
        if before.machine_s is None or after.machine_s is None
        else after.machine_s - before.machine_s
    )
    other = None if machine is None else machine - bench - (workers or 0.0) - backends

    def cores(value: float | None) -> float | None:
        return None if value is None else value / window_s

    return {
        "bench_process": cores(bench),
        "worker_processes": cores(workers),
        "postgres_backends": cores(backends),
        "other": cores(other),
        "machine": cores(machine),
        "bench_process_waiting": cores(bench_waiting),
        "worker_processes_waiting": cores(
            pid_delta(before.workers_waiting_s, after.workers_waiting_s)
        ),
    }


# --- the whole run ------------------------------------------------------------------------------


def scenarios(options: Options) -> list[Scenario]:
    planned = [
        Scenario(
            f"{distribution}/{mode}", distribution, mode, options.callers, options.gateway_latency_s
        )
        for mode in options.worker_modes
        for distribution in options.distributions
    ]
    if options.slow_gateway_scenario:
        milliseconds = f"{options.slow_gateway_latency_s * 1000:g}ms"
        planned += [
            Scenario(
                f"{distribution}/{mode}/gateway-{milliseconds}/{options.slow_gateway_callers}",
                distribution,
                mode,
                options.slow_gateway_callers,
                options.slow_gateway_latency_s,
            )
            for mode in options.worker_modes
            for distribution in options.distributions
        ]
    return planned


def run(options: Options) -> dict[str, Any]:
    started = time.monotonic()
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else None
    database = create_database(options.server_url, "topup_bench")
    database_url = plain_url(options.server_url, database)
    key = fernet_key()
    results: list[ScenarioResult] = []
    try:
        progress(f"created {database}; migrating")
        migrate(database_url)
        msisdns = bench_msisdns(options.cards)

        async def load() -> None:
            application = build(
                Settings(database_url=database_url, secret_key=key, sandbox_journal="")
            )
            try:
                await load_cards(application, msisdns)
            finally:
                await application.close()

        progress(f"loading {len(msisdns)} cards")
        runtime.run(load())
        pgbench = run_pgbench(options) if options.pgbench_seconds > 0 else None
        if pgbench is not None:
            progress(f"pgbench tps = {pgbench.tps:.1f}")
        for scenario in scenarios(options):
            progress(
                f"scenario {scenario.name}: {scenario.callers} callers, "
                f"{options.warmup_seconds:g} s warm-up + {options.seconds:g} s window"
            )
            result = runtime.run(
                run_scenario(
                    options,
                    scenario,
                    database=database,
                    database_url=database_url,
                    key=key,
                    msisdns=msisdns,
                )
            )
            if pgbench is not None and pgbench.tps:
                result.ratio_to_pgbench = result.completed_per_s / pgbench.tps
            progress(
                f"  completed {result.completed_per_s:.1f}/s, paid {result.paid_per_s:.1f}/s, "
                f"ratio {result.ratio_to_pgbench or 0:.3f}"
            )
            for complaint in result.complaints:
                progress(f"  warning: {complaint}")
            results.append(result)
            empty_scenario_tables(database_url)
    finally:
        drop_database(options.server_url, database)
        progress(f"dropped {database}")
    return {
        "pgbench": None if pgbench is None else asdict(pgbench),
        "targets": {"ratio_issue": TARGET_RATIO_ISSUE, "ratio_product": TARGET_RATIO_PRODUCT},
        "settings": {
            "cards": options.cards,
            "callers": options.callers,
            "workers": options.workers,
            "window_s": options.seconds,
            "warmup_s": options.warmup_seconds,
            "worker_batch_size": options.worker_batch_size,
            "worker_concurrency": options.worker_concurrency,
            "worker_idle_sleep_ms": options.worker_idle_sleep_s * 1000,
            "pool_size": options.pool_size,
            "zipf_exponent": ZIPF_EXPONENT,
            "plan": PLAN_CODE,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_average,
            "python": sys.version.split()[0],
        },
        "scenarios": [asdict(result) for result in results],
        "runtime_s": time.monotonic() - started,
    }


# --- output -------------------------------------------------------------------------------------


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def milliseconds_per(cores: float | None, rate_per_s: float) -> float | None:
    return None if cores is None or not rate_per_s else cores * 1000 / rate_per_s


def cpu_ceiling_per_s(result: dict[str, Any], cpus: int | None) -> float | None:
    """Renewals per second the machine could complete if this scenario's CPU cost per renewal
    held and nothing else ran (process mode only: there the costs are measured apart)."""
    if result["worker_mode"] != "process" or not cpus:
        return None
    cpu = result["cpu_cores"]
    parts = [
        milliseconds_per(cpu.get("bench_process"), result["renew_calls_per_s"]),
        milliseconds_per(cpu.get("worker_processes"), result["completed_per_s"]),
        milliseconds_per(cpu.get("postgres_backends"), result["completed_per_s"]),
    ]
    if any(part is None for part in parts):
        return None
    total_ms = sum(part for part in parts if part is not None)
    return cpus * 1000 / total_ms if total_ms else None


def verdict(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= TARGET_RATIO_PRODUCT:
        return "meets both"
    if ratio >= TARGET_RATIO_ISSUE:
        return "meets 0.25"
    return "below 0.25"


def print_table(report: dict[str, Any]) -> None:
    pgbench = report["pgbench"]
    settings = report["settings"]
    machine = report["machine"]
    if pgbench is None:
        print("pgbench: skipped (--pgbench-seconds 0); no ratios")
    else:
        print(
            f"pgbench TPC-B: {pgbench['tps']:.1f} tps (-s {pgbench['scale']} "
            f"-c {pgbench['clients']} -j {pgbench['threads']} -T {pgbench['seconds']}, "
            f"latency avg {number(pgbench['latency_average_ms'], 2)} ms)"
        )
    print(
        f"renewals: {settings['cards']} cards, {settings['callers']} callers, "
        f"{settings['workers']} worker(s), window {settings['window_s']:g} s after "
        f"{settings['warmup_s']:g} s warm-up, worker batch {settings['worker_batch_size']} / "
        f"concurrency {settings['worker_concurrency']} / idle sleep "
        f"{settings['worker_idle_sleep_ms']:g} ms, Zipf s={settings['zipf_exponent']}"
    )
    print(
        f"machine: {machine['cpus']} CPUs, load average at start {machine['load_average_at_start']}"
    )
    print(
        f"targets: completed/s / pgbench tps >= {TARGET_RATIO_ISSUE} (issue), "
        f">= {TARGET_RATIO_PRODUCT} (product goal)"
    )
    headers = (
        "scenario",
        "done/s",
        "paid/s",
        "made/s",
        "act p50",
        "act p99",
        "renew p50",
        "renew p99",
        "ratio",
        "target",
        "backlog",
    )
    rows = [
        (
            result["scenario"],
            number(result["completed_per_s"]),
            number(result["paid_per_s"]),
            number(result["created_per_s"]),
            number(result["activation_p50_ms"], 0),
            number(result["activation_p99_ms"], 0),
            number(result["renew_p50_ms"]),
            number(result["renew_p99_ms"]),
            number(result["ratio_to_pgbench"], 3),
            verdict(result["ratio_to_pgbench"]),
            f"{result['open_at_window_end']}->{result['open_after_drain']}",
        )
        for result in report["scenarios"]
    ]
    print_rows(headers, rows)
    print("(latencies in ms; backlog = open renewals at window end -> after the drain)")
    print()
    headers = (
        "scenario",
        "caller stmts",
        "uows",
        "worker stmts",
        "uows",
        "xacts",
        "conn/s",
        "cores: bench",
        "workers",
        "pg",
        "other",
        "all",
        "runnable, no CPU: bench",
        "workers",
        "cpu ms: renew",
        "activation",
        "pg/done",
    )
    rows = []
    for result in report["scenarios"]:
        cpu = result["cpu_cores"]
        process_mode = result["worker_mode"] == "process"
        rows.append(
            (
                result["scenario"],
                number(result["caller_statements_per_renewal"]),
                number(result["caller_checkouts_per_renewal"]),
                number(result["worker_statements_per_activation"]),
                number(result["worker_checkouts_per_activation"]),
                number(result["transactions_per_created"]),
                number(result["new_connections_per_s"]),
                number(cpu.get("bench_process"), 2),
                number(cpu.get("worker_processes"), 2),
                number(cpu.get("postgres_backends"), 2),
                number(cpu.get("other"), 2),
                number(cpu.get("machine"), 2),
                number(cpu.get("bench_process_waiting"), 2),
                number(cpu.get("worker_processes_waiting"), 2),
                number(milliseconds_per(cpu.get("bench_process"), result["renew_calls_per_s"]), 2)
                if process_mode
                else "-",
                number(milliseconds_per(cpu.get("worker_processes"), result["completed_per_s"]), 2),
                number(
                    milliseconds_per(cpu.get("postgres_backends"), result["completed_per_s"]), 2
                ),
            )
        )
    print_rows(headers, rows)
    print(
        "(per renewal / per activation in this process's engine: SQL statements and units of work "
        "(pool checkouts; each adds BEGIN and COMMIT or ROLLBACK); xacts: "
        "PostgreSQL transactions per renewal made, all processes; conn/s: new PostgreSQL sessions "
        "per second, all processes; cores: CPU seconds per second; runnable, no CPU: seconds per second a "
        "process was ready to run but waited for a core; cpu ms: CPU per renew call (callers' "
        "process, worker in its own process only), per activation (worker processes), PostgreSQL "
        "backends per completed renewal)"
    )
    for result in report["scenarios"]:
        ceiling = cpu_ceiling_per_s(result, machine["cpus"])
        if ceiling is not None:
            tps = pgbench["tps"] if pgbench else None
            ratio = f", ratio <= {ceiling / tps:.3f}" if tps else ""
            print(
                f"{result['scenario']}: CPU per renewal end to end (renew + activation + "
                f"PostgreSQL) {1000 * machine['cpus'] / ceiling:.1f} ms, so at most "
                f"{ceiling:.0f} renewals/s on {machine['cpus']} idle cores{ratio}"
            )
    print()
    headers = (
        "scenario",
        "pg sessions: running",
        "lock wait",
        "other wait",
        "idle in xact",
        "idle",
    )
    print_rows(
        headers,
        [
            (
                result["scenario"],
                *(number(result["sessions"].get(state), 1) for state in SESSION_STATES),
            )
            for result in report["scenarios"]
        ],
    )
    print(
        "(average sessions of the bench database in each state during the window; 'idle in xact' "
        "= PostgreSQL waiting for the application inside a transaction)"
    )
    for result in report["scenarios"]:
        unusual = {k: v for k, v in result["outcomes"].items() if k != "activating"}
        if unusual or result["complaints"]:
            print(f"{result['scenario']}: outcomes {result['outcomes']} {result['complaints']}")
    print(f"runtime {report['runtime_s']:.0f} s")


def print_rows(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    try:
        report = run(options)
    except (psycopg.OperationalError, subprocess.CalledProcessError, FileNotFoundError) as error:
        detail = getattr(error, "stderr", None) or ""
        raise SystemExit(
            f"bench failed: {type(error).__name__}: {error} {detail}".strip()
        ) from None
    if options.as_json:
        print(json.dumps(report, sort_keys=True, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
