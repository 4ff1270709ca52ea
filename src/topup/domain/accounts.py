"""Accounts of subscribers: what makes an e-mail, a password and a language acceptable, and the
records an account keeps (pure rules; hashing and storage happen in services and adapters)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.errors import InputError

EMAIL_LENGTH_MAX = 254  # RFC 5321's limit on a forward path, less the angle brackets
EMAIL_LOCAL_PART_LENGTH_MAX = 64
PASSWORD_LENGTH_MIN = 10
PASSWORD_LENGTH_MAX = 256
ACCOUNT_LANGUAGES = ("en", "zh_Hans", "ms", "id")


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str  # normalised: see ``normalise_email``
    password_hash: str  # argon2id, with its parameters and salt
    language: str  # one of ACCOUNT_LANGUAGES
    created_at: dt.datetime
    # When a link e-mailed to the address was followed (confirmation or password reset); an
    # account signs in only once it is confirmed.
    confirmed_at: dt.datetime | None = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class EmailTokenPurpose(StrEnum):
    """What a link e-mailed to an account's address does when followed."""

    CONFIRM_EMAIL = "confirm_email"  # finishes a sign-up, with the password it was asked with
    RESET_PASSWORD = "reset_password"  # noqa: S105 - sets a new password; not a password


@dataclass(frozen=True, slots=True)
class EmailToken:
    """A single-use token carried by a link e-mailed to an account's address; only its keyed
    hash is kept. A confirmation carries the password hash and language of the sign-up that
    asked for it, so that following it confirms that sign-up and no other."""

    id: str
    account_id: str
    purpose: EmailTokenPurpose
    token_hash: str
    expires_at: dt.datetime
    created_at: dt.datetime
    password_hash: str | None = None
    language: str | None = None
    used_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class LinkCode:
    """A one-time code sent by SMS to a card's number so that an account can link the card."""

    id: str
    account_id: str
    card_id: str
    code_hash: str
    attempts: int
    expires_at: dt.datetime
    used_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class SessionState:
    """A sign-in token that is neither expired nor revoked: whose it is, when it was issued and
    ends, and when it was last used (None: not recorded, as for tokens issued before it was)."""

    account_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class LoginAttempts:
    """Sign-in attempts counted under one key (an e-mail, or an e-mail from one client address)
    within the current window, the one being made included, and the lock they led to."""

    attempts: int
    locked_until: dt.datetime | None


def normalise_email(text: str) -> str:
    """The form an address is stored and looked up in: trimmed and lower-case, so that
    ``Aisyah@Example.com`` and ``aisyah@example.com`` are one account."""
    return unicodedata.normalize("NFC", text).strip().lower()


def _email_invalid(text: str) -> InputError:
    return InputError(
        f"{text!r} is not an e-mail address",
        code="email_invalid",
        field="email",
        params={"email": text[:EMAIL_LENGTH_MAX]},
    )


def check_email(text: str) -> str:
    """The normalised address, or ``email_invalid``. Deliberately simple: one ``@``, a local
    part, a domain with a dot, no spaces or control characters; whether mail arrives is
    another question."""
    email = normalise_email(text)
    local, at, domain = email.rpartition("@")
    if (
        not at
        or len(email) > EMAIL_LENGTH_MAX
        or not local
        or len(local) > EMAIL_LOCAL_PART_LENGTH_MAX
        or "@" in local
        or "." not in domain.strip(".")
        or ".." in domain
        or any(character.isspace() or not character.isprintable() for character in email)
    ):
        raise _email_invalid(text.strip())
    return email


def normalise_password(password: str) -> str:
    """The same password typed on different keyboards gives the same characters (NFKC)."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str) -> str:
    """The password to hash, or ``password_too_short`` / ``password_too_long``."""
    normalised = normalise_password(password)
    if len(normalised) < PASSWORD_LENGTH_MIN:
        raise InputError(
            f"a password has at least {PASSWORD_LENGTH_MIN} characters",
            code="password_too_short",
            field="password",
            params={"minimum": str(PASSWORD_LENGTH_MIN)},
        )
    if len(normalised) > PASSWORD_LENGTH_MAX:
        raise InputError(
            f"a password has at most {PASSWORD_LENGTH_MAX} characters",
            code="password_too_long",
            field="password",
            params={"maximum": str(PASSWORD_LENGTH_MAX)},
        )
    return normalised


def check_language(text: str) -> str:
    """One of ACCOUNT_LANGUAGES (``zh-Hans`` is taken for ``zh_Hans``), or
    ``language_unsupported``."""
    wanted = text.strip().replace("-", "_")
    for language in ACCOUNT_LANGUAGES:
        if wanted.lower() == language.lower():
            return language
    raise InputError(
        f"language {text!r} is not one of {', '.join(ACCOUNT_LANGUAGES)}",
        code="language_unsupported",
        field="language",
        params={"language": text[:16], "supported": ", ".join(ACCOUNT_LANGUAGES)},
    )
