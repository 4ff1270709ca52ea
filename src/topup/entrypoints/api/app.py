"""The HTTP API v1: one door for the app, kiosks, stores and partners (R2-R5).

``create_app`` wires routes to an ``Application``; ``app_from_environment`` is what
``topup serve`` hands to uvicorn (each server process builds its own from the settings)."""

from __future__ import annotations

import gc
import importlib.resources
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.adapters import messages
from topup.bootstrap import Application, build
from topup.domain.errors import TopupError
from topup.entrypoints.api.routes import ROUTERS
from topup.entrypoints.http import errors, problems
from topup.entrypoints.http.language import language_of_header
from topup.services.receipts import mailings

API_PREFIX = "/api/v1"
DOCS_STATIC = "/api/docs/static"
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
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLargeError:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        language = language_of_header(headers.get(b"accept-language", b"").decode("latin-1"))
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


class _BodyTooLargeError(Exception):
    pass


DESCRIPTION = """One door for the mobile app, kiosks, stores and partners.

* **Errors** are RFC 9457 `application/problem+json` with a stable `code` (listed below and at
  `/api/v1/problems/{code}`), texts in the language of `Accept-Language` (en, zh-Hans, ms, id).
* **Credentials**: none (the web and the app), `Authorization: Bearer <token>` of an account
  (`POST /api/v1/auth/token`), or `X-API-Key` of a store, kiosk, partner or staff. The channel of a
  renewal follows from the credential.
* **Idempotency**: `POST /api/v1/renewals` requires an `Idempotency-Key`; the first response is
  replayed byte for byte for 24 hours (`Idempotent-Replayed: true`).
* **Card tokens** come from the payment gateway's own tokenisation endpoint (in the demo, the
  sandbox's `POST /sandbox/psp/v1/tokens`); card numbers never pass through this API.
"""


def _openapi_of(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus every error code (as the ``code`` enum of Problem and a table in
    ``x-error-codes``) and the two ways to authenticate."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    entries = messages.catalogue()
    components = document.setdefault("components", {})
    problem = components.get("schemas", {}).get("Problem")
    if problem is not None:
        problem["properties"]["code"]["enum"] = [entry.code for entry in entries]
    document["x-error-codes"] = {
        entry.code: {
            "meaning": entry.meaning,
            "retryable": entry.retryable,
            "suggestion": entry.suggestion,
        }
        for entry in entries
    }
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An account's token."},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    document["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    app.openapi_schema = document
    return document


def create_app(application: Application | None, *, close_on_shutdown: bool = False) -> FastAPI:
    """``application`` None: routes only, to write the OpenAPI document."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown and application is not None:
            await mailings(application.services).drain()  # e-mails under way still go out
            await application.close()

    app = FastAPI(
        title="topup API",
        version="1",
        summary="Renew mobile-data cards: plans, payments, activation, balances, receipts.",
        description=DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served below from local files: no CDN needed
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.application = application
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=BODY_BYTES_MAX)
    _serve_docs(app)

    def openapi() -> dict[str, Any]:
        return _openapi_of(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _serve_docs(app: FastAPI) -> None:
    """The interactive documentation at /api/docs, with Swagger UI's files from the installed
    ``swagger-ui-py`` package, so that it works where no CDN can be reached."""
    static = Path(str(importlib.resources.files("swagger_ui").joinpath("static")))
    app.mount(DOCS_STATIC, StaticFiles(directory=static), name="docs-static")

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title="topup API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )


def openapi_document() -> dict[str, Any]:
    return create_app(None).openapi()


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory``: the settings come from ``TOPUP_*`` variables."""
    application = build()
    app = create_app(application, close_on_shutdown=True)
    tune_garbage_collector(application.settings.server_gc_gen0_threshold)
    return app


def tune_garbage_collector(gen0_threshold: int) -> None:
    """What start-up made lives as long as the server: freeze it out of every collection, and
    collect the young generation less often. The cyclic collector's pauses were the tail of the
    latency under load (p99 about 220 ms at 64 clients, about 100 ms after this)."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
