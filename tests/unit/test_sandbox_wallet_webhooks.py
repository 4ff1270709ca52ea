"""The sandbox e-wallet's webhooks: a correctly signed body whose timestamp is not a Unix time
(superscript or other scripts' digits, thousands of digits, letters) is refused with a webhook
code, never an exception of Python's own."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.domain.errors import WebhookError

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
BODY = json.dumps(
    {"id": "evt_1", "type": "payment.succeeded", "payment_id": "pay_1", "reference": "wpay_1"}
).encode()


def wallet() -> SandboxWallet:
    return SandboxWallet(
        secret=b"wallet-test", webhook_secret=b"webhook-test", approval_delay_s=0, clock=lambda: NOW
    )


def test_a_webhook_signed_now_is_accepted() -> None:
    sandbox = wallet()
    event = sandbox.parse_webhook(BODY, sandbox.sign(BODY, NOW), NOW)
    assert (event.event_id, event.payment_id) == ("evt_1", "pay_1")


@pytest.mark.parametrize(
    "timestamp",
    [
        "²",  # str.isdigit() says yes, int() says no
        "١٧٦٤٠٥٧٦٠٠",  # Arabic-Indic digits: int() reads them
        "1" * 5000,  # more digits than int() converts
        "9" * 13,  # a time int() reads, beyond any clock
        "1764057600.5",
        "-1764057600",
        "é",
        "\udc80",  # a lone surrogate, as a header decoded with surrogateescape could hold
        " 1764057600",
    ],
    ids=lambda timestamp: repr(timestamp[:12]),
)
def test_a_correctly_signed_webhook_with_an_odd_timestamp_is_refused_with_a_webhook_code(
    timestamp: str,
) -> None:
    sandbox = wallet()
    headers = sandbox.sign_with_timestamp(BODY, timestamp)
    with pytest.raises(WebhookError) as caught:
        sandbox.parse_webhook(BODY, headers, NOW)
    assert caught.value.code == "webhook_timestamp_invalid"
    assert caught.value.field == "webhook"


def test_an_odd_timestamp_without_the_right_signature_is_a_bad_signature() -> None:
    headers = {"Sandbox-Signature": "t=²,v1=" + "0" * 64}
    with pytest.raises(WebhookError) as caught:
        wallet().parse_webhook(BODY, headers, NOW)
    assert caught.value.code == "webhook_signature_invalid"


def test_a_correctly_signed_body_nested_too_deeply_is_malformed() -> None:
    sandbox = wallet()
    body = b"[" * 8000 + b"]" * 8000
    with pytest.raises(WebhookError) as caught:
        sandbox.parse_webhook(body, sandbox.sign(body, NOW), NOW)
    assert caught.value.code == "webhook_malformed"
