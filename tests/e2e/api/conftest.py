"""An HTTP client on the API of a demo application (real database, in-process ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from topup.bootstrap import Application
from topup.entrypoints.api.app import create_app


def client_for(application: Application, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(application), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def api(demo_app: Application) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(demo_app) as client:
        yield client
