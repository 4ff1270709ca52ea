"""What ``topup serve`` runs: the API at ``/api/v1`` and the web pages at ``/``, one application.

The site sends each request straight to its part by the path's prefix: ``/api/`` (and the
sandbox PSP's tokeniser) to the API, ``/static/`` to the static files held in memory, anything
else to the pages. The API's outer guards (security headers, the guard of bugs, the checks of
requests) wrap the pages as well; the static files get the security headers only.

Each server process builds its own from the settings (``site_from_environment``, for uvicorn's
``--factory``)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from topup.bootstrap import Application, build
from topup.entrypoints.api.app import create_app, tune_garbage_collector
from topup.entrypoints.http.errors import UnexpectedErrors
from topup.entrypoints.http.request_checks import RequestChecks
from topup.entrypoints.http.security_headers import SecurityHeaders
from topup.entrypoints.web.app import create_web_app
from topup.entrypoints.web.portal import fleet_bulk
from topup.entrypoints.web.shared.static_files import STATIC_PREFIX
from topup.settings import parse_trusted_proxies

API_PREFIXES = ("/api/", "/sandbox/psp/v1/")


class Site:
    """The ASGI application of ``topup serve``: three parts, chosen by the path."""

    def __init__(self, api: FastAPI, web: FastAPI, pages: ASGIApp, static: ASGIApp) -> None:
        self.api = api
        self.web = web  # the pages' application (``pages`` is it inside the outer guards)
        self.pages = pages
        self.static = static

    @property
    def state(self) -> object:
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.api(scope, receive, send)  # the API's lifespan closes the application
            return
        path: str = scope.get("path", "")
        if path.startswith(STATIC_PREFIX):
            await self.static(scope, receive, send)
        elif path.startswith(API_PREFIXES):
            await self.api(scope, receive, send)
        else:
            await self.pages(scope, receive, send)


def create_site(application: Application, *, close_on_shutdown: bool = False) -> Site:
    api = create_app(application, close_on_shutdown=close_on_shutdown)
    settings = application.settings
    web = create_web_app(
        application,
        secure_cookies=settings.public_url.startswith("https://"),
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
    )
    # The bulk renewal's upload (and its Start, which carries the lines back) may be larger.
    upload = (fleet_bulk.UPLOAD_PATHS, fleet_bulk.body_bytes_max(application.services))
    pages = SecurityHeaders(UnexpectedErrors(RequestChecks(web, larger_bodies=(upload,))))
    static = SecurityHeaders(web.state.static_assets, cacheable_prefixes=(STATIC_PREFIX,))
    return Site(api, web, pages, static)


def site_from_environment() -> Site:
    application = build()
    site = create_site(application, close_on_shutdown=True)
    tune_garbage_collector(application.settings.server_gc_gen0_threshold)
    return site
