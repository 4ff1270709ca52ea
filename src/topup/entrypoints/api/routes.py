"""Every router of the HTTP API, in the order their paths are matched."""

from __future__ import annotations

from fastapi import APIRouter

from topup.entrypoints.api import cards, health, renewals, webhooks

ROUTERS: list[APIRouter] = [
    health.router,
    cards.router,
    renewals.router,
    webhooks.router,
]
