"""API keys of stores, kiosks, partners and the operator's staff: what a key looks like, what makes
its name, role, outlet and region acceptable, and the record kept of it (pure rules; the random
parts, the hashing and the storage happen in services and adapters).

A key reads ``tk_live_<prefix>_<secret>``: the prefix (8 lower-case hex digits) finds the key's row
through a unique index and is shown in lists; the secret (43 url-safe characters, 256 bits) is
shown once, at creation, and only its keyed hash is kept.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from topup.domain.callers import CHANNEL_OF_ROLE, ApiKeyRole, Caller, CallerKind
from topup.domain.errors import InputError

KEY_MARKER = "tk_live_"
PREFIX_LENGTH = 8
SECRET_LENGTH_MIN = 32
KEY_LENGTH_MAX = 128  # longer is refused before any hashing or database work
NAME_LENGTH_MAX = 200  # the column's width
OUTLET_LENGTH_MAX = 64
# Keys that sell at a place: they name the store or kiosk and the region it stands in.
OUTLET_ROLES = frozenset({ApiKeyRole.STORE, ApiKeyRole.KIOSK})

_PREFIX = re.compile(r"[0-9a-f]{8}")
_SECRET = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    prefix: str
    secret_hash: str  # keyed HMAC of the secret (``TokenSealer.fingerprint``), hex
    name: str
    role: ApiKeyRole
    outlet: str | None
    region: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def caller(self) -> Caller:
        return Caller(
            kind=CallerKind.API_KEY,
            api_key_id=self.id,
            role=self.role,
            outlet=self.outlet,
            region=self.region,
        )


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A key as a caller sent it, split into the part we look up and the part we check."""

    prefix: str
    secret: str


def compose_key(prefix: str, secret: str) -> str:
    return f"{KEY_MARKER}{prefix}_{secret}"


def parse_key(text: str) -> PresentedKey | None:
    """The prefix and secret of a well-formed key; None for anything else."""
    if len(text) > KEY_LENGTH_MAX or not text.startswith(KEY_MARKER):
        return None
    prefix, separator, secret = text[len(KEY_MARKER) :].partition("_")
    if not separator or not _PREFIX.fullmatch(prefix):
        return None
    if len(secret) < SECRET_LENGTH_MIN or not _SECRET.fullmatch(secret):
        return None
    return PresentedKey(prefix=prefix, secret=secret)


def check_role(text: str) -> ApiKeyRole:
    try:
        return ApiKeyRole(text.strip().lower())
    except ValueError:
        roles = ", ".join(role.value for role in ApiKeyRole)
        raise InputError(
            f"there is no API key role {text!r}; roles: {roles}",
            code="api_key_role_unknown",
            field="role",
            params={"role": text[:NAME_LENGTH_MAX], "roles": roles},
        ) from None


def check_name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > NAME_LENGTH_MAX or not name.isprintable():
        raise InputError(
            f"an API key's name has 1 to {NAME_LENGTH_MAX} printable characters",
            code="api_key_name_invalid",
            field="name",
            params={"length_max": str(NAME_LENGTH_MAX)},
        )
    return name


def check_outlet(role: ApiKeyRole, text: str | None) -> str | None:
    """The store or kiosk a key belongs to: required for store and kiosk keys, optional for the
    others."""
    outlet = (text or "").strip()
    if not outlet and role not in OUTLET_ROLES:
        return None
    if not outlet or len(outlet) > OUTLET_LENGTH_MAX or not outlet.isprintable():
        raise InputError(
            f"a {role.value} key names the store or kiosk it belongs to, "
            f"in at most {OUTLET_LENGTH_MAX} printable characters",
            code="api_key_outlet_invalid",
            field="outlet",
            params={"role": role.value, "length_max": str(OUTLET_LENGTH_MAX)},
        )
    return outlet


def channel_of(role: ApiKeyRole) -> str:
    return CHANNEL_OF_ROLE[role]
