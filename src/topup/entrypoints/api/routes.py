"""Every router of the HTTP API, in the order their paths are matched."""

from __future__ import annotations

from fastapi import APIRouter

from topup.entrypoints.api import accounts as account_routes
from topup.entrypoints.api import cards, health, renewals, webhooks
from topup.entrypoints.api import receipts as receipt_routes
from topup.entrypoints.api import recovery as recovery_routes
from topup.entrypoints.api import reminders as reminder_routes
from topup.entrypoints.api import usage as usage_routes

ROUTERS: list[APIRouter] = [
    health.router,
    account_routes.router,
    cards.router,
    renewals.router,
    webhooks.router,
    receipt_routes.router,
    recovery_routes.router,
    reminder_routes.router,
    usage_routes.router,
]
