"""The worker: runs activation/refund jobs, resolves unknown payments, moves card lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from topup.services.activation import run_due_jobs
from topup.services.context import Services
from topup.services.lifecycle import advance_cards
from topup.services.reconcile import reconcile_payments


async def work_once(services: Services) -> int:
    """One pass over everything due now; returns how many things were done."""
    done = await run_due_jobs(services)
    done += await reconcile_payments(services)
    done += await advance_cards(services)
    return done


async def run_forever(services: Services, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on the main thread
            loop.add_signal_handler(signal_number, stop.set)
    limits = services.limits
    last_lifecycle = 0.0
    while not stop.is_set():
        done = await run_due_jobs(services)
        done += await reconcile_payments(services)
        if loop.time() - last_lifecycle >= limits.lifecycle_interval_s:
            done += await advance_cards(services)
            last_lifecycle = loop.time()
        if done == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=limits.worker_idle_sleep_s)
