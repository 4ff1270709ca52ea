"""The live progress of a fleet page (a bulk run, a policy request) as Server-Sent Events:
``change`` (its version) whenever what the page shows moved, ``end`` once it is finished (or
gone), a heartbeat now and then; within the same bounds as the renewal status page's stream
(``status_events``: a stream lasts at most ``EVENTS_STREAM_S``, the browser reconnects)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request

from topup.domain.errors import TopupError
from topup.entrypoints.web.portal.status_events import (
    EVENTS_HEARTBEAT_S,
    EVENTS_POLL_S,
    EVENTS_RETRY_MS,
    EVENTS_STREAM_S,
)

# What a page looks at: its version text and whether it is finished.
Look = Callable[[], Awaitable[tuple[str, bool]]]


def version_hash(version: str) -> str:
    """A page's version as its events and its ``since`` give it: short, opaque."""
    return hashlib.sha256(version.encode()).hexdigest()[:12]


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class ProgressStream:
    """``look`` tells where the thing stands; ``since`` is the version the page was drawn at."""

    def __init__(self, request: Request, look: Look, *, since: str) -> None:
        self.request = request
        self.look = look
        self.since = since

    async def events(self, release: Callable[[], None]) -> AsyncIterator[str]:
        try:
            yield f"retry: {EVENTS_RETRY_MS}\n\n"
            started = last_sent = time.monotonic()
            last = self.since
            while time.monotonic() - started < EVENTS_STREAM_S:
                if await self.request.is_disconnected():
                    return
                try:
                    version, finished = await self.look()
                except TopupError:
                    yield _event("end", "")
                    return
                version = version_hash(version)
                if version != last:
                    last, last_sent = version, time.monotonic()
                    yield _event("change", version)
                if finished:
                    yield _event("end", "")
                    return
                if time.monotonic() - last_sent >= EVENTS_HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield ": heartbeat\n\n"
                await asyncio.sleep(EVENTS_POLL_S)
        finally:
            release()
