"""The HTTP API v1: one door for the app, kiosks, stores and partners (R2-R5).

``create_app`` wires routes to an ``Application``; the site (``entrypoints/site.py``) mounts the
web pages beside it for ``topup serve``."""

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

from topup.adapters import messages
from topup.bootstrap import Application
from topup.entrypoints.api import usage
from topup.entrypoints.api.routes import ROUTERS
from topup.entrypoints.http import errors
from topup.entrypoints.http.errors import UnexpectedErrors
from topup.entrypoints.http.request_checks import RequestChecks
from topup.entrypoints.http.security_headers import SecurityHeaders, page_policy
from topup.services.receipts import mailings
from topup.settings import parse_trusted_proxies

API_PREFIX = "/api/v1"
DOCS_STATIC = "/api/docs/static"
WEBHOOKS_PREFIX = f"{API_PREFIX}/webhooks/"  # signed raw bodies: limited, not inspected
USAGE_RECORDS_PREFIX = f"{API_PREFIX}/usage-records"  # signed raw bodies too (issue 11)


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
    app.state.trusted_proxies = (
        parse_trusted_proxies(application.settings.trusted_proxies) if application else ()
    )
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    # The last added runs first: the headers, the guard of bugs, then the checks of requests.
    larger_bodies = (
        ((usage.USAGE_RECORDS_PATHS, usage.body_bytes_max(application.services)),)
        if application is not None
        else ()
    )
    app.add_middleware(
        RequestChecks,
        raw_body_prefixes=(WEBHOOKS_PREFIX, USAGE_RECORDS_PREFIX),
        larger_bodies=larger_bodies,
    )
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(SecurityHeaders, cacheable_prefixes=(DOCS_STATIC + "/",))
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

    page = get_swagger_ui_html(
        openapi_url=f"{API_PREFIX}/openapi.json",
        title="topup API",
        swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
    )
    html = bytes(page.body).decode()
    policy = page_policy(html)

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def openapi_document() -> dict[str, Any]:
    return create_app(None).openapi()


def tune_garbage_collector(gen0_threshold: int) -> None:
    """What start-up made lives as long as the server: freeze it out of every collection, and
    collect the young generation less often. The cyclic collector's pauses were the tail of the
    latency under load (p99 about 220 ms at 64 clients, about 100 ms after this)."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
