"""Sign-up, e-mail confirmation and password reset, finished by single-use links e-mailed to the
address: whoever asks learns nothing about whether an address has an account.

- Sign-up answers the same for a new and a registered address, after the same work (the
  password is hashed either way). A new address gets an account that cannot sign in yet and a
  confirmation link; following it confirms the account with the password (and language) of the
  sign-up that asked for it. Signing up again while unconfirmed sends another link; each works
  for its own sign-up, once, and the first followed makes the others stop working, so a
  stranger who signed up first with someone's address cannot take over the account the owner
  confirms. A confirmed address is told "you already have an account: sign in or reset your
  password".
- A password reset is asked for by e-mail address and always answered the same way; an account
  with that address is sent a link valid PASSWORD_RESET_LIFETIME_S. Following it with a new
  password sets it once, confirms the address if it was not, signs every token of the account
  out, and forgets the e-mail's sign-in attempts and locks from every address.

Tokens are 256-bit random strings, kept only as keyed hashes (``services.tokens.fingerprint``),
never logged; the links carry them to the web site (``Services.public_url``), whose pages call
the API with them. The e-mails go in the background, as receipts and card-number recovery do,
in the requester's language.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from topup.domain.accounts import (
    Account,
    EmailToken,
    EmailTokenPurpose,
    check_language,
    check_password,
)
from topup.domain.errors import InputError, InvariantError, TopupError
from topup.i18n import translations
from topup.services.accounts import (
    email_key,
    hash_password,
    slowdown_fingerprint,
)
from topup.services.context import Services
from topup.services.receipts import mailings, parse_email

logger = logging.getLogger("topup.accounts")

EMAIL_TOKEN_BYTES = 32  # secrets.token_urlsafe: 43 characters
EMAIL_TOKEN_LENGTH_MAX = 128  # longer presented tokens are refused without a look-up
CONFIRMATION_LIFETIME_S = 86_400
PASSWORD_RESET_LIFETIME_S = 1800
EMAIL_WINDOW_S = 3600  # the window of the per-e-mail limits (recovery_per_hour_max)
HOUR_S = 3600
MINUTE_S = 60

# Pages of the web site that the e-mailed links open (the site's pages call the API routes).
CONFIRM_PAGE = "/accounts/confirm"
PASSWORD_RESET_PAGE = "/accounts/password-reset"  # noqa: S105 - a path, not a password
SIGN_IN_PAGE = "/accounts/sign-in"


def rate_key(services: Services, purpose: str, email: str) -> str:
    """What a per-e-mail rate limit counts: a keyed hash, never the address itself."""
    return "email:" + services.tokens.fingerprint(f"{purpose}:{email.lower()}")


def _token_hash(services: Services, purpose: EmailTokenPurpose, token: str) -> str:
    return services.tokens.fingerprint(f"email-link:{purpose.value}:{token}")


def _link(services: Services, page: str, token: str | None = None) -> str:
    query = "" if token is None else "?" + urlencode({"token": token})
    return services.public_url.rstrip("/") + page + query


def _new_token(
    services: Services,
    account_id: str,
    purpose: EmailTokenPurpose,
    *,
    lifetime_s: int,
    password_hash: str | None = None,
    language: str | None = None,
) -> tuple[str, EmailToken]:
    """A fresh token, and the record that keeps only its hash."""
    token = secrets.token_urlsafe(EMAIL_TOKEN_BYTES)
    now = services.clock.now()
    record = EmailToken(
        id=services.new_id(),
        account_id=account_id,
        purpose=purpose,
        token_hash=_token_hash(services, purpose, token),
        expires_at=now + dt.timedelta(seconds=lifetime_s),
        created_at=now,
        password_hash=password_hash,
        language=language,
    )
    return token, record


def _mail_later(services: Services, what: str, send: Callable[[], Awaitable[object]]) -> None:
    """Run ``send`` among the background mailings; a failure is logged (never the address or
    a token), a mailing beyond the bound is dropped with a log line."""

    async def run() -> None:
        try:
            await send()
        except TopupError as error:
            logger.warning("%s not sent: %s", what, error.code)
        except Exception:  # a bug; logged with its traceback, and the server goes on
            logger.exception("%s failed", what)

    if not mailings(services).start(run()):
        logger.warning("%s dropped: %d mailings under way", what, mailings(services).in_flight)


async def _send(services: Services, recipient: str, subject: str, body: str) -> None:
    if services.mailer is None:
        logger.warning("no mailer configured: an account e-mail was not sent")
        return
    await services.mailer.send(recipient, subject, body)


# --- sign-up -----------------------------------------------------------------------------------


async def sign_up(
    services: Services, *, email: str, password: str, language: str, locale: str
) -> None:
    """Open an account that signs in once confirmed, and mail its confirmation link in
    ``language``; for an address whose account is confirmed already, mail "you have an account"
    in ``locale`` (the requester's) instead. Answers the same either way; refuses only what is
    wrong with the request itself (``email_invalid``, ``password_too_short`` / ``_long``,
    ``language_unsupported``)."""
    address = parse_email(email)
    chosen = check_language(language)
    password_hash = await hash_password(check_password(password))
    now = services.clock.now()
    candidate = Account(
        id=services.new_id(),
        email=address,
        password_hash=password_hash,
        language=chosen,
        created_at=now,
    )
    token: str | None = None
    async with services.unit_of_work() as uow:
        account = candidate if await uow.accounts.add(candidate) else None
        if account is None:
            account = await uow.accounts.by_email(address)
        if account is None:  # accounts are never deleted
            raise InvariantError("an account's e-mail was taken but no account has it")
        if not account.confirmed:
            token, record = _new_token(
                services,
                account.id,
                EmailTokenPurpose.CONFIRM_EMAIL,
                lifetime_s=CONFIRMATION_LIFETIME_S,
                password_hash=password_hash,
                language=chosen,
            )
            await uow.accounts.add_email_token(record)
        await uow.commit()
    if token is None:
        _mail_later(services, "sign-up notice", lambda: _send_registered(services, account, locale))
    else:
        confirm = _link(services, CONFIRM_PAGE, token)
        _mail_later(
            services,
            "sign-up confirmation",
            lambda: _send_confirmation(services, address, confirm, chosen),
        )


async def _send_confirmation(services: Services, address: str, link: str, locale: str) -> None:
    texts = translations(locale)
    subject = texts.gettext("Confirm your e-mail address to finish signing up")
    body = texts.gettext(
        "Thank you for signing up. Open this link to confirm your e-mail address; you can sign "
        "in once it is confirmed:\n\n%(link)s\n\nThe link works once, for %(hours)s hours. If "
        "you did not sign up, ignore this e-mail and the account will not be opened.",
        link=link,
        hours=str(CONFIRMATION_LIFETIME_S // HOUR_S),
    )
    await _send(services, address, subject, body)


async def _send_registered(services: Services, account: Account, locale: str) -> None:
    texts = translations(locale)
    subject = texts.gettext("You already have an account")
    body = texts.gettext(
        "Someone tried to sign up with this e-mail address, but you already have an account. "
        "Sign in here:\n\n%(sign_in_link)s\n\nForgot your password? Reset it here:\n\n"
        "%(reset_link)s\n\nIf it was not you, you can ignore this e-mail: nothing has changed.",
        sign_in_link=_link(services, SIGN_IN_PAGE),
        reset_link=_link(services, PASSWORD_RESET_PAGE),
    )
    await _send(services, account.email, subject, body)


def _confirmation_invalid() -> InputError:
    return InputError(
        "this confirmation link is not valid: it expired, was used, or the account is "
        "confirmed already",
        code="confirmation_token_invalid",
        field="token",
        params={},
    )


async def confirm_email(services: Services, token: str) -> Account:
    """Follow a confirmation link: the account is confirmed with the password and language of
    the sign-up that asked for this link, and may sign in. ``confirmation_token_invalid`` for a
    token that is unknown, expired, used, or whose account is confirmed already."""
    if not token or len(token) > EMAIL_TOKEN_LENGTH_MAX:
        raise _confirmation_invalid()
    purpose = EmailTokenPurpose.CONFIRM_EMAIL
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        used = await uow.accounts.use_email_token(
            _token_hash(services, purpose, token), purpose=purpose, at=now
        )
        if used is None or used.password_hash is None or used.language is None:
            raise _confirmation_invalid()
        confirmed = await uow.accounts.confirm(
            used.account_id, password_hash=used.password_hash, language=used.language, at=now
        )
        if not confirmed:  # another link confirmed it: the others are dead from then on
            raise _confirmation_invalid()
        account: Account | None = await uow.accounts.get(used.account_id)
        await uow.commit()
    if account is None:
        raise InvariantError("a confirmation link names an account that does not exist")
    return account


# --- password reset ----------------------------------------------------------------------------


def request_password_reset(services: Services, email: str, locale: str) -> None:
    """Start mailing a reset link to the account with ``email`` (checked by ``parse_email``),
    in ``locale``; returns at once whether or not an account has that address."""
    address = parse_email(email)
    _mail_later(services, "password reset", lambda: send_password_reset(services, address, locale))


async def send_password_reset(services: Services, email: str, locale: str) -> bool:
    """Store a reset token for the account with ``email`` and mail its link; True if a link
    went out, False if no account has the address."""
    async with services.unit_of_work() as uow:
        account: Account | None = await uow.accounts.by_email(email)
        if account is None:
            return False
        token, record = _new_token(
            services,
            account.id,
            EmailTokenPurpose.RESET_PASSWORD,
            lifetime_s=PASSWORD_RESET_LIFETIME_S,
        )
        await uow.accounts.add_email_token(record)
        await uow.commit()
    texts = translations(locale)
    subject = texts.gettext("Set a new password")
    body = texts.gettext(
        "Someone asked to reset the password of the account with this e-mail address. Open this "
        "link to set a new one:\n\n%(link)s\n\nThe link works once, for %(minutes)s minutes; "
        "setting a new password signs the account out everywhere. If you did not ask, ignore "
        "this e-mail: your password stays as it is.",
        link=_link(services, PASSWORD_RESET_PAGE, token),
        minutes=str(PASSWORD_RESET_LIFETIME_S // MINUTE_S),
    )
    await _send(services, account.email, subject, body)
    return True


def _reset_invalid() -> InputError:
    return InputError(
        "this password-reset link is not valid: it expired or was used; ask for a new one",
        code="reset_token_invalid",
        field="token",
        params={},
    )


async def reset_password(services: Services, *, token: str, password: str) -> None:
    """Set a new password with a reset link's token, once: the account is confirmed if it was
    not, every sign-in token of it is revoked, its other reset links stop working, and the
    sign-in attempts and locks of its e-mail from every address are forgotten.
    ``reset_token_invalid`` for a token that is unknown, expired or used;
    ``password_too_short`` / ``_long`` (the token is not spent)."""
    if not token or len(token) > EMAIL_TOKEN_LENGTH_MAX:
        raise _reset_invalid()
    password_hash = await hash_password(check_password(password))
    purpose = EmailTokenPurpose.RESET_PASSWORD
    token_hash = _token_hash(services, purpose, token)
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        found = await uow.accounts.email_token(token_hash, purpose=purpose)
        if found is None or found.used_at is not None or found.expires_at <= now:
            raise _reset_invalid()
        account: Account | None = await uow.accounts.get(found.account_id)
        if account is None:
            raise InvariantError("a reset link names an account that does not exist")
        # Rows in the order sign-ins take them (attempt counts, then the account), so that
        # neither waits on the other's rows; the account's row then serialises resets.
        await uow.accounts.forget_login_attempts_of(
            email_key(services, account.email), [slowdown_fingerprint(services, account.email)]
        )
        await uow.accounts.reset_password(account.id, password_hash, at=now)
        if await uow.accounts.use_email_token(token_hash, purpose=purpose, at=now) is None:
            raise _reset_invalid()  # used meanwhile: everything above is rolled back
        await uow.accounts.revoke_tokens_of(account.id, now=now)
        await uow.accounts.drop_email_tokens(account.id, purpose=purpose)
        await uow.commit()
