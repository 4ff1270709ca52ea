"""Signed-in sessions of the web site: a sign-in token (``accounts.log_in``) that a cookie names,
kept on the server only as its keyed hash.

- A session is made at each sign-in; the one the browser named before (if any) is revoked, so a
  session never outlives the sign-in that replaced it (rotation).
- It ends ``web_session_lifetime_s`` after the sign-in (absolute timeout: the token expires) or
  ``web_session_idle_s`` after its last request (idle timeout: it is then revoked). When it was
  last seen is written at most once every SESSION_SEEN_INTERVAL_S, in one guarded UPDATE, so a
  busy page costs no write per request.
- Signing out revokes it on the server: the cookie alone signs nobody in any more.

An ended session is ``token_invalid``, as an unknown token is; the pages send the visitor to
sign in again.
"""

from __future__ import annotations

import datetime as dt

from topup.domain.callers import Caller, CallerKind
from topup.domain.errors import TopupError
from topup.services import accounts
from topup.services.accounts import ACCESS_TOKEN_LENGTH_MAX, IssuedToken
from topup.services.context import Services

SESSION_SEEN_INTERVAL_S = 60  # when a session was last used is written at most this often


def _session_ended() -> TopupError:
    return TopupError("this sign-in token is not valid", code="token_invalid", params={})


async def sign_in(
    services: Services,
    *,
    email: str,
    password: str,
    client_address: str,
    replacing: str | None,
) -> IssuedToken:
    """A new session for the account (refusals as ``accounts.log_in``). ``replacing``: the
    token the browser named before signing in; that session ends once the new one exists."""
    issued = await accounts.log_in(
        services,
        email=email,
        password=password,
        client_address=client_address,
        lifetime_s=services.limits.accounts.web_session_lifetime_s,
    )
    if replacing:
        await sign_out(services, replacing)
    return issued


async def authenticate(services: Services, token: str) -> Caller:
    """The account the session belongs to, if it is not over (revoked, expired, or idle for
    ``web_session_idle_s``); ``token_invalid`` otherwise. An idle session is revoked here."""
    if not token or len(token) > ACCESS_TOKEN_LENGTH_MAX:
        raise _session_ended()
    limits = services.limits.accounts
    now = services.clock.now()
    token_hash = services.tokens.fingerprint(token)
    async with services.unit_of_work() as uow:
        state = await uow.accounts.session_of_token(token_hash, now=now)
    if state is None:
        raise _session_ended()
    last_seen = state.last_seen_at or state.created_at
    idle_for = now - last_seen
    lifetime_over = now >= state.created_at + dt.timedelta(seconds=limits.web_session_lifetime_s)
    if lifetime_over or idle_for >= dt.timedelta(seconds=limits.web_session_idle_s):
        async with services.unit_of_work() as uow:
            await uow.accounts.revoke_token(token_hash, now=now)
            await uow.commit()
        raise _session_ended()
    interval = dt.timedelta(seconds=SESSION_SEEN_INTERVAL_S)
    if idle_for >= interval:
        async with services.unit_of_work() as uow:
            await uow.accounts.touch_token(token_hash, at=now, unseen_since=now - interval)
            await uow.commit()
    return Caller(kind=CallerKind.ACCOUNT, account_id=state.account_id)


async def sign_out(services: Services, token: str) -> None:
    """End the session on the server; nothing to do if it had ended already."""
    if not token or len(token) > ACCESS_TOKEN_LENGTH_MAX:
        return
    async with services.unit_of_work() as uow:
        await uow.accounts.revoke_token(
            services.tokens.fingerprint(token), now=services.clock.now()
        )
        await uow.commit()
