"""The channels' static files (CSS, scripts, icons), read into memory once at start-up and
compressed once, served ahead of the pages' middleware: they are public, the same for everyone,
and each URL carries a hash of its content (``?v=``), so a browser keeps them for a year.

A file asked for with another version than its own (an old page) is still served, but kept a
day only. A limit on the files' total size stops a folder from filling the memory."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from topup.domain.errors import InvariantError

STATIC_PREFIX = "/static/"
static_files_bytes_max = 8 * 1024 * 1024
VERSION_LENGTH = 10
IMMUTABLE = b"public, max-age=31536000, immutable"
ONE_DAY = b"public, max-age=86400"
_COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".webmanifest": "application/manifest+json"}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    compressed: bytes | None  # gzip, when it is smaller
    media_type: str
    version: str


def _media_type(path: Path) -> str:
    found = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return found or "application/octet-stream"


def _load(folders: Mapping[str, Path]) -> dict[str, _Asset]:
    assets: dict[str, _Asset] = {}
    total = 0
    for prefix, folder in folders.items():  # "/static/portal" -> its folder
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            body = path.read_bytes()
            total += len(body)
            if total > static_files_bytes_max:
                raise InvariantError(f"static files pass {static_files_bytes_max} bytes")
            media_type = _media_type(path)
            compressed = None
            if media_type.startswith(_COMPRESSIBLE):
                packed = gzip.compress(body, compresslevel=9, mtime=0)
                compressed = packed if len(packed) < len(body) else None
            version = hashlib.sha256(body).hexdigest()[:VERSION_LENGTH]
            url_path = f"{prefix}/{path.relative_to(folder).as_posix()}"
            assets[url_path] = _Asset(body, compressed, media_type, version)
    return assets


class StaticAssets:
    """An ASGI application serving ``/static/<channel>/...`` from memory; ``url`` gives a file's
    versioned URL for templates."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        self._assets = _load(folders)

    def url(self, name: str) -> str:
        """``shared/base.css`` -> ``/static/shared/base.css?v=1a2b3c4d5e``."""
        path = STATIC_PREFIX + name
        found = self._assets.get(path)
        if found is None:
            raise InvariantError(f"no static file {name!r}")
        return f"{path}?v={found.version}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._assets.get(scope.get("path", ""))
        if scope.get("method") not in {"GET", "HEAD"} or found is None:
            await _plain(send, 404 if found is None else 405, b"Not found")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        current = query.get("v", [""])[0] == found.version
        headers = dict(scope.get("headers") or [])
        gzipped = found.compressed is not None and b"gzip" in headers.get(b"accept-encoding", b"")
        body = found.compressed if gzipped and found.compressed is not None else found.body
        etag = f'"{found.version}{"-gz" if gzipped else ""}"'.encode()
        answer = [
            (b"content-type", found.media_type.encode()),
            (b"cache-control", IMMUTABLE if current else ONE_DAY),
            (b"etag", etag),
            (b"vary", b"Accept-Encoding"),
        ]
        if gzipped:
            answer.append((b"content-encoding", b"gzip"))
        if headers.get(b"if-none-match") == etag:
            await send({"type": "http.response.start", "status": 304, "headers": answer})
            await send({"type": "http.response.body", "body": b""})
            return
        answer.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": answer})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


async def _plain(send: Send, status: int, text: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})
