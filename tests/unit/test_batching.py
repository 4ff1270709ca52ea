"""Group commit: what callers of a Batcher can rely on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from topup.domain.errors import ConflictError
from topup.services.batching import Batcher

Pair = tuple[str, int]  # (key, value)


class Recorder:
    """A batch function that doubles values, remembers each batch, and can be told to fail."""

    def __init__(self, *, pause_s: float = 0.0) -> None:
        self.batches: list[list[Pair]] = []
        self.pause_s = pause_s
        self.running = 0
        self.most_running = 0
        self.refuse: set[int] = set()  # values answered with an expected error of their own
        self.break_on: set[int] = set()  # values that make the whole batch raise

    async def run(self, items: list[Pair]) -> Sequence[int | Exception]:
        self.batches.append(list(items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.pause_s)
            if any(value in self.break_on for _, value in items):
                raise RuntimeError("the batch broke")
            return [
                ConflictError(f"value {value} refused", code="refused")
                if value in self.refuse
                else value * 2
                for _, value in items
            ]
        finally:
            self.running -= 1


def batcher(
    recorder: Recorder, *, size_max: int = 100, in_flight_max: int = 1
) -> Batcher[Pair, int]:
    return Batcher(
        recorder.run, key=lambda pair: pair[0], size_max=size_max, in_flight_max=in_flight_max
    )


async def test_concurrent_callers_share_one_batch_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    shared = batcher(recorder)
    results = await asyncio.gather(*(shared.submit((f"k{n}", n)) for n in range(10)))
    assert results == [n * 2 for n in range(10)]
    assert len(recorder.batches) == 1
    assert sorted(value for _, value in recorder.batches[0]) == list(range(10))


async def test_two_items_with_one_key_never_share_a_batch_and_run_in_arrival_order() -> None:
    recorder = Recorder()
    shared = batcher(recorder)
    results = await asyncio.gather(
        shared.submit(("same", 1)), shared.submit(("same", 2)), shared.submit(("other", 3))
    )
    assert results == [2, 4, 6]
    assert recorder.batches == [[("same", 1), ("other", 3)], [("same", 2)]]


async def test_a_batch_never_holds_more_than_size_max_items() -> None:
    recorder = Recorder()
    shared = batcher(recorder, size_max=4)
    await asyncio.gather(*(shared.submit((f"k{n}", n)) for n in range(10)))
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]


async def test_an_expected_failure_reaches_only_its_own_caller() -> None:
    recorder = Recorder()
    recorder.refuse = {3}
    shared = batcher(recorder)
    results = await asyncio.gather(
        *(shared.submit((f"k{n}", n)) for n in range(5)), return_exceptions=True
    )
    assert [r for n, r in enumerate(results) if n != 3] == [0, 2, 4, 8]
    assert isinstance(results[3], ConflictError) and results[3].code == "refused"
    assert len(recorder.batches) == 1


async def test_a_batch_that_breaks_is_run_again_item_by_item_so_only_the_culprit_fails() -> None:
    recorder = Recorder()
    recorder.break_on = {2}
    shared = batcher(recorder)
    results = await asyncio.gather(
        *(shared.submit((f"k{n}", n)) for n in range(4)), return_exceptions=True
    )
    assert results[0] == 0 and results[1] == 2 and results[3] == 6
    assert isinstance(results[2], RuntimeError)
    assert [len(batch) for batch in recorder.batches] == [4, 1, 1, 1, 1]


async def test_at_most_in_flight_max_batches_run_at_once() -> None:
    recorder = Recorder(pause_s=0.01)
    shared = batcher(recorder, size_max=2, in_flight_max=3)
    results = await asyncio.gather(*(shared.submit((f"k{n}", n)) for n in range(20)))
    assert results == [n * 2 for n in range(20)]
    assert recorder.most_running == 3
    assert all(len(batch) <= 2 for batch in recorder.batches)


async def test_a_caller_that_stops_waiting_does_not_disturb_the_others() -> None:
    recorder = Recorder(pause_s=0.05)
    shared = batcher(recorder)
    impatient = asyncio.create_task(shared.submit(("impatient", 1)))
    patient = asyncio.create_task(shared.submit(("patient", 2)))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == 4
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert recorder.batches == [[("impatient", 1), ("patient", 2)]]  # its item was done anyway


def test_a_batcher_used_from_a_second_event_loop_starts_afresh() -> None:
    recorder = Recorder()
    shared = batcher(recorder)
    assert asyncio.run(shared.submit(("a", 1))) == 2
    assert asyncio.run(shared.submit(("a", 5))) == 10
    assert recorder.batches == [[("a", 1)], [("a", 5)]]


async def test_a_caller_that_gives_up_before_its_batch_begins_has_nothing_done() -> None:
    recorder = Recorder(pause_s=0.05)
    shared = batcher(recorder, size_max=1)
    first = asyncio.create_task(shared.submit(("first", 1)))
    queued = asyncio.create_task(shared.submit(("queued", 2)))
    await asyncio.sleep(0.01)  # the first batch is running; the second item waits its turn
    queued.cancel()
    assert await first == 2
    await asyncio.sleep(0.06)
    assert recorder.batches == [[("first", 1)]]


async def test_a_failure_of_the_database_itself_fails_the_whole_batch_at_once() -> None:
    recorder = Recorder()
    recorder.break_on = {2}
    shared = Batcher(
        recorder.run,
        key=lambda pair: pair[0],
        size_max=100,
        in_flight_max=1,
        fail_together=lambda error: isinstance(error, RuntimeError),
    )
    results = await asyncio.gather(
        *(shared.submit((f"k{n}", n)) for n in range(4)), return_exceptions=True
    )
    assert all(isinstance(result, RuntimeError) for result in results)
    assert len(recorder.batches) == 1  # not retried one by one
