"""Web Push to the installed app: RFC 8030 (the push service), RFC 8291 (the message encrypted
to the browser's keys, ``aes128gcm``, with http_ece) and RFC 8292 (VAPID: our key signs a JWT
the push service checks, with py_vapid), over httpx.

- The VAPID key pair is a P-256 key in a PEM file under ``var/`` (mode 0600), made once by
  ``topup init`` (``ensure_vapid_key``); its public key, base64url, is the page's
  ``applicationServerKey``.
- ``send`` posts the encrypted payload with ``TTL``, ``Urgency`` and a ``Topic`` made from the
  delivery's id (a push service keeps one undelivered message per topic: a repeat replaces it).
- 201/202: sent; 404/410: the subscription is gone; anything else, or no answer within
  ``timeout_s``: the retryable ``push_unavailable``. A test lists the errors translated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from topup.adapters.private_files import make_private_directory
from topup.domain.errors import TopupError
from topup.ports import PushOutcome, PushSubscription

JWT_LIFETIME_S = 12 * 3600  # RFC 8292: at most 24 h
PAYLOAD_LENGTH_MAX = 3000  # bytes before encryption; push services take about 4 KB
TOPIC_LENGTH = 32  # RFC 8030: at most 32 base64url characters
TRANSLATED_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError, TimeoutError)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ensure_vapid_key(path: Path) -> Path:
    """Make the VAPID private key file (PEM, mode 0600) if there is none yet."""
    if path.exists():
        return path
    make_private_directory(path.parent)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: theirs is the key
        return path
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return path


def public_key_of(vapid: Vapid02) -> str:
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(raw)


def push_unavailable(reason: str) -> TopupError:
    return TopupError(
        f"the push service did not take the message ({reason})",
        code="push_unavailable",
        retryable=True,
    )


def encrypt(payload: bytes, subscription: PushSubscription) -> bytes:
    """RFC 8291: the payload encrypted to the browser's key and secret (aes128gcm)."""
    server_key = ec.generate_private_key(ec.SECP256R1())
    encrypted: bytes = http_ece.encrypt(
        payload,
        salt=secrets.token_bytes(16),
        private_key=server_key,
        dh=_b64url_decode(subscription.p256dh),
        auth_secret=_b64url_decode(subscription.auth),
        version="aes128gcm",
    )
    return encrypted


class WebPushSender:
    """The ``PushSender`` port. One HTTP client per sender, closed by ``aclose``."""

    def __init__(
        self,
        key_file: Path,
        *,
        subject: str,
        timeout_s: float,
        clock: Callable[[], dt.datetime],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._vapid = Vapid02.from_file(str(key_file))
        self.public_key = public_key_of(self._vapid)
        self._subject = subject
        self._clock = clock
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self._subject,
            "exp": int(self._clock().timestamp()) + JWT_LIFETIME_S,
        }
        signed: dict[str, str] = self._vapid.sign(claims)
        return signed["Authorization"]

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, idempotency_key: str, ttl_s: int
    ) -> PushOutcome:
        if len(payload) > PAYLOAD_LENGTH_MAX:
            payload = payload[:PAYLOAD_LENGTH_MAX]
        topic = _b64url(hashlib.sha256(idempotency_key.encode()).digest())[:TOPIC_LENGTH]
        headers = {
            "authorization": self._authorization(subscription.endpoint),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
            "ttl": str(ttl_s),
            "urgency": "normal",
            "topic": topic,
        }
        try:
            answer = await self._client.post(
                subscription.endpoint, content=encrypt(payload, subscription), headers=headers
            )
        except TRANSLATED_ERRORS as error:
            raise push_unavailable(type(error).__name__) from error
        if answer.status_code in (404, 410):
            return PushOutcome.GONE
        if answer.status_code not in (200, 201, 202):
            raise push_unavailable(f"HTTP {answer.status_code}")
        return PushOutcome.SENT


class MemoryPush:
    """A ``PushSender`` for tests: keeps (subscription, payload, key) instead of sending;
    ``gone`` holds endpoints it answers as gone, ``failing`` makes it unavailable."""

    public_key = "BMemoryPushPublicKeyForTests"

    def __init__(self) -> None:
        self.sent: list[tuple[PushSubscription, bytes, str]] = []
        self.gone: set[str] = set()
        self.failing = False

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, idempotency_key: str, ttl_s: int
    ) -> PushOutcome:
        if self.failing:
            raise push_unavailable("the test push service is down")
        if subscription.endpoint in self.gone:
            return PushOutcome.GONE
        self.sent.append((subscription, payload, idempotency_key))
        return PushOutcome.SENT
