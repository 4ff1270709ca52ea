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
from topup.domain.usage import RECORD_ID_LENGTH_MAX
from topup.domain.usage_files import RECORD_LINE_BYTES_MAX
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


def longest_records(count: int, iccid: str) -> bytes:
    """``count`` records of the longest fields allowed, as JSON escapes them (each character of
    the record id six bytes)."""
    return body_of(
        *(
            {
                "record_id": f"{n:04d}" + "é" * (RECORD_ID_LENGTH_MAX - 4),
                "card": iccid,
                "used_at": "2026-11-25T15:00:00.123456+08:00",
                "data_used_mb": 1,
            }
            for n in range(count)
        )
    )


async def test_the_most_records_a_request_may_carry_fit_in_its_body(
    signed_app: Application,
) -> None:
    records_max = signed_app.services.limits.usage.usage_records_per_request_max
    iccid = (await queries.balance(signed_app.services, "+60123456789")).iccid
    body = longest_records(records_max, iccid)
    assert len(body) > 64 * 1024  # more than other routes take
    async with client_for(signed_app) as client:
        answer = await post(client, body)
        assert answer.status_code == 200, answer.text[:300]
        assert (answer.json()["applied"], answer.json()["bad_lines"]) == (records_max, 0)
        one_more = await post(
            client, longest_records(records_max + 1, iccid), at=START + dt.timedelta(seconds=1)
        )
    assert one_more.json()["code"] == "usage_request_too_large", one_more.text[:300]
    assert await quota(signed_app) == 2048 - records_max


async def test_a_body_larger_than_the_most_records_take_is_refused_at_the_door(
    signed_app: Application,
) -> None:
    records_max = signed_app.services.limits.usage.usage_records_per_request_max
    body = b" " * ((records_max + 1) * RECORD_LINE_BYTES_MAX + 1)
    async with client_for(signed_app) as client:
        answer = await post(client, body)
    assert (answer.status_code, answer.json()["code"]) == (413, "body_too_large")


async def test_json_lines_carrying_data_used_as_text_are_refused_by_line(
    signed_app: Application,
) -> None:
    body = body_of({**RECORD, "data_used_mb": "48"}, {**RECORD, "record_id": "m2"})
    async with client_for(signed_app) as client:
        summary = (await post(client, body)).json()
    assert summary["applied"] == 1
    assert [(p["line"], p["code"]) for p in summary["problems"]] == [(1, "usage_data_invalid")]
    assert await quota(signed_app) == 2000
