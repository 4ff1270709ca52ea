"""Accounts of subscribers: sign-in with expiring and revocable bearer tokens, and the cards an
account links by a one-time code sent by SMS to the card's number. Sign-up, e-mail confirmation
and password reset, finished by links e-mailed to the address, are in ``account_emails``.

What is kept: the e-mail (lower-case), an argon2id hash of the password, keyed hashes
(``services.tokens.fingerprint``) of bearer tokens, one-time codes and, for sign-in attempts, of
the e-mail and the client address. Never a password, a token or a code in clear.

Sign-in failures do not say what was wrong: an unknown e-mail and a wrong password give the same
``login_failed``, after the same argon2 work (a dummy hash stands in for a missing account).
Every attempt is counted, in its own committed transaction, before its password is checked, so
a burst of concurrent attempts cannot outrun the count:

- per e-mail and client address: the ``login_failures_max``-th attempt within ``login_lock_s``
  locks that pair for ``login_lock_s``, registered e-mail or not; later attempts are refused
  (``login_locked``, 429 with Retry-After) without their password being checked, even a right
  one. So at most ``login_failures_max`` passwords are checked per pair and window, and failures
  from elsewhere never lock the owner out of their own address;
- per e-mail, from any address: from the third attempt within ``login_lock_s`` each failure is
  answered after ``login_slowdown_s``. This never locks.

The lock never grows: once it ends, counting starts afresh, and a successful sign-in forgets
the attempts before it (a password reset forgets those from every address). An account whose
e-mail is not confirmed yet is refused (``email_not_confirmed``) once its password is checked. ``prune`` (run by the worker) forgets counts that are over and link
codes that have expired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import json
import math
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from topup.domain.accounts import (
    Account,
    LinkCode,
    LoginAttempts,
    normalise_email,
    normalise_password,
)
from topup.domain.callers import Caller, CallerKind
from topup.domain.card_number import CardNumber, CardNumberKind
from topup.domain.cards import Card
from topup.domain.errors import ConflictError, InputError, InvariantError, TopupError
from topup.i18n import translations
from topup.ports import UnitOfWork
from topup.services.context import Services
from topup.services.queries import card_summary
from topup.services.renewals import find_card
from topup.services.views import CardView

ACCESS_TOKEN_BYTES = 32  # secrets.token_urlsafe: 43 characters
ACCESS_TOKEN_LENGTH_MAX = 128  # longer presented tokens are refused without a look-up
DUMMY_PASSWORD_BYTES = 16  # the password behind the hash checked when no account has the e-mail
LOGIN_SLOWDOWN_AFTER_FAILURES = 3  # attempts on one e-mail, from any address, in a window
LINK_CODE_DIGITS = 6
LINK_CODE_LIFETIME_S = 600
LINK_CODE_ATTEMPTS_MAX = 5
SMS_CODES_WINDOW_S = 3600  # the hour of Limits.sms_codes_per_hour_max
MINUTE_S = 60

# argon2id with argon2-cffi's defaults (RFC 9106's second recommended option: t=3, 64 MiB, p=4).
# Hashing runs in the default thread pool, which bounds how many run at once.
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token, shown once: only its keyed hash is kept."""

    access_token: str
    expires_at: dt.datetime
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class LinkCodeSent:
    card_number: str  # masked: the number the code went to
    expires_at: dt.datetime


# --- passwords ---------------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (already checked by ``check_password``)."""
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except InvalidHashError as error:
        raise InvariantError("a stored password hash is not an argon2 hash") from error
    except VerificationError:  # VerifyMismatchError and its kin: not this password
        return False


@functools.cache
def _dummy_hash() -> str:
    """Verified against when no account has the e-mail, so that the answer takes as long."""
    return _HASHER.hash(secrets.token_urlsafe(DUMMY_PASSWORD_BYTES))


async def _password_matches(account: Account | None, password: str) -> bool:
    if account is None:
        dummy = await asyncio.to_thread(_dummy_hash)
        await asyncio.to_thread(_verify, dummy, password)
        return False
    return await asyncio.to_thread(_verify, account.password_hash, password)


# --- sign-in, sign-out -------------------------------------------------------------------------


def _login_failed() -> TopupError:
    return TopupError("wrong e-mail or password", code="login_failed", params={})


def _login_locked(until: dt.datetime, now: dt.datetime) -> TopupError:
    seconds = max(1, math.ceil((until - now).total_seconds()))
    return TopupError(
        f"too many failed sign-ins; locked for {seconds} s",
        code="login_locked",
        retryable=True,
        params={"retry_after_s": str(seconds), "minutes": str(math.ceil(seconds / MINUTE_S))},
    )


def _email_not_confirmed() -> TopupError:
    return TopupError(
        "this account's e-mail address is not confirmed yet: follow the link e-mailed to it",
        code="email_not_confirmed",
        params={},
    )


def _lock_fingerprint(services: Services, email: str, client_address: str) -> str:
    """The key attempts on ``email`` from ``client_address`` are counted, and locked, under."""
    return services.tokens.fingerprint(json.dumps(["login-lock", email, client_address]))


def email_key(services: Services, email: str) -> str:
    """What finds the counts of ``email`` from every address (a password reset forgets them)."""
    return services.tokens.fingerprint(json.dumps(["login-email", email]))


def slowdown_fingerprint(services: Services, email: str) -> str:
    """The key attempts on ``email`` from any address are counted under, for the slow-down."""
    return services.tokens.fingerprint(json.dumps(["login-slowdown", email]))


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A sign-in attempt, counted before its password is checked."""

    from_address: LoginAttempts  # on this e-mail from this client address: they lock
    on_email: LoginAttempts  # on this e-mail from any address: they slow answers down
    account: Account | None  # None: unknown e-mail, or not looked up (the attempt is refused)
    keys: tuple[str, str]  # what a successful sign-in clears, in the order they are counted


async def log_in(
    services: Services,
    *,
    email: str,
    password: str,
    client_address: str,
    lifetime_s: int | None = None,
) -> IssuedToken:
    """A new bearer token for the account; ``login_failed`` (401), ``login_locked`` (429), or
    ``email_not_confirmed`` (403, only once the right password is given).
    ``client_address``: where the attempt comes from; the lock holds for that address only.
    ``lifetime_s``: how long the token lasts (a web session's own); by default
    ``access_token_lifetime_s``."""
    attempt = await _count_attempt(services, normalise_email(email), client_address)
    limits = services.limits
    locked_until = attempt.from_address.locked_until
    if attempt.from_address.attempts > limits.accounts.login_failures_max:
        if locked_until is None:  # the attempt numbered login_failures_max set it
            raise InvariantError("sign-in attempts passed the limit without a lock")
        await _slow_down(services, attempt)
        raise _login_locked(locked_until, services.clock.now())
    typed = normalise_password(password)
    matches = await _password_matches(attempt.account, typed)
    if attempt.account is None or not matches:
        await _slow_down(services, attempt)
        if locked_until is not None:  # this was the last attempt allowed
            raise _login_locked(locked_until, services.clock.now())
        raise _login_failed()
    if not attempt.account.confirmed:
        raise _email_not_confirmed()
    return await _issue_token(services, attempt.account, typed, attempt.keys, lifetime_s)


async def _count_attempt(services: Services, email: str, client_address: str) -> _Attempt:
    """Count the attempt (committed before any password is checked) and, unless it is past the
    limit, find the account."""
    limits = services.limits
    now = services.clock.now()
    window_start = now - dt.timedelta(seconds=limits.accounts.login_lock_s)
    lock_key = _lock_fingerprint(services, email, client_address)
    slowdown_key = slowdown_fingerprint(services, email)
    async with services.unit_of_work() as uow:
        from_address = await uow.accounts.count_login_attempt(
            lock_key,
            now=now,
            window_start=window_start,
            lock_at_attempt=limits.accounts.login_failures_max,
            lock_until=now + dt.timedelta(seconds=limits.accounts.login_lock_s),
            email_key=email_key(services, email),
        )
        on_email = await uow.accounts.count_login_attempt(
            slowdown_key, now=now, window_start=window_start, lock_at_attempt=None, lock_until=None
        )
        account: Account | None = None
        if from_address.attempts <= limits.accounts.login_failures_max:
            account = await uow.accounts.by_email(email)
        await uow.commit()
    return _Attempt(from_address, on_email, account, (lock_key, slowdown_key))


async def _slow_down(services: Services, attempt: _Attempt) -> None:
    """From the third attempt on the e-mail, from any address, a failure waits before it is
    answered (a bounded wait, never a lock)."""
    slowdown_s = services.limits.accounts.login_slowdown_s
    if attempt.on_email.attempts >= LOGIN_SLOWDOWN_AFTER_FAILURES and slowdown_s > 0:
        await asyncio.sleep(slowdown_s)


async def _issue_token(
    services: Services,
    account: Account,
    password: str,
    attempt_keys: tuple[str, str],
    lifetime_s: int | None = None,
) -> IssuedToken:
    new_hash = None
    if _HASHER.check_needs_rehash(account.password_hash):
        new_hash = await hash_password(password)
    token = secrets.token_urlsafe(ACCESS_TOKEN_BYTES)
    now = services.clock.now()
    if lifetime_s is None:
        lifetime_s = services.limits.accounts.access_token_lifetime_s
    expires_at = now + dt.timedelta(seconds=lifetime_s)
    async with services.unit_of_work() as uow:
        await uow.accounts.forget_login_attempts(attempt_keys)
        if not await uow.accounts.hold_password(
            account.id, account.password_hash, new_hash=new_hash
        ):
            raise _login_failed()  # a password reset replaced the password just checked
        await uow.accounts.forget_dead_tokens(account.id, now=now)
        await uow.accounts.add_token(
            token_id=services.new_id(),
            account_id=account.id,
            token_hash=services.tokens.fingerprint(token),
            created_at=now,
            expires_at=expires_at,
        )
        await uow.commit()
    return IssuedToken(access_token=token, expires_at=expires_at, expires_in_s=lifetime_s)


def _token_invalid() -> TopupError:
    return TopupError("this sign-in token is not valid", code="token_invalid", params={})


async def authenticate_token(services: Services, token: str) -> Caller:
    """The account a bearer token belongs to; 401 ``token_invalid`` if unknown, expired or
    revoked."""
    if not token or len(token) > ACCESS_TOKEN_LENGTH_MAX:
        raise _token_invalid()
    async with services.unit_of_work() as uow:
        account_id = await uow.accounts.account_of_token(
            services.tokens.fingerprint(token), now=services.clock.now()
        )
    if account_id is None:
        raise _token_invalid()
    return Caller(kind=CallerKind.ACCOUNT, account_id=account_id)


async def log_out(services: Services, token: str) -> None:
    """Revoke the token: it signs nobody in any more. ``token_invalid`` if it did not."""
    if not token or len(token) > ACCESS_TOKEN_LENGTH_MAX:
        raise _token_invalid()
    async with services.unit_of_work() as uow:
        revoked = await uow.accounts.revoke_token(
            services.tokens.fingerprint(token), now=services.clock.now()
        )
        if not revoked:
            raise _token_invalid()
        await uow.commit()


async def account_of(services: Services, account_id: str) -> Account:
    async with services.unit_of_work() as uow:
        account: Account | None = await uow.accounts.get(account_id)
    if account is None:  # tokens refer to their account; it is never deleted
        raise _token_invalid()
    return account


# --- linking cards -----------------------------------------------------------------------------


def link_code_text(
    code: str, *, minutes: int, language: str, organisation: str | None = None
) -> str:
    """The SMS that carries ``code``, in ``language`` (English if it is not one we speak); with
    ``organisation``, it says the code adds the card to that organisation's fleet."""
    texts = translations(language)
    if organisation is not None:
        return texts.gettext(
            "Your topup code is %(code)s. It adds this card to the fleet of %(organisation)s "
            "and expires in %(minutes)s minutes. Give it only to that organisation's administrator.",
            code=code,
            organisation=organisation,
            minutes=str(minutes),
        )
    return texts.gettext(
        "Your topup code is %(code)s. It links this card to your account and expires in "
        "%(minutes)s minutes. Never share it.",
        code=code,
        minutes=str(minutes),
    )


def _code_hash(services: Services, code_id: str, code: str, scope: str = "") -> str:
    """``scope`` binds the code to what it was sent for ("" linking the card to the account,
    ``fleet_scope`` adding it to that organisation's fleet): spent elsewhere, it is wrong."""
    if not scope:
        return services.tokens.fingerprint(f"card-link:{code_id}:{code}")
    return services.tokens.fingerprint(f"card-link:{scope}:{code_id}:{code}")


def fleet_scope(organisation_id: str) -> str:
    """What a code sent to add a card to the organisation's fleet is for (``_code_hash``)."""
    return f"organisation:{organisation_id}"


async def _check_card_rate(services: Services, card_id: str) -> None:
    """Codes sent to one card, whoever asks: nobody can flood a subscriber with texts."""
    limit = services.limits.rates.sms_codes_per_hour_max
    retry_after_s = await services.rate_limiter.hit(
        "sms_code", f"card:{card_id}", limit=limit, window_s=SMS_CODES_WINDOW_S
    )
    if retry_after_s:
        raise TopupError(
            f"too many codes sent to this card; try again in {retry_after_s} s",
            code="rate_limited",
            retryable=True,
            params={"retry_after_s": str(retry_after_s)},
        )


async def start_card_link(services: Services, account_id: str, card_number: str) -> LinkCodeSent:
    """Send a one-time code by SMS to the card's number; the account links the card by giving
    it back (``verify_card_link``). A new code replaces any sent before."""
    async with services.unit_of_work() as uow:
        card = await find_card(uow, services, card_number)
        linked: bool = await uow.accounts.owns_card(account_id, card.id)
    if linked:
        raise ConflictError(
            "this card is already linked to the account",
            code="card_already_linked",
            field="card_number",
            params={},
        )
    return await send_link_code(services, account_id, card)


async def send_link_code(
    services: Services,
    account_id: str,
    card: Card,
    *,
    organisation: str | None = None,
    scope: str = "",
) -> LinkCodeSent:
    """Send a one-time code for the account to give back (``take_link_code``) to the card's
    number by SMS; a new code replaces any sent before. Also how an organisation's admin adds
    a card to the fleet (services.fleets; the text then names ``organisation``, and ``scope``,
    ``fleet_scope`` of it, binds the code to that fleet)."""
    sms = services.sms
    if sms is None:
        raise InvariantError("no SMS sender is configured (bootstrap builds one)")
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        account: Account | None = await uow.accounts.get(account_id)
    if account is None:
        raise _token_invalid()
    await _check_card_rate(services, card.id)  # a network call: no unit of work is open
    code = f"{secrets.randbelow(10**LINK_CODE_DIGITS):0{LINK_CODE_DIGITS}d}"
    code_id = services.new_id()
    expires_at = now + dt.timedelta(seconds=LINK_CODE_LIFETIME_S)
    pending = LinkCode(
        id=code_id,
        account_id=account_id,
        card_id=card.id,
        code_hash=_code_hash(services, code_id, code, scope),
        attempts=0,
        expires_at=expires_at,
        used_at=None,
    )
    async with services.unit_of_work() as uow:
        await uow.accounts.replace_link_code(pending, created_at=now)
        await uow.commit()
    text = link_code_text(
        code,
        minutes=LINK_CODE_LIFETIME_S // MINUTE_S,
        language=account.language,
        organisation=organisation,
    )
    await sms.send(card.msisdn, text)  # no connection held while the provider answers
    masked = CardNumber(CardNumberKind.MSISDN, card.msisdn).masked()
    return LinkCodeSent(card_number=masked, expires_at=expires_at)


def _link_code_expired() -> ConflictError:
    return ConflictError(
        "no valid code for this card: it expired, was used, or none was sent",
        code="link_code_expired",
        field="code",
        params={},
    )


def _link_attempts_exceeded() -> ConflictError:
    return ConflictError(
        "too many wrong codes; ask for a new one",
        code="link_code_attempts_exceeded",
        field="code",
        params={},
    )


async def verify_card_link(
    services: Services, account_id: str, card_number: str, code: str
) -> CardView:
    """Link the card if ``code`` is the one last sent to it for this account, unexpired, within
    LINK_CODE_ATTEMPTS_MAX attempts; returns the card's summary."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        card = await take_link_code(uow, services, account_id, card_number, code, now=now)
        await uow.accounts.link_card(account_id, card.id, at=now)
        await uow.commit()
    return card_summary(card, services)


async def take_link_code(
    uow: UnitOfWork,
    services: Services,
    account_id: str,
    card_number: str,
    code: str,
    *,
    now: dt.datetime,
    scope: str = "",
) -> Card:
    """Use the code last sent to the card for this account, in the caller's unit of work (which
    commits what is done with the card); a wrong code's attempt is committed here, then refused.
    A code sent for another ``scope`` (another organisation's fleet, or the account) is wrong."""
    typed = "".join(code.split())
    card = await find_card(uow, services, card_number)
    pending = await uow.accounts.pending_link_code(account_id, card.id)
    if pending is None or pending.expires_at <= now:
        raise _link_code_expired()
    attempts = await uow.accounts.spend_link_attempt(
        pending.id, attempts_max=LINK_CODE_ATTEMPTS_MAX
    )
    if attempts is None:
        raise _link_attempts_exceeded()
    if not hmac.compare_digest(pending.code_hash, _code_hash(services, pending.id, typed, scope)):
        await uow.commit()  # the attempt counts
        left = LINK_CODE_ATTEMPTS_MAX - attempts
        if left <= 0:
            raise _link_attempts_exceeded()
        raise InputError(
            f"wrong code; {left} attempts left",
            code="link_code_wrong",
            field="code",
            params={"attempts_left": str(left)},
        )
    if not await uow.accounts.use_link_code(pending.id, at=now):
        raise _link_code_expired()
    return card


async def my_cards(services: Services, account_id: str) -> list[CardView]:
    """The account's linked cards with their balances, in the order they were linked."""
    async with services.unit_of_work() as uow:
        cards = await uow.accounts.linked_cards(
            account_id, limit=services.limits.pages.list_limit_max
        )
    return [card_summary(card, services) for card in cards]


# --- housekeeping ------------------------------------------------------------------------------


async def prune(services: Services, *, limit: int) -> int:
    """Forget sign-in attempt counts whose window and lock are over, and link codes and e-mailed
    links that have expired, at most ``limit`` of each; returns how many rows went (the worker
    calls this)."""
    now = services.clock.now()
    window_start = now - dt.timedelta(seconds=services.limits.accounts.login_lock_s)
    async with services.unit_of_work() as uow:
        forgotten: int = await uow.accounts.prune_login_attempts(
            now=now, window_start=window_start, limit=limit
        )
        forgotten += await uow.accounts.prune_link_codes(expired_by=now, limit=limit)
        forgotten += await uow.accounts.prune_email_tokens(expired_by=now, limit=limit)
        await uow.commit()
    return forgotten
