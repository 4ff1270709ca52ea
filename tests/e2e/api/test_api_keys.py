"""API keys over HTTP (X-API-Key) and on the command line (`topup api-keys`): a kiosk key sells
through the kiosk channel; an unknown, malformed or revoked key is a 401 problem, never taken as
anonymous."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import conftest
from tests.e2e.api.conftest import client_for
from tests.e2e.commands import COMMAND_TIMEOUT_S, topup_executable
from topup.bootstrap import Application, build
from topup.domain.errors import TopupError
from topup.services.api_keys import authenticate_api_key, create_api_key, revoke_api_key
from topup.services.views import ApiKeyView

CARD = "0123456789"  # the demo's active prepaid card
PROBLEM = "application/problem+json"


async def kiosk_key(application: Application) -> tuple[ApiKeyView, str]:
    return await create_api_key(
        application.services, name="Kiosk 3", role="kiosk", outlet="kls-3", region="penang"
    )


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert body["code"] == "api_key_invalid"
    assert body["status"] == 401


async def test_a_kiosk_key_looks_up_plans_on_the_kiosk_channel(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    _, key = await kiosk_key(demo_app)
    answer = await api.get(f"/api/v1/cards/{CARD}/plans", headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    assert answer.json()["channel"] == "kiosk"


async def test_a_kiosk_key_cannot_claim_the_store_channel(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    _, key = await kiosk_key(demo_app)
    answer = await api.get(
        f"/api/v1/cards/{CARD}/plans", params={"channel": "store"}, headers={"X-API-Key": key}
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "channel_not_allowed"


async def test_a_revoked_key_is_a_401_problem(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    summary, key = await kiosk_key(demo_app)
    await revoke_api_key(demo_app.services, summary.id)
    assert_refused(await api.get(f"/api/v1/cards/{CARD}/plans", headers={"X-API-Key": key}))


@pytest.mark.parametrize(
    "presented", ["tk_live_0123abcd_" + "x" * 43, "not-a-key", "", "tk_live_" + "a" * 500]
)
async def test_an_unknown_or_malformed_key_is_a_401_problem(
    api: httpx.AsyncClient, presented: str
) -> None:
    assert_refused(await api.get(f"/api/v1/cards/{CARD}/plans", headers={"X-API-Key": presented}))


async def test_a_key_with_a_wrong_secret_is_a_401_problem(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    _, key = await kiosk_key(demo_app)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_refused(await api.get(f"/api/v1/cards/{CARD}/plans", headers={"X-API-Key": forged}))


async def test_the_key_is_checked_again_on_every_request(
    demo_app: Application, make_app: conftest.AppFactory
) -> None:
    """Revoked through another application (another server process): refused at once."""
    summary, key = await kiosk_key(demo_app)
    other = make_app()
    path = f"/api/v1/cards/{CARD}/plans"
    async with client_for(demo_app) as client:
        assert (await client.get(path, headers={"X-API-Key": key})).status_code == 200
        await revoke_api_key(other.services, summary.id)
        assert_refused(await client.get(path, headers={"X-API-Key": key}))


def cli(arguments: list[str], environment: dict[str, str], directory: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [topup_executable(), *arguments],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert isinstance(data, dict)
    return data


async def test_the_command_line_creates_lists_and_revokes_keys(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'topup.sqlite3'}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    environment.update(
        TOPUP_DATABASE_URL=database_url,
        TOPUP_SECRET_KEY=conftest._valid_test_key(),
        TOPUP_SANDBOX_JOURNAL="",
        TOPUP_SANDBOX_SMS_OUTBOX="",
    )
    cli(["init", "--json"], environment, tmp_path)
    store = ["--name", "Store 1", "--role", "store", "--outlet", "s1", "--region", "johor"]
    created = cli(["api-keys", "create", *store, "--json"], environment, tmp_path)
    key = created["key"]
    key_id = created["api_key"]["id"]
    listed = cli(["api-keys", "list", "--json"], environment, tmp_path)
    assert [row["id"] for row in listed["api_keys"]] == [key_id]
    assert key not in json.dumps(listed)

    application = build(conftest.test_settings(database_url))
    try:
        caller = await authenticate_api_key(application.services, key)
        assert (caller.outlet, caller.region, caller.channel_for(None)) == ("s1", "johor", "store")
        revoked = cli(["api-keys", "revoke", key_id, "--json"], environment, tmp_path)
        assert revoked["api_key"]["status"] == "revoked"
        with pytest.raises(TopupError):
            await authenticate_api_key(application.services, key)
    finally:
        await application.close()
