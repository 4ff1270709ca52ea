"""HTTP renewal throughput: POST /api/v1/renewals against `topup serve` on PostgreSQL, next to the
same machine's pgbench TPC-B figure measured in the same run.

What it does, in order:

1. creates a fresh database ``topup_http_bench_<random>`` on the server named by
   TOPUP_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), migrates it and
   loads the demo plans and ``--cards`` prepaid cards;
2. runs pgbench (``-i -s 10``, then ``-c 32 -j 2 -T 10``) for the reference figure;
3. for each scenario, empties the renewal tables, starts ``topup serve --workers N`` on that database (the sandbox card
   gateway with the scenario's latency; no activation worker, so that the figure is the API's
   own), gets one card token from the sandbox PSP endpoint, and drives POST /api/v1/renewals with
   wrk (Debian package ``wrk``): every request a unique Idempotency-Key and a card drawn at
   random from the ``--cards``; a warm-up run, then a measured run of ``--seconds``;
4. prints, per scenario: renewals/s (201 answers per second, checked against the renewals the
   database holds), p50/p99 latency as wrk saw it, non-201 answers, and the ratio to pgbench tps;
   then drops the databases.

Targets of the issue (2 cores): >= 1,000 renewals/s at 64 clients with p99 <= 150 ms, and
>= 800/s with the gateway at 100 ms and 256 clients. A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
import renewals as engine_bench

from topup.bootstrap import build, migrate
from topup.settings import Settings

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
PLAN_CODE = "pack_5gb_7d"
WRK_THREADS = 2
HTTP_TABLES = ("idempotency_requests",)  # emptied between scenarios with the engine's tables

WRK_SCRIPT = r"""
local cards = {}
local token = os.getenv("BENCH_TOKEN")
local run = os.getenv("BENCH_RUN")
local plan = os.getenv("BENCH_PLAN")
for line in io.lines(os.getenv("BENCH_CARDS")) do cards[#cards + 1] = line end
local threads = {}
local counter = 0
created = 0
other = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id)
end

function request()
  counter = counter + 1
  local card = cards[math.random(1, #cards)]
  local body = '{"card_number":"' .. card .. '","plan":"' .. plan ..
    '","payment":{"method":"credit_card","token":"' .. token .. '"}}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = run .. "-" .. thread_id .. "-" .. counter
  return wrk.format("POST", "/api/v1/renewals", headers, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local total_created, total_other = 0, 0
  for _, thread in ipairs(threads) do
    total_created = total_created + thread:get("created")
    total_other = total_other + thread:get("other")
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"created":%d,"other":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, total_created, total_other,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status))
end
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    gateway_latency_s: float


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-url", default=os.environ.get("TOPUP_BENCH_DATABASE_URL", DEFAULT_SERVER_URL)
    )
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--slow-clients", type=int, default=256)
    parser.add_argument("--slow-gateway-latency-s", type=float, default=0.1)
    parser.add_argument("--pgbench-seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["fast", "slow"], default=None)
    parser.add_argument("--json", action="store_true", dest="as_json")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_health(base: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the server at {base} did not become healthy in {deadline_s:g} s")


def card_token(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/sandbox/psp/v1/tokens",
        data=json.dumps(
            {
                "number": engine_bench.PAYMENT_CARD_NUMBER,
                "exp_month": 12,
                "exp_year": 2030,
                "cvc": "123",
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        token: str = json.loads(answer.read())["token"]
    return token


def run_wrk(
    base: str, script: Path, environment: dict[str, str], clients: int, seconds: float
) -> dict[str, Any]:
    finished = subprocess.run(
        [
            "wrk",
            "-t",
            str(WRK_THREADS),
            "-c",
            str(clients),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    for line in finished.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
            return result
    raise SystemExit(f"wrk printed no figures:\n{finished.stdout}\n{finished.stderr}")


def process_tree(root: int) -> list[int]:
    """``root`` and its children (uvicorn's worker processes)."""
    found = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == root:
                found.append(int(entry.name))
    return found


@dataclass
class Cpu:
    """CPU seconds used so far: the server processes, every PostgreSQL process, this script's
    children (wrk) and the whole machine."""

    server_s: float
    postgres_s: float
    children_s: float
    machine_s: float | None

    @classmethod
    def now(cls, server_pids: list[int]) -> Cpu:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            server_s=sum(engine_bench.process_cpu_s(pid) or 0.0 for pid in server_pids),
            postgres_s=sum(engine_bench.postgres_processes_cpu_s().values()),
            children_s=children.ru_utime + children.ru_stime,
            machine_s=engine_bench.machine_busy_s(),
        )


def empty_scenario_tables(url: str) -> None:
    with psycopg.connect(engine_bench.plain_url(url), autocommit=True) as connection:
        names = sql.SQL(", ").join(
            sql.Identifier(table) for table in (*engine_bench.SCENARIO_TABLES, *HTTP_TABLES)
        )
        connection.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))
        connection.execute("VACUUM ANALYZE")


def renewals_in_database(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM renewals").fetchone()
    return int(row[0]) if row else 0


def run_scenario(
    scenario: Scenario,
    options: argparse.Namespace,
    database_url: str,
    key: str,
    cards_file: Path,
    script: Path,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "TOPUP_DATABASE_URL": database_url,
        "TOPUP_SECRET_KEY": key,
        "TOPUP_GATEWAY_LATENCY_S": str(scenario.gateway_latency_s),
        "TOPUP_SANDBOX_JOURNAL": "",
        # Every renewal is a card look-up (60 a minute per client by default): wrk is one client.
        "TOPUP_CARD_LOOKUP_PER_MINUTE_MAX": "1000000000",
    }
    executable = Path(sys.executable).with_name("topup")
    engine_bench.progress(
        f"{scenario.name}: topup serve --workers {options.workers} on port {port}"
    )
    server = subprocess.Popen(
        [str(executable), "serve", "--port", str(port), "--workers", str(options.workers)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_health(base)
        wrk_environment = {
            **os.environ,
            "BENCH_TOKEN": card_token(base),
            "BENCH_PLAN": PLAN_CODE,
            "BENCH_CARDS": str(cards_file),
        }
        engine_bench.progress(
            f"{scenario.name}: warm-up {options.warmup_seconds:g} s, {scenario.clients} clients"
        )
        run_wrk(
            base,
            script,
            {**wrk_environment, "BENCH_RUN": f"warm-{scenario.name}-{time.time_ns()}"},
            scenario.clients,
            options.warmup_seconds,
        )
        plain = engine_bench.plain_url(database_url)
        before = renewals_in_database(plain)
        pids = process_tree(server.pid)
        cpu_before = Cpu.now(pids)
        engine_bench.progress(f"{scenario.name}: measuring {options.seconds:g} s")
        figures = run_wrk(
            base,
            script,
            {**wrk_environment, "BENCH_RUN": f"run-{scenario.name}-{time.time_ns()}"},
            scenario.clients,
            options.seconds,
        )
        cpu_after = Cpu.now(pids)
        after = renewals_in_database(plain)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    seconds = figures["duration_us"] / 1e6
    machine = (
        None
        if cpu_before.machine_s is None or cpu_after.machine_s is None
        else (cpu_after.machine_s - cpu_before.machine_s) / seconds
    )
    cores = {
        "server": (cpu_after.server_s - cpu_before.server_s) / seconds,
        "postgres": (cpu_after.postgres_s - cpu_before.postgres_s) / seconds,
        "wrk": (cpu_after.children_s - cpu_before.children_s) / seconds,
        "machine": machine,
    }
    created_per_s = figures["created"] / seconds
    return {
        "cores": cores,
        "server_cpu_ms_per_renewal": cores["server"] / created_per_s * 1000
        if created_per_s
        else None,
        "postgres_cpu_ms_per_renewal": cores["postgres"] / created_per_s * 1000
        if created_per_s
        else None,
        "scenario": scenario.name,
        "clients": scenario.clients,
        "gateway_latency_ms": scenario.gateway_latency_s * 1000,
        "server_processes": options.workers,
        "renewals_per_s": figures["created"] / seconds,
        "requests_per_s": figures["requests"] / seconds,
        "renewals_stored": after - before,
        "non_201": figures["other"],
        "socket_errors": figures["connect_errors"]
        + figures["read_errors"]
        + figures["write_errors"]
        + figures["timeouts"],
        "p50_ms": figures["p50_us"] / 1000,
        "p90_ms": figures["p90_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
    }


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives the server with wrk: apt-get install wrk")
    pgbench_options = argparse.Namespace(
        server_url=options.server_url,
        pgbench_scale=10,
        pgbench_clients=32,
        pgbench_seconds=options.pgbench_seconds,
    )
    name = engine_bench.create_database(options.server_url, "topup_http_bench")
    database_url = engine_bench.plain_url(options.server_url, name)
    key = engine_bench.fernet_key()
    results: list[dict[str, Any]] = []
    try:
        engine_bench.progress(f"migrating {name} and loading {options.cards} cards")
        migrate(database_url)

        async def load() -> None:
            application = build(
                Settings(database_url=database_url, secret_key=key, sandbox_journal="")
            )
            try:
                await engine_bench.load_cards(application, msisdns)
            finally:
                await application.close()

        msisdns = engine_bench.bench_msisdns(options.cards)
        asyncio.run(load())
        pgbench = engine_bench.run_pgbench(pgbench_options)  # type: ignore[arg-type]
        engine_bench.progress(f"pgbench: {pgbench.tps:.1f} tps")
        scenarios = [
            Scenario("fast-gateway", options.clients, 0.0),
            Scenario("slow-gateway", options.slow_clients, options.slow_gateway_latency_s),
        ]
        if options.only is not None:
            scenarios = [s for s in scenarios if s.name.startswith(options.only)]
        with tempfile.TemporaryDirectory() as directory:
            cards_file = Path(directory) / "cards.txt"
            cards_file.write_text("\n".join(msisdns) + "\n")
            script = Path(directory) / "renew.lua"
            script.write_text(WRK_SCRIPT)
            for scenario in scenarios:
                # Every scenario starts from the same state: no renewals, fresh statistics.
                empty_scenario_tables(database_url)
                result = run_scenario(scenario, options, database_url, key, cards_file, script)
                result["pgbench_tps"] = pgbench.tps
                result["ratio_to_pgbench"] = result["renewals_per_s"] / pgbench.tps
                results.append(result)
    finally:
        engine_bench.drop_database(options.server_url, name)
    if options.as_json:
        print(json.dumps({"pgbench_tps": pgbench.tps, "scenarios": results}, indent=2))
        return
    print(f"pgbench TPC-B (-c 32 -j 2 -s 10): {pgbench.tps:.1f} tps")
    header = (
        "scenario",
        "clients",
        "gateway ms",
        "renewals/s",
        "stored",
        "non-201",
        "p50 ms",
        "p99 ms",
        "ratio",
    )
    rows = [
        (
            r["scenario"],
            str(r["clients"]),
            f"{r['gateway_latency_ms']:g}",
            f"{r['renewals_per_s']:.1f}",
            str(r["renewals_stored"]),
            str(r["non_201"] + r["socket_errors"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['ratio_to_pgbench']:.3f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print()
    print("CPU, in cores busy (1.0 = one core) and milliseconds per renewal:")
    for r in results:
        cores = r["cores"]
        machine = "n/a" if cores["machine"] is None else f"{cores['machine']:.2f}"
        print(
            f"  {r['scenario']}: server {cores['server']:.2f} "
            f"({r['server_cpu_ms_per_renewal'] or 0:.2f} ms), postgres {cores['postgres']:.2f} "
            f"({r['postgres_cpu_ms_per_renewal'] or 0:.2f} ms), wrk {cores['wrk']:.2f}, "
            f"machine {machine} of {os.cpu_count()}"
        )


if __name__ == "__main__":
    main()
