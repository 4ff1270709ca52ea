"""What the HTTP boundary refuses before a route runs (issue 9, A2, A3, A10) and what it answers
for a bug: control characters anywhere in a request, non-ASCII verification codes, oversized
chunked bodies, and an unexpected exception, on SQLite and PostgreSQL (in-process)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.api.test_receipts import number_of, paid
from topup.bootstrap import Application
from topup.domain.callers import ANONYMOUS
from topup.domain.errors import NotFoundError
from topup.entrypoints.api import cards as card_routes
from topup.entrypoints.http.request_checks import BODY_BYTES_MAX
from topup.services.api_keys import create_api_key
from topup.services.receipts import receipt_of

CARD = "0123456789"  # the demo's active prepaid card
PROBLEM = "application/problem+json"
CHUNK_BYTES = 8 * 1024


@pytest.fixture
async def staff(demo_app: Application) -> dict[str, str]:
    _, secret = await create_api_key(
        demo_app.services, name="Support", role="staff", outlet=None, region=None
    )
    return {"X-API-Key": secret}


def assert_fields_refused(answer: httpx.Response, *fields: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert body["code"] == "invalid_request"
    assert [problem["field"] for problem in body["errors"]] == list(fields)
    assert {problem["code"] for problem in body["errors"]} == {"field_invalid"}


async def test_a_nul_in_a_path_id_is_a_404_as_for_an_id_that_does_not_exist(
    api: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    for path in (
        "/api/v1/renewals/abc%00def",
        f"/api/v1/cards/{CARD}%00/balance",
        f"/api/v1/cards/{CARD}%00/transactions",
        "/api/v1/cards/%00/plans",
        "/api/v1/receipts/R-0000%00",
        "/api/v1/problems/card%00unknown",
        "/api/v1/renewals/abc%01def",
    ):
        answer = await api.get(path, headers=staff)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["code"] == "not_found", path


async def test_a_nul_in_a_query_parameter_is_a_422_naming_it(
    api: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    transactions = await api.get(
        f"/api/v1/cards/{CARD}/transactions", params={"cursor": "a\x00b"}, headers=staff
    )
    assert_fields_refused(transactions, "cursor")
    methods = await api.get(
        "/api/v1/payment-methods", params={"card_number": CARD, "plan": "pack\x00_5gb"}
    )
    assert_fields_refused(methods, "plan")
    receipt = await api.get("/api/v1/receipts/R-0000", params={"verification_code": "\x00"})
    assert_fields_refused(receipt, "verification_code")


async def test_a_cursor_that_decodes_to_a_nul_is_refused_as_invalid(
    api: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    forged = json.dumps(["2026-01-01T00:00:00+00:00", "r\x00"]).encode()
    cursor = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    answer = await api.get(
        f"/api/v1/cards/{CARD}/transactions", params={"cursor": cursor}, headers=staff
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "cursor_invalid"
    assert answer.json()["errors"][0]["field"] == "cursor"


async def test_a_nul_or_control_character_in_a_json_string_at_any_depth_is_a_422_naming_it(
    api: httpx.AsyncClient,
) -> None:
    order: dict[str, Any] = {
        "card_number": CARD,
        "plan": "pack_5gb_7d",
        "payment": {"method": "credit_card", "token": "tok\x00"},
    }
    renewal = await api.post("/api/v1/renewals", json=order, headers={"Idempotency-Key": "k-1"})
    assert_fields_refused(renewal, "payment.token")
    order["plan"] = "pack\x85"  # a C1 control, sent raw in UTF-8
    raw = httpx.Request("POST", "http://x", json=order).content.replace(b"\\u0085", "\x85".encode())
    renewal = await api.post(
        "/api/v1/renewals",
        content=raw,
        headers={"Idempotency-Key": "k-2", "Content-Type": "application/json"},
    )
    assert_fields_refused(renewal, "plan", "payment.token")
    for email in ("a\x00@example.com", "a@example.com\r\nBcc: b@example.com"):
        recovery = await api.post("/api/v1/card-number-recovery", json={"email": email})
        assert_fields_refused(recovery, "email")
    confirm = await api.post("/api/v1/renewals/x/confirm", json={"answer": "1\x002"})
    assert_fields_refused(confirm, "answer")


async def test_a_control_character_in_a_header_a_route_uses_is_a_422_naming_it(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.get("/api/v1/renewals/abc", headers={"X-Client-Secret": b"s\x01cret"})
    assert_fields_refused(answer, "x-client-secret")


async def test_a_non_ascii_verification_code_is_the_404_of_any_wrong_code(
    demo_app: Application, api: httpx.AsyncClient
) -> None:
    number = number_of(await paid(demo_app))
    wrong = await api.get(f"/api/v1/receipts/{number}", params={"verification_code": "X"})
    assert wrong.status_code == 404
    assert wrong.json()["code"] == "receipt_unknown"
    for answer in (
        await api.get(f"/api/v1/receipts/{number}", params={"verification_code": "０"}),
        await api.get(f"/api/v1/receipts/{number}", headers={"X-Verification-Code": "é".encode()}),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json() == wrong.json()


async def test_the_receipt_service_takes_a_non_ascii_code_as_a_wrong_one(
    demo_app: Application,
) -> None:
    number = number_of(await paid(demo_app))
    for typed in ("０", "é", "ÀÀÀÀÀ-ÀÀÀÀÀ"):
        with pytest.raises(NotFoundError) as refused:
            await receipt_of(demo_app.services, ANONYMOUS, number, typed)
        assert refused.value.code == "receipt_unknown"


async def chunks(total_bytes: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total_bytes:
        yield b" " * CHUNK_BYTES
        sent += CHUNK_BYTES


async def test_an_oversized_chunked_body_is_a_413_on_every_json_route(
    api: httpx.AsyncClient,
) -> None:
    for path in ("/api/v1/renewals", "/api/v1/accounts", "/api/v1/card-number-recovery"):
        answer = await api.post(
            path,
            content=chunks(BODY_BYTES_MAX + CHUNK_BYTES),
            headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
        )
        assert answer.status_code == 413, (path, answer.text)
        assert answer.json()["code"] == "body_too_large"
        assert answer.headers["connection"] == "close"


async def test_a_chunked_body_within_the_limit_reaches_the_route(api: httpx.AsyncClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"email": "someone'
        yield b'@example.com"}'

    answer = await api.post(
        "/api/v1/card-number-recovery", content=body(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text


async def test_an_unexpected_error_is_a_500_that_names_no_exception_and_closes_the_connection(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*arguments: object, **options: object) -> None:
        raise ZeroDivisionError("a secret detail")

    monkeypatch.setattr(card_routes.queries, "public_plans", broken)
    with caplog.at_level("ERROR", logger="topup.api"):
        answer = await api.get(f"/api/v1/cards/{CARD}/plans")
    assert answer.status_code == 500
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-content-type-options"] == "nosniff"
    body = answer.json()
    assert body["code"] == "internal_error"
    assert "ZeroDivisionError" not in answer.text
    assert "secret" not in answer.text
    assert "ZeroDivisionError" in caplog.text  # for the operator, in the log only


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_control_character_in_a_json_body_sent_in_utf_16_or_32_is_a_422_naming_it(
    api: httpx.AsyncClient, encoding: str
) -> None:
    # json.loads reads UTF-16 and UTF-32 bodies, where a raw C1 control has no 0xc2 byte.
    order = {"card_number": CARD, "plan": "pack\x85", "payment": {"method": "credit_card"}}
    renewal = await api.post(
        "/api/v1/renewals",
        content=json.dumps(order, ensure_ascii=False).encode(encoding),
        headers={"Idempotency-Key": f"k-{encoding}", "Content-Type": "application/json"},
    )
    assert_fields_refused(renewal, "plan")
