"""Security headers on every response, set in one place (an ASGI middleware around the app):
``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``,
a ``Content-Security-Policy`` (the strict ``JSON_POLICY`` unless the response brings its own, as
a page does) and ``Cache-Control: no-store`` unless the response says otherwise or its path is
one of the public, cacheable ones: answers carry tokens, secrets, balances and receipts."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"
PUBLIC_CACHE = "public, max-age=86400"
NO_STORE = "no-store"
HTTP_ERROR_MIN = 400  # errors are never cached, not even on a cacheable path
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str) -> str:
    """The policy of a page that loads only same-origin files, plus its own inline scripts
    (allowed by their hash): what Swagger UI at /api/docs needs."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """``cacheable_prefixes``: paths whose answers are public and may be cached."""

    def __init__(self, app: ASGIApp, *, cacheable_prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.cacheable_prefixes = tuple(cacheable_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        cacheable = path.startswith(self.cacheable_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _ALWAYS if name not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", JSON_POLICY.encode()))
                if b"cache-control" not in present:
                    public = cacheable and message["status"] < HTTP_ERROR_MIN
                    headers.append(
                        (b"cache-control", (PUBLIC_CACHE if public else NO_STORE).encode())
                    )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
