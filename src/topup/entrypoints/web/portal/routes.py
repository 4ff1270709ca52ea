"""The portal's routers: public pages, and the account's pages mounted behind a signed-in session."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from topup.entrypoints.web.portal import (
    account,
    help_pages,
    home,
    installable,
    recovery,
    reminders,
    renewal,
    renewal_payment,
    status,
)
from topup.entrypoints.web.shared.channels import Channel

router = APIRouter(include_in_schema=False)
router.include_router(home.router)
router.include_router(renewal.router)
router.include_router(renewal_payment.router)
router.include_router(status.router)
router.include_router(recovery.router)
router.include_router(help_pages.router)
router.include_router(installable.router)
router.include_router(account.router)  # its signed-in pages carry ``require_account`` themselves
router.include_router(reminders.router)  # unsubscribing from an e-mail's link: anyone
router.include_router(reminders.signed_in_router)  # carries ``require_account`` itself

HERE = Path(__file__).parent
CHANNEL = Channel(
    name="portal", router=router, templates=HERE / "templates", static=HERE / "static" / "portal"
)
