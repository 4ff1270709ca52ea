"""A checkout: what the renewal's pages carry from the look-up to the payment.

- Its *reference*, in the pages' URLs (``/renew/<reference>/...``): the card's id, when it was
  looked up and a random nonce, signed with the platform's key. It names no card number, and
  only a look-up by number (rate limited) makes one; it lasts ``CHECKOUT_AGE_MAX_S``.
- The *idempotency key* of each attempt to pay (R7a), issued by the server with the payment form
  as the attempt's number (hidden field ``attempt``): the key itself is a keyed hash of the
  visitor's own secret (the CSRF cookie's), the reference, the plan and that number, so the same
  form — pressed twice, refreshed, reached again by Back or in a second tab — always pays under
  one key, and nobody else's form can. A declined attempt's page offers the next number.
- What an attempt ended in (``Outcome``), stored with the key by ``services.idempotency`` and
  answered again to every later press of Pay on that form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from topup.domain.errors import NotFoundError
from topup.entrypoints.web.shared.csrf import csrf_secret
from topup.services.context import Services

CHECKOUT_AGE_MAX_S = 6 * 3600
NONCE_BYTES = 9
REFERENCE_MAC_LENGTH = 20
REFERENCE_LENGTH_MAX = 120
ATTEMPTS_MAX = 50  # declined attempts offered again within one checkout
IDEMPOTENCY_SCOPE = "web:checkout"
OUTCOME_MEDIA_TYPE = "application/vnd.topup.checkout-outcome+json"


def checkout_expired() -> NotFoundError:
    return NotFoundError(
        "this renewal was started too long ago or its link is damaged; enter the card number again",
        code="checkout_expired",
    )


def _mac(services: Services, body: str) -> str:
    return services.tokens.fingerprint(f"checkout:{body}")[:REFERENCE_MAC_LENGTH]


def new_reference(services: Services, card_id: str) -> str:
    issued_s = int(services.clock.now().timestamp())
    body = f"{card_id}.{issued_s:x}.{secrets.token_urlsafe(NONCE_BYTES)}"
    return f"{body}.{_mac(services, body)}"


def card_of_reference(services: Services, reference: str) -> str:
    """The card id a reference names, if it is one of ours and not too old."""
    parts = reference.split(".")
    if len(reference) > REFERENCE_LENGTH_MAX or len(parts) != 4:
        raise checkout_expired()
    card_id, issued_hex, _nonce, mac = parts
    body = ".".join(parts[:3])
    if not hmac.compare_digest(mac.encode(), _mac(services, body).encode()):
        raise checkout_expired()
    try:
        issued_s = int(issued_hex, 16)
    except ValueError:
        raise checkout_expired() from None
    age_s = services.clock.now().timestamp() - issued_s
    if not -60 <= age_s <= CHECKOUT_AGE_MAX_S:
        raise checkout_expired()
    return card_id


def attempt_of(text: object) -> int:
    """The attempt a form names (1 when it names none or nonsense)."""
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 3:
        return min(max(int(text), 1), ATTEMPTS_MAX)
    return 1


def idempotency_key(request: Request, reference: str, plan_code: str, attempt: int) -> str:
    services: Services = request.app.state.application.services
    material = f"checkout-key:{csrf_secret(request)}:{reference}:{plan_code}:{attempt}"
    return services.tokens.fingerprint(material)


def request_fingerprint(card_id: str, plan_code: str) -> str:
    """One checkout buys one plan for one card, whatever method or payment card pays it: a
    second press with other details still lands on what the first did."""
    return hashlib.sha256(json.dumps([card_id, plan_code]).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt to pay ended in: its renewal, and where the payer goes next."""

    renewal_id: str
    status: str
    decline_code: str | None = None
    action_url: str | None = None

    def encode(self) -> bytes:
        return json.dumps(
            {
                "renewal_id": self.renewal_id,
                "status": self.status,
                "decline_code": self.decline_code,
                "action_url": self.action_url,
            }
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Outcome:
        data = json.loads(body)
        return cls(
            renewal_id=str(data["renewal_id"]),
            status=str(data["status"]),
            decline_code=data.get("decline_code"),
            action_url=data.get("action_url"),
        )


# --- paths of the journey ------------------------------------------------------------------------


def card_path(reference: str) -> str:
    return f"/renew/{reference}"


def methods_path(reference: str, plan_code: str) -> str:
    return f"/renew/{reference}/{plan_code}"


def pay_path(reference: str, plan_code: str) -> str:
    return f"/renew/{reference}/{plan_code}/pay"


def status_path(renewal_id: str) -> str:
    return f"/renewals/{renewal_id}"


def verify_path(renewal_id: str) -> str:
    return f"/renewals/{renewal_id}/verify"
