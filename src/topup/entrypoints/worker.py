"""The worker: runs activation/refund jobs, resolves unknown payments, moves card lifecycles."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from topup.adapters.db.engine import TRANSIENT_DATABASE_ERRORS
from topup.services import accounts, idempotency
from topup.services.activation import run_due_jobs
from topup.services.context import Services
from topup.services.lifecycle import advance_cards
from topup.services.reconcile import reconcile_payments


async def work_once(services: Services) -> int:
    """One pass over everything due now; returns how many things were done."""
    done = await run_due_jobs(services)
    done += await reconcile_payments(services)
    done += await advance_cards(services)
    done += await idempotency.prune(services, limit=services.limits.lifecycle_batch_size)
    done += await accounts.prune(services, limit=services.limits.lifecycle_batch_size)
    return done


async def run_forever(services: Services, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on the main thread
            loop.add_signal_handler(signal_number, stop.set)
    limits = services.limits
    last_lifecycle = 0.0
    failures_in_a_row = 0
    while not stop.is_set():
        try:
            done = await run_due_jobs(services)
            done += await reconcile_payments(services)
            if loop.time() - last_lifecycle >= limits.lifecycle_interval_s:
                done += await advance_cards(services)
                # HTTP idempotency records past their 24 h: forgotten a batch at a time.
                done += await idempotency.prune(services, limit=limits.lifecycle_batch_size)
                # Sign-in attempt counts that are over, link codes that expired: likewise.
                done += await accounts.prune(services, limit=limits.lifecycle_batch_size)
                last_lifecycle = loop.time()
            failures_in_a_row = 0
        except TRANSIENT_DATABASE_ERRORS as error:
            # The database went away or is full: claimed work stays leased and is taken again
            # later, so waiting and trying again loses nothing.
            failures_in_a_row += 1
            pause_s = min(
                limits.worker_error_pause_cap_s,
                limits.worker_idle_sleep_s * 2 ** min(failures_in_a_row, 10),
            )
            print(
                f"worker: database unavailable ({type(error).__name__}); retrying in {pause_s:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause_s)
            continue
        if done == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=limits.worker_idle_sleep_s)
