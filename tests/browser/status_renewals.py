"""Renewals for the browser tests of the status pages, made through the API as the checkout makes
them; the browser is then given the renewal's client secret as the checkout leaves it (the
``topup_renewal`` cookie on ``/renewals/<id>``)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

CARD = "0123456789"  # +60 12-345 6789, prepaid, active
PLAN = "pack_5gb_7d"
RENEWAL_COOKIE = "topup_renewal"


def renew(site: Any, **payment: Any) -> dict[str, Any]:
    with site.api() as api:
        if not payment:
            token = api.post(
                "/sandbox/psp/v1/tokens",
                json={
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            )
            assert token.status_code == 201, token.text
            payment = {"method": "credit_card", "token": token.json()["token"]}
        answer = api.post(
            "/api/v1/renewals",
            json={"card_number": CARD, "plan": PLAN, "payment": payment},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def renew_by_wallet(site: Any, account: str) -> dict[str, Any]:
    """An e-wallet renewal waiting for approval. An account ending in 9999 never answers by
    itself in the sandbox wallet: only its approval page does."""
    created = renew(site, method="ewallet:tng", wallet_account=account)
    assert created["status"] == "requires_action", created
    return created


def hold_renewal(page: Any, site: Any, created: dict[str, Any]) -> None:
    """Let the page's browser see the renewal, as the checkout that made it would."""
    host = urlsplit(site.url).hostname
    page.context.add_cookies(
        [
            {
                "name": RENEWAL_COOKIE,
                "value": created["client_secret"],
                "domain": host,
                "path": f"/renewals/{created['id']}",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
