"""Group commit: the work of many concurrent callers done in one transaction.

A caller hands its item to a ``Batcher`` and waits. A flusher takes what has queued up (at most
``size_max`` items, never two with the same key) and runs the batch function once for all of
them, so a hundred renewals cost one transaction and a handful of set-based statements instead of
a hundred transactions. The batch function returns one result per item: a value, or the expected
failure (a ``TopupError``) of that item alone. If the whole batch fails unexpectedly, its items
are run again one at a time, so one bad item cannot fail the others and its own caller still gets
the real error. Every batch function is safe to run twice: a batch that committed but whose
answer was lost is recognised on the second run.

At most ``in_flight_max`` batches run at once, so the batch being built overlaps the one waiting
on the database. Nothing runs in the background while there is no work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        key: Callable[[Item], Hashable],
        size_max: int,
        in_flight_max: int,
        fail_together: Callable[[BaseException], bool] = lambda error: False,
    ) -> None:
        self._run = run
        # Failures that are not any one item's fault (the database is down, the pool timed out):
        # the whole batch fails at once instead of being retried item by item.
        self._fail_together = fail_together
        self._key = key
        self._size_max = size_max
        self._in_flight_max = in_flight_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. one per test): start afresh
            self._loop = loop
            self._pending = []
            self._flushers = set()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if sum(not task.done() for task in self._flushers) < self._in_flight_max:
            task = loop.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the callers of this turn of the loop join the batch
            while self._pending:
                batch = self._take()
                if batch:
                    await self._settle(batch)
        except BaseException as error:
            # Cancelled (the loop is shutting down): unless another flusher carries on, nobody
            # would ever answer the callers still queued.
            current = asyncio.current_task()
            if not any(not task.done() and task is not current for task in self._flushers):
                pending, self._pending = self._pending, []
                for _, future in pending:
                    _resolve(future, error)
            raise

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        left: list[tuple[Item, asyncio.Future[Result]]] = []
        keys: set[Hashable] = set()
        for entry in self._pending:
            if entry[1].done():  # its caller gave up before the batch began: do nothing for it
                continue
            key = self._key(entry[0])
            if len(batch) >= self._size_max or key in keys:
                left.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._pending = left
        return batch

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as error:
            if len(batch) == 1 or self._fail_together(error):
                for _, future in batch:
                    _resolve(future, error)
                return
            for index, entry in enumerate(batch):  # find the culprit; the others go through
                try:
                    await self._settle([entry])
                except BaseException as stop:
                    for _, future in batch[index + 1 :]:
                        _resolve(future, stop)
                    raise
            return
        except BaseException as error:  # cancelled (the loop is shutting down): tell the callers
            for _, future in batch:
                _resolve(future, error)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            _resolve(future, result)


def _resolve(future: asyncio.Future[Result], outcome: Result | BaseException) -> None:
    if future.done():  # the caller gave up waiting; its item was done all the same
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
