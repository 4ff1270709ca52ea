"""The worker: runs activation/refund jobs, resolves unknown payments, moves card lifecycles.

What it does is one table, ``PASSES``: each pass a named function with its interval.
``work_once`` runs every pass once; ``run_forever`` runs each pass whenever its interval has
passed since it last ran, and sleeps when a round did nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from topup.adapters.db.engine import TRANSIENT_DATABASE_ERRORS
from topup.limits import Limits
from topup.services import accounts, idempotency
from topup.services.activation import run_due_jobs
from topup.services.auto_renewal import run_auto_renewals, run_auto_top_ups
from topup.services.context import Services
from topup.services.fleets.bulk import process_bulk_lines
from topup.services.fleets.policy import process_policy_requests
from topup.services.lifecycle import advance_cards
from topup.services.reconcile import reconcile_payments
from topup.services.reminders.scheduling import queue_due_reminders
from topup.services.reminders.sending import send_due_deliveries
from topup.services.usage import tell_network

EVERY_ROUND_S = 0.0  # a pass with this interval runs in every round of the loop


async def run_jobs(services: Services) -> int:
    """Activations, refunds and receipt e-mails that are due."""
    return await run_due_jobs(services)


async def check_payments(services: Services) -> int:
    """Ask gateways about payments whose outcome is not known yet."""
    return await reconcile_payments(services)


async def move_card_lifecycles(services: Services) -> int:
    """Cards into grace, expiry or suspension."""
    return await advance_cards(services)


async def forget_idempotency_records(services: Services) -> int:
    """HTTP idempotency records past their 24 h, a batch at a time."""
    return await idempotency.prune(services, limit=services.limits.worker.lifecycle_batch_size)


async def forget_sign_in_attempts(services: Services) -> int:
    """Sign-in attempt counts that are over and link codes that expired, a batch at a time."""
    return await accounts.prune(services, limit=services.limits.worker.lifecycle_batch_size)


async def renew_bulk_lines(services: Services) -> int:
    """Lines of organisations' bulk renewals, a bounded batch at a time."""
    return await process_bulk_lines(services)


async def queue_reminders(services: Services) -> int:
    """Reminders due from the cards' dates and events, each (card, period, kind) once."""
    return await queue_due_reminders(services)


async def send_reminders(services: Services) -> int:
    """A batch of due reminder deliveries (SMS, e-mail, push), each once."""
    return await send_due_deliveries(services)


def reminder_interval(limits: Limits) -> float:
    return limits.reminders.reminder_interval_s


async def apply_fleet_policies(services: Services) -> int:
    """Organisations' fleet-wide auto-renewal policies, a batch of cards per request a pass."""
    return await process_policy_requests(services)


async def bar_exhausted_cards(services: Services) -> int:
    """Tell the network to bar the data of exhausted prepaid cards, and to restore it once a
    renewal gave them data again."""
    return await tell_network(services)


async def auto_renew_cards(services: Services) -> int:
    """Auto-renewals: pre-checks before the charge, charges and their retries (issue 11)."""
    return await run_auto_renewals(services)


async def auto_top_up_cards(services: Services) -> int:
    """Auto top-ups of cards whose data fell below their threshold (issue 11)."""
    return await run_auto_top_ups(services)


def every_round(limits: Limits) -> float:
    return EVERY_ROUND_S


def lifecycle_interval(limits: Limits) -> float:
    return limits.worker.lifecycle_interval_s


@dataclass(frozen=True, slots=True)
class Pass:
    """One kind of work: ``run`` returns how many things it did; it runs again once
    ``interval_s(limits)`` seconds have passed since it last ran."""

    name: str
    run: Callable[[Services], Awaitable[int]]
    interval_s: Callable[[Limits], float]


PASSES: tuple[Pass, ...] = (
    Pass("jobs", run_jobs, every_round),
    Pass("payment checks", check_payments, every_round),
    Pass("card lifecycles", move_card_lifecycles, lifecycle_interval),
    Pass("idempotency records", forget_idempotency_records, lifecycle_interval),
    Pass("sign-in attempts", forget_sign_in_attempts, lifecycle_interval),
    Pass("bulk renewals", renew_bulk_lines, every_round),
    Pass("reminders queued", queue_reminders, reminder_interval),
    Pass("reminders sent", send_reminders, every_round),
    Pass("data bars", bar_exhausted_cards, every_round),
    Pass("auto-renewals", auto_renew_cards, every_round),
    Pass("auto top-ups", auto_top_up_cards, lifecycle_interval),
    Pass("fleet policies", apply_fleet_policies, every_round),
)


async def run_passes(
    services: Services, last_run: dict[str, float] | None = None, *, now: float = 0.0
) -> int:
    """Run, in the table's order, the passes due at ``now`` (a monotonic time) given when each
    last ran (``last_run``, by name, updated once a pass has run); without ``last_run``, every
    pass. Returns how many things were done."""
    done = 0
    for work in PASSES:
        if last_run is not None:
            since_s = now - last_run.get(work.name, -math.inf)
            if since_s < work.interval_s(services.limits):
                continue
        done += await work.run(services)
        if last_run is not None:
            last_run[work.name] = now
    return done


async def work_once(services: Services) -> int:
    """One pass over everything due now; returns how many things were done."""
    return await run_passes(services)


async def run_forever(services: Services, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on the main thread
            loop.add_signal_handler(signal_number, stop.set)
    limits = services.limits
    last_run: dict[str, float] = {}
    failures_in_a_row = 0
    while not stop.is_set():
        try:
            done = await run_passes(services, last_run, now=loop.time())
            failures_in_a_row = 0
        except TRANSIENT_DATABASE_ERRORS as error:
            # The database went away or is full: claimed work stays leased and is taken again
            # later, so waiting and trying again loses nothing.
            failures_in_a_row += 1
            pause_s = min(
                limits.worker.worker_error_pause_cap_s,
                limits.worker.worker_idle_sleep_s * 2 ** min(failures_in_a_row, 10),
            )
            print(
                f"worker: database unavailable ({type(error).__name__}); retrying in {pause_s:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            await _pause(stop, pause_s)
            continue
        if done == 0:
            await _pause(stop, limits.worker.worker_idle_sleep_s)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
