"""The channel a page's renewal is sold through: ``app`` when the visitor opened the installed app
(its manifest's start URL, ``/app``, remembers it in a cookie), else ``web``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

APP_COOKIE = "topup_app"
APP_COOKIE_MAX_AGE_S = 365 * 86_400
WEB = "web"
APP = "app"


def sales_channel(request: Request) -> str:
    return APP if request.cookies.get(APP_COOKIE) == "1" else WEB


def remember_app(response: Response, *, secure: bool) -> None:
    """On the app's start page: what this browser renews from now on is sold through ``app``."""
    response.set_cookie(
        APP_COOKIE,
        "1",
        max_age=APP_COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
