"""API keys at the service level, on SQLite and PostgreSQL: a key is shown once and kept only as a
keyed hash, authenticates as its role, outlet and region, and is refused once revoked, with a
wrong secret, or when it is not a key at all."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.callers import ApiKeyRole, CallerKind
from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.services.api_keys import (
    authenticate_api_key,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from topup.services.views import ApiKeyView
from topup.settings import LimitSettings

KIOSK = {"name": "Kiosk 3, KL Sentral", "role": "kiosk", "outlet": "kls-3", "region": "penang"}


@pytest.fixture
def application(make_app: AppFactory) -> Application:
    return make_app()


async def create(application: Application, **overrides: Any) -> tuple[ApiKeyView, str]:
    values: dict[str, Any] = {**KIOSK, **overrides}
    return await create_api_key(application.services, **values)


async def test_a_kiosk_key_authenticates_as_its_kiosk_and_region(
    application: Application,
) -> None:
    summary, key = await create(application)
    caller = await authenticate_api_key(application.services, key)
    assert caller.kind is CallerKind.API_KEY
    assert caller.api_key_id == summary.id
    assert (caller.role, caller.outlet, caller.region) == (ApiKeyRole.KIOSK, "kls-3", "penang")
    assert caller.channel_for(None) == "kiosk"
    assert summary.prefix in key
    assert summary.status == "active"


async def test_the_full_key_is_long_random_and_different_each_time(
    application: Application,
) -> None:
    (first_summary, first), (second_summary, second) = [await create(application) for _ in "ab"]
    marker, live, prefix, secret = first.split("_", 3)
    assert (marker, live, prefix) == ("tk", "live", first_summary.prefix)
    assert len(prefix) == 8
    assert len(secret) >= 32
    assert first != second
    assert first_summary.prefix != second_summary.prefix


async def test_the_secret_is_nowhere_in_the_api_keys_table(application: Application) -> None:
    _, key = await create(application)
    secret = key.split("_", 3)[3]
    async with application.engine.connect() as connection:
        rows = (await connection.execute(select(t.api_keys))).all()
    stored = [str(value) for row in rows for value in row]
    assert len(rows) == 1
    assert not any(secret in value or key in value for value in stored)
    assert rows[0]._mapping["secret_hash"] == application.services.tokens.fingerprint(secret)


async def test_a_revoked_key_is_refused_from_the_next_request_on(application: Application) -> None:
    summary, key = await create(application)
    await authenticate_api_key(application.services, key)
    revoked = await revoke_api_key(application.services, summary.id)
    assert revoked.status == "revoked"
    with pytest.raises(TopupError) as refused:
        await authenticate_api_key(application.services, key)
    assert refused.value.code == "api_key_invalid"


async def test_the_right_prefix_with_a_wrong_secret_is_refused(application: Application) -> None:
    _, key = await create(application)
    last = key[-1]
    forged = key[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(TopupError) as refused:
        await authenticate_api_key(application.services, forged)
    assert refused.value.code == "api_key_invalid"


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "tk_live_",
        "tk_live_00000000_" + "x" * 43,  # well formed, no such prefix
        "tk_live_ABCDEFGH_" + "x" * 43,  # prefix not lower-case hex
        "tk_live_0123abcd_short",
        "sk_live_0123abcd_" + "x" * 43,
        "tk_live_0123abcd_" + "x" * 200,  # too long
        "tk_live_0123abcd_" + "x" * 40 + "é!",
    ],
)
async def test_what_is_not_a_known_key_is_refused(application: Application, presented: str) -> None:
    await create(application)
    with pytest.raises(TopupError) as refused:
        await authenticate_api_key(application.services, presented)
    assert refused.value.code == "api_key_invalid"


async def test_a_partner_key_needs_no_outlet_nor_region(application: Application) -> None:
    summary, key = await create(
        application, name="Reseller A", role="partner", outlet=None, region=None
    )
    caller = await authenticate_api_key(application.services, key)
    assert (caller.role, caller.outlet, caller.region) == (ApiKeyRole.PARTNER, None, None)
    assert summary.channel == "api"


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"region": None}, "region_required", "region"),
        ({"region": "atlantis"}, "region_unknown", "region"),
        ({"outlet": None}, "api_key_outlet_invalid", "outlet"),
        ({"outlet": "x" * 65}, "api_key_outlet_invalid", "outlet"),
        ({"role": "admin"}, "api_key_role_unknown", "role"),
        ({"name": "  "}, "api_key_name_invalid", "name"),
        ({"role": "partner", "region": "atlantis"}, "region_unknown", "region"),
    ],
)
async def test_a_key_with_a_missing_or_unknown_detail_is_not_created(
    application: Application, overrides: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(InputError) as refused:
        await create(application, **overrides)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert await list_api_keys(application.services) == []


async def test_the_list_shows_revoked_keys_and_never_a_secret(application: Application) -> None:
    first, first_key = await create(application)
    second, second_key = await create(application, name="Store 1", role="store", outlet="s1")
    await revoke_api_key(application.services, first.id)
    listed = await list_api_keys(application.services)
    assert {row.id: row.status for row in listed} == {
        first.id: "revoked",
        second.id: "active",
    }
    assert not any(hasattr(row, "secret_hash") for row in listed)
    assert first_key not in str(listed) and second_key not in str(listed)


@pytest.mark.parametrize("limit", [0, LimitSettings().list_limit_max + 1])
async def test_the_list_is_bounded(application: Application, limit: int) -> None:
    with pytest.raises(InputError) as refused:
        await list_api_keys(application.services, limit=limit)
    assert refused.value.code == "limit_out_of_range"


async def test_revoking_twice_keeps_the_first_revocation_time(make_app: AppFactory) -> None:
    clock = FixedClock(START)
    application = make_app(clock=clock)
    summary, _ = await create(application)
    first = await revoke_api_key(application.services, summary.id)
    clock.advance(3600)
    again = await revoke_api_key(application.services, summary.id)
    assert again.revoked_at == first.revoked_at


async def test_revoking_an_unknown_key_says_so(application: Application) -> None:
    with pytest.raises(NotFoundError) as refused:
        await revoke_api_key(application.services, "no-such-key")
    assert refused.value.code == "api_key_not_found"
    assert refused.value.params == {"api_key_id": "no-such-key"}
