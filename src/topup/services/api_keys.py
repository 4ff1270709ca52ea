"""API keys of stores, kiosks, partners and staff (to be completed: create, list, revoke)."""

from __future__ import annotations

from topup.domain.callers import Caller
from topup.domain.errors import TopupError
from topup.services.context import Services


async def authenticate_api_key(services: Services, presented: str) -> Caller:
    """The caller an API key stands for; 401 ``api_key_invalid`` if unknown or revoked."""
    raise TopupError("this API key is not valid", code="api_key_invalid")
