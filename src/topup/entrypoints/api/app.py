"""The HTTP API v1: one door for the app, kiosks, stores and partners (R2-R5).

``create_app`` wires routes to an ``Application``; ``app_from_environment`` is what
``topup serve`` hands to uvicorn (each server process builds its own from the settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.bootstrap import Application, build
from topup.domain.errors import TopupError
from topup.entrypoints.api import problems
from topup.entrypoints.api.routes import ROUTERS

API_PREFIX = "/api/v1"
BODY_BYTES_MAX = 64 * 1024  # every request body this API takes is far smaller


class BodyLimit:
    """Refuses a body above ``limit`` bytes (413 ``body_too_large``), whether it says its
    length or streams; nothing of it reaches a route."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        language = problems.language_of(headers.get(b"accept-language", b"").decode("latin-1"))
        status, body = problems.problem_body(
            TopupError(
                f"the request body is larger than {self.limit} bytes",
                code="body_too_large",
                params={"bytes_max": str(self.limit)},
            ),
            language,
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", problems.PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(application: Application, *, close_on_shutdown: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            await application.close()

    app = FastAPI(
        title="topup API",
        version="1",
        summary="Renew mobile-data cards: plans, payments, activation, balances, receipts.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.application = application
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=BODY_BYTES_MAX)
    return app


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory``: the settings come from ``TOPUP_*`` variables."""
    return create_app(build(), close_on_shutdown=True)
