"""The client's address, as rate limits and locks count it."""

from __future__ import annotations

from starlette.requests import Request


def client_address(request: Request) -> str:
    """The peer's address (a reverse proxy in front must pass the client's own; see README)."""
    return request.client.host if request.client is not None else "unknown"
