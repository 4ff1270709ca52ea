"""The mediation system's signed endpoint: bad and old signatures and replays are refused with
their codes and change nothing; bad lines are listed by number and the rest applied once."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from tests.conftest import START, AppFactory
from tests.e2e.api.conftest import client_for
from topup.bootstrap import Application
from topup.domain.usage_signatures import SIGNATURE_HEADER, sign
from topup.services import queries
from topup.services.demo import load_demo

SECRET = "mediation-test-secret"
PATH = "/api/v1/usage-records"


@pytest.fixture
async def signed_app(make_app: AppFactory) -> Application:
    application = make_app(usage_secret=SECRET)
    await load_demo(application.services)
    return application


def body_of(*lines: dict[str, object] | str) -> bytes:
    return "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
    ).encode()


RECORD = {
    "record_id": "m1",
    "card": "+60123456789",
    "used_at": "2026-11-25T07:00:00Z",
    "data_used_mb": 48,
}


async def post(
    client: httpx.AsyncClient, body: bytes, *, at: dt.datetime = START, secret: str = SECRET
) -> httpx.Response:
    return await client.post(
        PATH,
        content=body,
        headers={
            SIGNATURE_HEADER: sign(secret.encode(), body, at=at),
            "content-type": "application/x-ndjson",
        },
    )


async def quota(application: Application) -> int:
    return (await queries.balance(application.services, "+60123456789")).data_quota_mb


async def test_signed_records_are_applied_once_and_bad_lines_listed_by_number(
    signed_app: Application,
) -> None:
    body = body_of(RECORD, "{oops", {**RECORD, "record_id": "m2", "card": "+60999999999"})
    async with client_for(signed_app) as client:
        answer = await post(client, body)
        assert answer.status_code == 200, answer.text
        summary = answer.json()
        assert (summary["applied"], summary["bad_lines"]) == (1, 2)
        assert [(p["line"], p["code"]) for p in summary["problems"]] == [
            (2, "usage_line_malformed"),
            (3, "usage_card_unknown"),
        ]
        resent = await post(client, body, at=START + dt.timedelta(seconds=1))  # signed afresh
        assert resent.json()["applied"] == 0 and resent.json()["duplicates"] == 1
    assert await quota(signed_app) == 2000


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "usage_signature_missing"),
        ({SIGNATURE_HEADER: "t=1,v1=00"}, "usage_signature_invalid"),
        ({SIGNATURE_HEADER: "t=12x,v1=00"}, "usage_timestamp_invalid"),
    ],
)
async def test_unsigned_or_wrongly_signed_records_are_refused(
    signed_app: Application, headers: dict[str, str], code: str
) -> None:
    async with client_for(signed_app) as client:
        answer = await client.post(PATH, content=body_of(RECORD), headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert await quota(signed_app) == 2048


async def test_an_old_signature_and_a_replay_are_refused(signed_app: Application) -> None:
    body = body_of(RECORD)
    async with client_for(signed_app) as client:
        old = await post(client, body, at=START - dt.timedelta(minutes=6))
        assert (old.status_code, old.json()["code"]) == (400, "usage_signature_expired")
        wrong_secret = await post(client, body, secret="guess")
        assert wrong_secret.json()["code"] == "usage_signature_invalid"
        first = await post(client, body)
        assert first.status_code == 200
        replay = await post(client, body)
        assert (replay.status_code, replay.json()["code"]) == (409, "usage_signature_replayed")
    assert await quota(signed_app) == 2000
