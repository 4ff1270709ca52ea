"""Who is signed in on this browser: a server-side session (an account's token, stored only as
its keyed hash; ``services.web_sessions``) named by an HttpOnly, SameSite=Lax cookie (Secure when
the site is served over HTTPS).

- A new session is made at every sign-in and the one the browser named before is revoked
  (rotation): a session named before signing in never becomes a signed-in one.
- It ends ``web_session_lifetime_s`` after signing in (absolute timeout) or
  ``web_session_idle_s`` after its last request (idle timeout); then the visitor is sent to sign
  in again and the cookie is dropped.
- Signing out revokes the session on the server, not only the cookie.

A channel's router that needs an account is mounted with ``require_account``: its routes are
protected by where they are mounted; a visitor who is not signed in is sent to sign in and then
back to the page asked for (a local path only)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from topup.domain.callers import Caller
from topup.domain.errors import TopupError
from topup.entrypoints.web.shared.csrf import renew_csrf_secret
from topup.services import web_sessions
from topup.services.context import Services

SESSION_COOKIE = "topup_session"
SIGN_IN_PATH = "/accounts/sign-in"


class SignInRequired(Exception):  # noqa: N818 -- a redirect, not an error shown
    """Raised by ``require_account``: the answer is a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True, slots=True)
class SessionCookies:
    secure: bool  # the site is served over HTTPS: cookies only travel encrypted


def _services(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


async def signed_in(request: Request) -> Caller | None:
    """The account of this browser's session, or None (no session, or expired or revoked)."""
    cached: Caller | bool | None = getattr(request.state, "caller", False)
    if cached is not False:
        return cached  # type: ignore[return-value]
    token = request.cookies.get(SESSION_COOKIE)
    caller: Caller | None = None
    if token:
        try:
            caller = await web_sessions.authenticate(_services(request), token)
        except TopupError:
            caller = None
    request.state.caller = caller
    return caller


async def require_account(request: Request) -> Caller:
    """The dependency of the routers for signed-in visitors."""
    caller = await signed_in(request)
    if caller is None:
        query = request.url.query
        raise SignInRequired(request.url.path + (f"?{query}" if query else ""))
    return caller


def start_session(request: Request, response: Response, token: str, *, max_age_s: int) -> None:
    """Name the new session on ``response`` (after a sign-in: ``web_sessions.sign_in`` made it
    and ended the one named before), with a new CSRF secret."""
    cookies: SessionCookies = request.app.state.session_cookies
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookies.secure,
    )
    renew_csrf_secret(request)


async def end_session(request: Request, response: Response) -> None:
    """Sign out: the session is revoked on the server and the cookie dropped, with a new CSRF
    secret."""
    token = session_token(request)
    if token:
        await web_sessions.sign_out(_services(request), token)
    request.state.caller = None
    forget_session(request, response)


def forget_session(request: Request, response: Response) -> None:
    """Drop the cookie (of a session that ended) on ``response``."""
    cookies: SessionCookies = request.app.state.session_cookies
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookies.secure
    )
    renew_csrf_secret(request)


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)
