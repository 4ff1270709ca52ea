"""Accounts of subscribers (to be completed: sign-up, log-in, tokens, linked cards)."""

from __future__ import annotations

from topup.domain.callers import Caller
from topup.domain.errors import TopupError
from topup.services.context import Services


async def authenticate_token(services: Services, token: str) -> Caller:
    """The account a bearer token belongs to; 401 ``token_invalid`` if unknown, expired or
    revoked."""
    raise TopupError("this sign-in token is not valid", code="token_invalid")
