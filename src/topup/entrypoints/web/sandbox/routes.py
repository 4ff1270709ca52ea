"""The sandbox providers' pages, as one channel of their own."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from topup.entrypoints.web.sandbox import psp, wallet
from topup.entrypoints.web.shared.channels import Channel

router = APIRouter(include_in_schema=False)
router.include_router(psp.router)
router.include_router(wallet.router)

HERE = Path(__file__).parent
CHANNEL = Channel(
    name="sandbox", router=router, templates=HERE / "templates", static=HERE / "static" / "sandbox"
)
