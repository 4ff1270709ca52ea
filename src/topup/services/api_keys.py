"""API keys of stores, kiosks, partners and staff: create (the full key is shown once), list,
revoke, and authenticate a key presented with a request.

Authentication is one query on the unique index of the key's prefix, on every request, with no
cache: a revoked key is refused from the next request on, in every server process.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets

from topup.domain.api_keys import (
    OUTLET_ROLES,
    PREFIX_LENGTH,
    ApiKey,
    channel_of,
    check_name,
    check_outlet,
    check_role,
    compose_key,
    parse_key,
)
from topup.domain.callers import Caller
from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError
from topup.services.context import Services
from topup.services.views import ApiKeyView

SECRET_BYTES = 32  # 256 bits: 43 url-safe characters
PREFIX_ATTEMPTS_MAX = 5  # fresh prefixes tried if one is taken (one in 4 billion each)
KEY_ID_LENGTH_MAX = 64
# Compared against when no key has the prefix, so that an unknown prefix costs the same work.
_NO_SECRET_HASH = "0" * 64


def _invalid() -> TopupError:
    return TopupError("this API key is not valid", code="api_key_invalid")


def api_key_summary(key: ApiKey) -> ApiKeyView:
    """What lists and answers show of a key: never its secret nor the secret's hash."""
    return ApiKeyView(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        role=key.role,
        channel=channel_of(key.role),
        outlet=key.outlet,
        region=key.region,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


async def create_api_key(
    services: Services, *, name: str, role: str, outlet: str | None, region: str | None
) -> tuple[ApiKeyView, str]:
    """A new key: its summary, and the full key, which is shown this once and never again.
    Store and kiosk keys name their outlet and a region the payment-method registry knows."""
    key_role = check_role(role)
    key_name = check_name(name)
    key_outlet = check_outlet(key_role, outlet)
    key_region = (region or "").strip() or None
    if key_region is not None or key_role in OUTLET_ROLES:
        services.methods.check_region(channel=channel_of(key_role), region=key_region)
    async with services.unit_of_work() as uow:
        for _ in range(PREFIX_ATTEMPTS_MAX):
            prefix = secrets.token_hex(PREFIX_LENGTH // 2)
            secret = secrets.token_urlsafe(SECRET_BYTES)
            key = ApiKey(
                id=services.new_id(),
                prefix=prefix,
                secret_hash=services.tokens.fingerprint(secret),
                name=key_name,
                role=key_role,
                outlet=key_outlet,
                region=key_region,
                created_at=services.clock.now(),
                revoked_at=None,
            )
            if await uow.api_keys.add(key):
                await uow.commit()
                return api_key_summary(key), compose_key(prefix, secret)
    raise InvariantError(f"{PREFIX_ATTEMPTS_MAX} random API key prefixes were all taken")


async def list_api_keys(
    services: Services, *, limit: int = 100, offset: int = 0
) -> list[ApiKeyView]:
    """Keys oldest first, revoked ones included, at most ``limits.pages.list_limit_max`` at once."""
    maximum = services.limits.pages.list_limit_max
    if not 1 <= limit <= maximum:
        raise InputError(
            f"limit must be between 1 and {maximum}",
            code="limit_out_of_range",
            field="limit",
            params={"maximum": str(maximum)},
        )
    async with services.unit_of_work() as uow:
        keys: list[ApiKey] = await uow.api_keys.list_page(limit=limit, offset=max(offset, 0))
    return [api_key_summary(key) for key in keys]


async def revoke_api_key(services: Services, key_id: str) -> ApiKeyView:
    """Revoke the key from the next request on. Revoking a revoked key changes nothing."""
    async with services.unit_of_work() as uow:
        key: ApiKey | None = (
            await uow.api_keys.get(key_id) if len(key_id) <= KEY_ID_LENGTH_MAX else None
        )
        if key is None:
            raise NotFoundError(
                f"there is no API key {key_id!r}",
                code="api_key_not_found",
                field="id",
                params={"api_key_id": key_id[:KEY_ID_LENGTH_MAX]},
            )
        if key.revoked_at is not None:
            return api_key_summary(key)
        now = services.clock.now()
        await uow.api_keys.revoke(key.id, now=now)
        await uow.commit()
    return api_key_summary(dataclasses.replace(key, revoked_at=now))


async def authenticate_api_key(services: Services, presented: str) -> Caller:
    """The caller an API key stands for; 401 ``api_key_invalid`` if unknown or revoked."""
    parsed = parse_key(presented.strip())
    if parsed is None:
        raise _invalid()
    presented_hash = services.tokens.fingerprint(parsed.secret)
    async with services.unit_of_work() as uow:
        key: ApiKey | None = await uow.api_keys.by_prefix(parsed.prefix)
    stored_hash = key.secret_hash if key is not None else _NO_SECRET_HASH
    matches = hmac.compare_digest(presented_hash.encode(), stored_hash.encode())
    if key is None or not matches or key.revoked_at is not None:
        raise _invalid()
    return key.caller
