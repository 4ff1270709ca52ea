"""The web application: the channels' pages (the portal at ``/``), their static files, the
shared layer's middleware (CSRF secret, compression, page errors) and the language switch.

``create_web_app`` is mounted at ``/`` by the site (``entrypoints/site.py``) after the API, so
``/api/v1`` keeps its JSON answers and everything else is a page."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from topup.entrypoints.web.portal import routes as portal
from topup.entrypoints.web.sandbox import routes as sandbox
from topup.entrypoints.web.shared import errors
from topup.entrypoints.web.shared.channels import Channel
from topup.entrypoints.web.shared.csrf import CsrfCookie, check_csrf
from topup.entrypoints.web.shared.language import (
    LANGUAGE_COOKIE,
    LANGUAGE_COOKIE_MAX_AGE_S,
    local_path,
)
from topup.entrypoints.web.shared.rendering import SHARED_STATIC, Renderer
from topup.entrypoints.web.shared.sessions import SessionCookies
from topup.entrypoints.web.shared.static_files import STATIC_PREFIX, StaticAssets
from topup.i18n import resolve

GZIP_MINIMUM_BYTES = 500


def channels() -> Sequence[Channel]:
    return (portal.CHANNEL, sandbox.CHANNEL)


def create_web_app(
    application: object, *, secure_cookies: bool, trusted_proxies: object
) -> FastAPI:
    """``application``: the bootstrap's Application (the channels reach it from the request)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.application = application
    app.state.trusted_proxies = trusted_proxies
    app.state.session_cookies = SessionCookies(secure=secure_cookies)
    found = channels()
    folders = {"/static/shared": SHARED_STATIC, **{f"/static/{c.name}": c.static for c in found}}
    static = StaticAssets(folders)
    app.state.static_assets = static  # the site serves /static/ with it, ahead of the pages
    app.state.renderer = Renderer([channel.templates for channel in found], static)
    errors.install(app)
    _language_switch(app, secure_cookies)
    app.mount(STATIC_PREFIX.rstrip("/"), static, name="static")  # when mounted alone (tests)
    for channel in found:
        app.include_router(channel.router, dependencies=[Depends(check_csrf)])
    # The last added runs first: compression, the guard of bugs, then the visitor's CSRF secret.
    app.add_middleware(CsrfCookie, secure=secure_cookies)
    app.add_middleware(errors.UnexpectedPageErrors)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES)
    app.add_middleware(HeadAsGet)
    return app


class HeadAsGet:
    """A HEAD of a page is answered as its GET (the server sends the headers only), as link
    checkers and monitors expect; the routes declare GET alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


def _language_switch(app: FastAPI, secure_cookies: bool) -> None:
    @app.get("/language/{tag}", include_in_schema=False)
    async def switch_language(request: Request, tag: str, next: str = "/") -> Response:
        """Remember the language chosen and go back to the page it was chosen on."""
        back = local_path(next)
        response = RedirectResponse(back, status_code=303)
        chosen = resolve(tag[:35])
        if chosen is not None:
            response.set_cookie(
                LANGUAGE_COOKIE,
                quote(chosen),
                max_age=LANGUAGE_COOKIE_MAX_AGE_S,
                path="/",
                httponly=True,
                samesite="lax",
                secure=secure_cookies,
            )
        return response
