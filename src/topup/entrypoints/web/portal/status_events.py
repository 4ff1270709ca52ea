"""Live status: ``GET /renewals/{id}/events`` streams Server-Sent Events while a renewal moves.

Bounded: a stream lasts at most ``EVENTS_STREAM_S`` (the browser's EventSource then reconnects
after ``EVENTS_RETRY_MS``), at most ``EVENTS_STREAMS_MAX`` streams run at once in a process and
``EVENTS_STREAMS_PER_CLIENT_MAX`` per client address (more are refused with 503 and Retry-After:
the page's script then reloads the block now and then instead), the renewal is read every
``EVENTS_POLL_S`` and a comment is sent every ``EVENTS_HEARTBEAT_S`` so that proxies keep the
connection. The events say only that something changed (``change``, with the new version) or
that nothing more will (``end``, with where to go): the page's script then fetches its live block
(the ``X-Topup-Partial`` header), so a partial and its page come from one view. GZip leaves
``text/event-stream`` alone (Starlette's GZipMiddleware excludes it), so nothing buffers it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from topup.domain.errors import TopupError
from topup.entrypoints.http.client import client_address
from topup.services.renewal_status import RenewalStatusView, Waiting

EVENTS_POLL_S = 1.0
EVENTS_HEARTBEAT_S = 15.0
EVENTS_STREAM_S = 300.0
EVENTS_RETRY_MS = 3000
EVENTS_STREAMS_MAX = 200
EVENTS_STREAMS_PER_CLIENT_MAX = 4
EVENTS_BUSY_RETRY_AFTER_S = 30
VERSION_LENGTH = 12


def version_of(status: RenewalStatusView) -> str:
    """A short fingerprint of what the page shows (the script's ``since``)."""
    return hashlib.sha256(status.version().encode()).hexdigest()[:VERSION_LENGTH]


def wallet_done(status: RenewalStatusView) -> bool:
    return status.waiting is not Waiting.WALLET


class StreamSlots:
    """How many streams run, in all and per client address; a slot is taken or refused."""

    def __init__(self, total_max: int, per_client_max: int) -> None:
        self.total_max = total_max
        self.per_client_max = per_client_max
        self.by_client: Counter[str] = Counter()

    @property
    def running(self) -> int:
        return sum(self.by_client.values())

    def take(self, client: str) -> bool:
        if self.running >= self.total_max or self.by_client[client] >= self.per_client_max:
            return False
        self.by_client[client] += 1
        return True

    def give_back(self, client: str) -> None:
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


def stream_slots(request: Request) -> StreamSlots:
    """This process's slots (kept on the web application's state, made on first use)."""
    found = getattr(request.app.state, "status_stream_slots", None)
    if not isinstance(found, StreamSlots):
        found = StreamSlots(EVENTS_STREAMS_MAX, EVENTS_STREAMS_PER_CLIENT_MAX)
        request.app.state.status_stream_slots = found
    return found


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class StatusStream:
    """The events of one page (``status`` or ``wallet``) about one renewal."""

    def __init__(
        self,
        request: Request,
        *,
        renewal_id: str,
        since: str,
        wallet_page: bool,
        read: Callable[[Request, str], Awaitable[RenewalStatusView]],
    ) -> None:
        self.request = request
        self.renewal_id = renewal_id
        self.since = since
        self.wallet_page = wallet_page
        self.read = read

    def _finished(self, status: RenewalStatusView) -> str | None:
        """Where the page should go once nothing more will change here, or None."""
        if self.wallet_page:
            return f"/renewals/{status.id}" if wallet_done(status) else None
        return "" if status.is_final else None

    async def events(self, release: Callable[[], None]) -> AsyncIterator[str]:
        try:
            yield f"retry: {EVENTS_RETRY_MS}\n\n"
            started = last_sent = time.monotonic()
            last = self.since
            while time.monotonic() - started < EVENTS_STREAM_S:
                if await self.request.is_disconnected():
                    return
                try:
                    status = await self.read(self.request, self.renewal_id)
                except TopupError:
                    yield _event("end", "")
                    return
                version = version_of(status)
                if version != last:
                    last = version
                    last_sent = time.monotonic()
                    yield _event("change", version)
                finished = self._finished(status)
                if finished is not None:
                    yield _event("end", finished)
                    return
                if time.monotonic() - last_sent >= EVENTS_HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield ": heartbeat\n\n"
                await asyncio.sleep(EVENTS_POLL_S)
        finally:
            release()


class EventStream(Protocol):
    """What ``stream_response`` streams: a page's events (a renewal's, or a bulk run's)."""

    @property
    def request(self) -> Request: ...

    def events(self, release: Callable[[], None]) -> AsyncIterator[str]: ...


def stream_response(stream: EventStream) -> Response:
    """The stream, or 503 with Retry-After when too many run (here or from this client)."""
    slots = stream_slots(stream.request)
    client = client_address(stream.request)
    if not slots.take(client):
        return Response(
            "too many live pages are open; the page reloads by itself instead\n",
            status_code=503,
            media_type="text/plain",
            headers={"retry-after": str(EVENTS_BUSY_RETRY_AFTER_S), "cache-control": "no-store"},
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.give_back(client)

    return _SlotStream(
        release,
        stream.events(release),
        media_type="text/event-stream",
        headers={
            "cache-control": "no-store",
            "x-accel-buffering": "no",  # a proxy in front (nginx) must not buffer it either
        },
    )


class _SlotStream(StreamingResponse):
    """Gives its slot back when the answer ends, even if the stream never started."""

    def __init__(self, release: Callable[[], None], *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
