"""What every request must pass before it reaches a route, checked once at the door:

* its body is at most ``BODY_BYTES_MAX`` bytes, whether it says its length or streams it
  (chunked): 413 ``body_too_large`` otherwise;
* no text in it holds a control character (U+0000 NUL and the other C0 and C1 controls, DEL):
  not the path (404 ``not_found``, as for an id that does not exist), a query parameter, a header
  whose value a route uses, or any string (or key) of a JSON body at any depth: 422
  ``invalid_request`` naming the field (``field_invalid``). No card number, e-mail, plan code,
  cursor or key needs one, and PostgreSQL refuses NUL in text.

The body is read whole here (it is small) and handed on to the route unchanged."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.entrypoints.http.language import language_of_header, language_tag
from topup.entrypoints.http.problems import PROBLEM_MEDIA_TYPE, problem_body

BODY_BYTES_MAX = 64 * 1024  # every request body the API and the pages take is far smaller
FIELD_PROBLEMS_MAX = 20
# Headers whose values routes use (credentials, keys, codes); the others are not read as data.
CHECKED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-client-secret",
    "x-verification-code",
    "idempotency-key",
)
# A JSON body can only carry a control character escaped (\u0000, \n...) or, for C1 controls
# and DEL, raw: bodies with neither are not decoded here. JSON in UTF-16 or UTF-32 (which
# json.loads, and so the routes, accept) holds NUL bytes and carries C1 controls without 0xc2.
_JSON_CONTROL_HINTS = (b"\\", b"\xc2", b"\x7f", b"\x00")


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(character) == "Cc" for character in text)


def _header_has_control_character(value: bytes) -> bool:
    # Headers arrive as bytes (Latin-1 on the wire): C0 controls and DEL; bytes 0x80-0x9f are
    # parts of UTF-8 characters, not controls.
    return any(byte < 0x20 or byte == 0x7F for byte in value)


def _printable(name: str) -> str:
    return "".join("?" if unicodedata.category(c) == "Cc" else c for c in name)[:64]


def _json_fields_with_controls(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if has_control_character(value):
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            field = f"{path}.{_printable(key)}" if path else _printable(key)
            if has_control_character(key):
                yield field
            yield from _json_fields_with_controls(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_fields_with_controls(item, f"{path}.{index}" if path else str(index))


def json_fields_with_controls(body: bytes) -> list[str]:
    """The fields of a JSON body whose text holds a control character (none if not JSON)."""
    if not any(hint in body for hint in _JSON_CONTROL_HINTS):
        return []
    try:
        document = json.loads(body)
    except ValueError:  # not JSON: the route's own parsing answers
        return []
    found: list[str] = []
    for field in _json_fields_with_controls(document):
        found.append(field)
        if len(found) >= FIELD_PROBLEMS_MAX:
            break
    return found


def query_fields_with_controls(query_string: bytes) -> list[str]:
    found: list[str] = []
    text = query_string.decode("latin-1")
    for name, value in parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"):
        if has_control_character(name) or has_control_character(value):
            found.append(_printable(name))
    return found[:FIELD_PROBLEMS_MAX]


def header_fields_with_controls(headers: Sequence[tuple[bytes, bytes]]) -> list[str]:
    return [
        name.decode("latin-1")
        for name, value in headers
        if name.decode("latin-1").lower() in CHECKED_HEADERS
        and _header_has_control_character(value)
    ]


def control_characters_refused(fields: Sequence[str]) -> tuple[InputError, list[TopupError]]:
    """422 ``invalid_request``, with one ``field_invalid`` per field."""
    problems: list[TopupError] = [
        InputError(
            f"{field}: control characters are not allowed",
            code="field_invalid",
            field=field,
            params={"field": field},
        )
        for field in fields
    ]
    summary = InputError("the request has invalid fields", code="invalid_request", params={})
    return summary, problems


class RequestChecks:
    """The ASGI middleware of this module's checks. ``raw_body_prefixes``: paths whose body is
    taken as bytes (signed webhooks): their body is limited in size, not inspected."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_bytes_max: int = BODY_BYTES_MAX,
        raw_body_prefixes: Sequence[str] = (),
        larger_bodies: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        """``larger_bodies``: (path pattern, bytes) of the few paths that take more (an upload)."""
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.raw_body_prefixes = tuple(raw_body_prefixes)
        self.larger_bodies = tuple(larger_bodies)

    def _bytes_max(self, path: str) -> int:
        for pattern, bytes_max in self.larger_bodies:
            if pattern.match(path):
                return bytes_max
        return self.body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        if has_control_character(scope.get("path", "")):
            await _refuse(scope, send, NotFoundError("no such path", code="not_found"))
            return
        fields = query_fields_with_controls(scope.get("query_string", b""))
        fields += header_fields_with_controls(headers)
        if fields:
            await _refuse(scope, send, *control_characters_refused(fields))
            return
        bytes_max = self._bytes_max(scope.get("path", ""))
        body = await self._body(scope, receive, headers, bytes_max)
        if body is None:
            await _refuse(scope, send, self._too_large(bytes_max), close=True)
            return
        if not scope.get("path", "").startswith(self.raw_body_prefixes):
            fields = json_fields_with_controls(body)
            if fields:
                await _refuse(scope, send, *control_characters_refused(fields))
                return
        await self.app(scope, _replay(body, receive), send)

    async def _body(
        self,
        scope: Scope,
        receive: Receive,
        headers: Sequence[tuple[bytes, bytes]],
        bytes_max: int,
    ) -> bytes | None:
        """The whole body, or None when it is (or says it is) larger than allowed."""
        named = dict(headers)
        declared = named.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > bytes_max):
            return None
        if declared is None and b"transfer-encoding" not in named:
            return b""  # no body (RFC 9112: neither header, no body)
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > bytes_max:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, bytes_max: int) -> TopupError:
        return TopupError(
            f"the request body is larger than {bytes_max} bytes",
            code="body_too_large",
            params={"bytes_max": str(bytes_max)},
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then waits as the original does."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(
    scope: Scope,
    send: Send,
    error: TopupError,
    errors: Sequence[TopupError] = (),
    *,
    close: bool = False,
) -> None:
    accept_language = dict(scope.get("headers") or []).get(b"accept-language", b"")
    locale = language_of_header(accept_language.decode("latin-1"))
    status, body = problem_body(error, locale, errors=errors)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-language", language_tag(locale).encode()),
    ]
    if close:  # the rest of the body is not read: the connection cannot be used again
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
