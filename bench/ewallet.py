"""E-wallet renewals per second on PostgreSQL, completed by the provider's signed webhook.

Each of ``--callers`` tasks loops: ``renew`` with ``ewallet:tng`` (the sandbox wallet answers after
``--gateway-latency-ms``, sending the payer to approve), then posts the webhook the provider sends
once the payer has approved (signed, checked, de-duplicated by ``handle_webhook``), like the
provider's HTTP call would arrive. The activation worker runs in this process. After a warm-up,
renewals whose ``completed_at`` falls in a ``--seconds`` window are counted in the database.

Issue 3's target: at least 500 renewals/s with a gateway latency of 100 ms and 256 callers.
Progress goes to stderr, figures to stdout; a benchmark prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from renewals import (
    DEFAULT_SERVER_URL,
    bench_msisdns,
    create_database,
    drop_database,
    fernet_key,
    in_process_worker,
    load_cards,
    plain_url,
    progress,
)

from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.bootstrap import build, migrate
from topup.entrypoints import runtime
from topup.ports import ChargeRequest
from topup.services.renewals import RenewalRequest, renew
from topup.services.wallets import handle_webhook
from topup.settings import Settings

TARGET_PER_S = 500
PLAN_CODE = "pack_5gb_7d"
WALLET_ACCOUNT = "60123456781"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=256)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--gateway-latency-ms", type=float, default=100.0)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.seconds, arguments.warmup_seconds, arguments.cards = 3.0, 1.0, 2_000
    return arguments


async def run(arguments: argparse.Namespace, url: str) -> None:
    application = build(
        Settings(
            database_url=url,
            secret_key=fernet_key(),
            gateway_latency_s=arguments.gateway_latency_ms / 1000,
            network_delay_s=0,
            network_latency_s=0,
            wallet_approval_delay_s=0,
            sandbox_journal="",
        )
    )
    services = application.services
    wallet = services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    wallet.deliver = None  # the callers post the webhook themselves, right after the approval
    msisdns = bench_msisdns(arguments.cards)
    await load_cards(application, msisdns)
    stop = asyncio.Event()
    worker = asyncio.create_task(in_process_worker(application, stop))
    deadline = time.monotonic() + arguments.warmup_seconds + arguments.seconds
    latencies_ms: list[float] = []
    refused: dict[str, int] = {}

    async def caller(number: int) -> None:
        serial = 0
        while time.monotonic() < deadline:
            serial += 1
            card = msisdns[(number * 7919 + serial * 104729) % len(msisdns)]
            started = time.monotonic()
            try:
                view = await renew(
                    services,
                    RenewalRequest(
                        card_number=card,
                        plan_code=PLAN_CODE,
                        payment=None,
                        method="ewallet:tng",
                        wallet_account=f"+6012{number % 1000:03d}{serial % 1000:03d}1",
                        idempotency_key=f"bench-{number}-{serial}",
                    ),
                )
                payment = view.payment
                assert payment is not None
                charge = ChargeRequest(
                    payment_id=payment.id,
                    token=services.tokens.open(payment.token_encrypted),
                    amount=payment.amount,
                    description="",
                    requested_at=payment.requested_at,
                )
                body, headers = wallet.webhook(charge)
                await handle_webhook(services, "sandbox_wallet", body, headers)
            except Exception as error:
                refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
                continue
            latencies_ms.append((time.monotonic() - started) * 1000)

    progress(f"{arguments.callers} callers, {arguments.warmup_seconds:g} s warm-up")
    callers = [asyncio.create_task(caller(number)) for number in range(arguments.callers)]
    await asyncio.sleep(arguments.warmup_seconds)
    window_start = services.clock.now()
    measured_from = len(latencies_ms)
    await asyncio.gather(*callers)
    window_end = services.clock.now()
    await asyncio.sleep(2)  # let the worker finish what was paid in the window
    stop.set()
    await worker
    with psycopg.connect(plain_url(url)) as connection:
        completed, paid = connection.execute(
            "SELECT count(*) FILTER (WHERE completed_at >= %s AND completed_at < %s),"
            " count(*) FILTER (WHERE paid_at >= %s AND paid_at < %s) FROM renewals",
            (window_start, window_end, window_start, window_end),
        ).fetchone() or (0, 0)
    seconds = (window_end - window_start).total_seconds()
    window_latencies = sorted(latencies_ms[measured_from:])
    await application.close()
    completed_per_s = completed / seconds
    print(
        f"e-wallet renewals: {arguments.callers} callers, gateway latency "
        f"{arguments.gateway_latency_ms:g} ms, {arguments.cards} cards, window {seconds:.1f} s"
    )
    print(f"completed/s {completed_per_s:.1f}   paid (webhook recorded)/s {paid / seconds:.1f}")
    if window_latencies:
        p50 = statistics.median(window_latencies)
        p99 = window_latencies[min(len(window_latencies) - 1, int(len(window_latencies) * 0.99))]
        print(f"renew + webhook latency p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    print(f"failures: {refused or 'none'}")
    verdict = "meets" if completed_per_s >= TARGET_PER_S else "below"
    print(f"target >= {TARGET_PER_S}/s: {verdict} ({completed_per_s / TARGET_PER_S:.2f} of it)")


def main() -> None:
    arguments = parse_arguments()
    server = os.environ.get("TOPUP_BENCH_DATABASE_URL", DEFAULT_SERVER_URL)
    name = create_database(server, "topup_bench_wallet")
    url = plain_url(server, name)
    try:
        progress(f"migrating {name}")
        migrate(url)
        runtime.run(run(arguments, url))
    finally:
        drop_database(server, name)


if __name__ == "__main__":
    main()
