"""What ``topup serve`` runs: the API at ``/api/v1`` and the web pages at ``/``, one application.

Each server process builds its own from the settings (``site_from_environment``, for uvicorn's
``--factory``)."""

from __future__ import annotations

from fastapi import FastAPI

from topup.bootstrap import Application, build
from topup.entrypoints.api.app import create_app, tune_garbage_collector
from topup.entrypoints.web.app import STATIC_PREFIX, create_web_app
from topup.settings import parse_trusted_proxies


def create_site(application: Application, *, close_on_shutdown: bool = False) -> FastAPI:
    site = create_app(
        application, close_on_shutdown=close_on_shutdown, cacheable_prefixes=(STATIC_PREFIX,)
    )
    settings = application.settings
    site.mount(
        "/",
        create_web_app(
            application,
            secure_cookies=settings.public_url.startswith("https://"),
            trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        ),
        name="web",
    )
    return site


def site_from_environment() -> FastAPI:
    application = build()
    site = create_site(application, close_on_shutdown=True)
    tune_garbage_collector(application.settings.server_gc_gen0_threshold)
    return site
