"""An HTTP client on the whole site (the API and the pages) of a demo application: real
database, in-process ASGI, no JavaScript. Pages are read as a browser without scripts would:
``csrf_of(page)`` gives a form's CSRF token to send back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from topup.bootstrap import Application
from topup.entrypoints.site import create_site

SITE_URL = "http://testserver"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def site_client(application: Application, address: str = "203.0.113.9") -> httpx.AsyncClient:
    """A browser-like client: it keeps cookies and says its requests come from this site."""
    transport = httpx.ASGITransport(app=create_site(application), client=(address, 40000))
    return httpx.AsyncClient(
        transport=transport,
        base_url=SITE_URL,
        headers={"sec-fetch-site": "same-origin", "accept-language": "en"},
    )


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
async def site(demo_app: Application) -> AsyncIterator[httpx.AsyncClient]:
    async with site_client(demo_app) as client:
        yield client
