"""The home page: enter a card number to renew it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from topup.entrypoints.web.shared.rendering import renderer_of

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    return renderer_of(request).render(request, "portal/home.html")
