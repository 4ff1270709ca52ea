"""The worker's one table of passes: `work_once` runs each once, `run_forever` each at its
interval, from the same table."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from types import SimpleNamespace
from typing import cast

import pytest

from topup.entrypoints import worker
from topup.entrypoints.worker import EVERY_ROUND_S, PASSES, Pass, run_passes
from topup.services.context import Services
from topup.settings import LimitSettings

LIFECYCLE_INTERVAL_S = 60.0
ROUNDS = 5


class Counting:
    """A pass body that counts its runs and, once the loop has gone ``rounds_max`` rounds,
    asks it to stop."""

    def __init__(self, stop: asyncio.Event | None = None, rounds_max: int = 0) -> None:
        self.runs = 0
        self._stop = stop
        self._rounds_max = rounds_max

    async def __call__(self, services: Services) -> int:
        self.runs += 1
        if self._stop is not None and self.runs >= self._rounds_max:
            self._stop.set()
        return 1


def fake_services() -> Services:
    limits = LimitSettings(lifecycle_interval_s=LIFECYCLE_INTERVAL_S).by_concern()
    return cast(Services, SimpleNamespace(limits=limits))


def table(every_round: Counting, lifecycle: Counting) -> tuple[Pass, ...]:
    return (
        Pass("every round", every_round, lambda limits: EVERY_ROUND_S),
        Pass("lifecycle", lifecycle, lambda limits: limits.worker.lifecycle_interval_s),
    )


def test_each_pass_of_the_worker_has_its_own_name_and_an_interval_from_the_limits() -> None:
    limits = LimitSettings().by_concern()
    assert len({work.name for work in PASSES}) == len(PASSES)
    intervals = {work.name: work.interval_s(limits) for work in PASSES}
    assert intervals["jobs"] == intervals["payment checks"] == EVERY_ROUND_S
    assert intervals["card lifecycles"] == limits.worker.lifecycle_interval_s


async def test_work_once_runs_every_pass_once(monkeypatch: pytest.MonkeyPatch) -> None:
    every_round, lifecycle = Counting(), Counting()
    monkeypatch.setattr(worker, "PASSES", table(every_round, lifecycle))
    assert await worker.work_once(fake_services()) == 2
    assert (every_round.runs, lifecycle.runs) == (1, 1)


async def test_a_pass_runs_again_only_once_its_interval_has_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_round, lifecycle = Counting(), Counting()
    monkeypatch.setattr(worker, "PASSES", table(every_round, lifecycle))
    services = fake_services()
    last_run: dict[str, float] = {}
    for now in (1000.0, 1010.0, 1000.0 + LIFECYCLE_INTERVAL_S - 1, 1000.0 + LIFECYCLE_INTERVAL_S):
        await run_passes(services, last_run, now=now)
    assert (every_round.runs, lifecycle.runs) == (4, 2)


async def test_the_running_worker_takes_its_passes_from_the_same_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = asyncio.Event()
    every_round, lifecycle = Counting(stop, ROUNDS), Counting()
    monkeypatch.setattr(worker, "PASSES", table(every_round, lifecycle))
    try:
        await asyncio.wait_for(worker.run_forever(fake_services(), stop=stop), timeout=5)
    finally:  # run_forever stops on SIGINT and SIGTERM: give them back to pytest
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal_number)
    assert (every_round.runs, lifecycle.runs) == (ROUNDS, 1)  # within one lifecycle interval
