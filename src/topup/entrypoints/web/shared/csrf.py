"""Cross-site request forgery: every state-changing request of a page carries a token bound to
the visitor, and comes from this site.

- The visitor's secret is a random value in an HttpOnly, SameSite=Lax cookie (``topup_csrf``),
  set on the first page and renewed at sign-in and sign-out.
- The token is a keyed hash of that secret (the platform's token key), in each form's hidden
  ``csrf_token`` field or, for scripts, the ``X-CSRF-Token`` header.
- Before any route runs, a POST, PUT, PATCH or DELETE must come from this site
  (``Sec-Fetch-Site: same-origin`` or ``none``, else an ``Origin`` of this host) and carry the
  token; otherwise it is refused with ``csrf_failed`` (403) and reaches no service.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.domain.errors import TopupError
from topup.services.context import Services

CSRF_COOKIE = "topup_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_SECRET_BYTES = 24
CSRF_SECRET_LENGTH_MAX = 64
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


class CsrfFailed(TopupError):  # noqa: N818 -- an expected refusal, named as the others
    def __init__(self, reason: str) -> None:
        super().__init__(f"the form could not be checked ({reason})", code="csrf_failed")


def csrf_secret(request: Request) -> str:
    """The visitor's secret (the cookie's, or the one this answer sets)."""
    secret: str = request.state.csrf_secret
    return secret


def csrf_token(request: Request) -> str:
    services: Services = request.app.state.application.services
    return services.tokens.fingerprint("csrf:" + csrf_secret(request))


def renew_csrf_secret(request: Request) -> None:
    """A new secret for the rest of this visit (at sign-in and sign-out): tokens of forms shown
    before no longer count."""
    request.state.csrf_secret = secrets.token_urlsafe(CSRF_SECRET_BYTES)
    request.state.csrf_secret_new = True


def _from_this_site(request: Request) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in _SAME_SITE_FETCHES
    origin = request.headers.get("origin")
    if origin is None:  # an old browser that sends neither: the token alone decides
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def check_csrf(request: Request) -> None:
    """The dependency of every channel's router: nothing for a safe method, else the checks."""
    if request.method in SAFE_METHODS:
        return
    if not _from_this_site(request):
        raise CsrfFailed("cross-site request")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not presented or not hmac.compare_digest(presented, csrf_token(request)):
        raise CsrfFailed("missing or stale token")


class CsrfCookie:
    """Gives every visitor a secret: read from the cookie, or made and set on the answer."""

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        present = request.cookies.get(CSRF_COOKIE, "")
        state = scope.setdefault("state", {})
        if present and len(present) <= CSRF_SECRET_LENGTH_MAX and present.isascii():
            state["csrf_secret"] = present
            state["csrf_secret_new"] = False
        else:
            state["csrf_secret"] = secrets.token_urlsafe(CSRF_SECRET_BYTES)
            state["csrf_secret_new"] = True

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get("csrf_secret_new"):
                headers = MutableHeaders(scope=message)
                secure = "; Secure" if self.secure else ""
                headers.append(
                    "set-cookie",
                    f"{CSRF_COOKIE}={state['csrf_secret']}; Path=/; HttpOnly; SameSite=Lax{secure}",
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)
