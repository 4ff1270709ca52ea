"""The signature the network's mediation system puts on each delivery of usage records.

Header ``X-Topup-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``,
over the raw body (as the e-wallet's webhooks are signed). A signature older than the tolerance,
or as far in the future, is refused; the same signature twice is a replay (refused by the
service, which remembers the signatures it accepted).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping

from topup.domain.errors import WebhookError

SIGNATURE_HEADER = "x-topup-signature"
TIMESTAMP_DIGITS_MAX = 12


def sign(secret: bytes, body: bytes, *, at: dt.datetime) -> str:
    """The header's value for ``body`` signed at ``at`` (what the mediation system sends)."""
    timestamp = str(int(at.timestamp()))
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    secret: bytes, body: bytes, headers: Mapping[str, str], *, now: dt.datetime, tolerance_s: int
) -> str:
    """The signature (its v1 part) if the header is there, well formed, matches the body and is
    recent; else WebhookError (a bad request, 400, as a gateway's webhook) with its code."""
    lowered = {key.lower(): value for key, value in headers.items()}
    parts = dict(
        part.strip().split("=", 1)
        for part in lowered.get(SIGNATURE_HEADER, "").split(",")
        if "=" in part
    )
    timestamp, signature = parts.get("t", ""), parts.get("v1", "")
    if not timestamp or not signature or not secret:
        raise _refused("usage_signature_missing", "The usage records are not signed.")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= TIMESTAMP_DIGITS_MAX):
        raise _refused("usage_timestamp_invalid", "The signature's time is not valid.")
    if not signature.isascii() or not hmac.compare_digest(_mac(secret, timestamp, body), signature):
        raise _refused("usage_signature_invalid", "The signature does not match the records.")
    if abs(now.timestamp() - int(timestamp)) > tolerance_s:
        raise _refused(
            "usage_signature_expired", "The records were signed too long ago; sign them again."
        )
    return signature


def _mac(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _refused(code: str, message: str) -> WebhookError:
    return WebhookError(message, code=code, field="signature")
