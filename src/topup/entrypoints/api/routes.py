"""Every router of the HTTP API, in the order their paths are matched."""

from __future__ import annotations

from fastapi import APIRouter

from topup.entrypoints.api import health

ROUTERS: list[APIRouter] = [
    health.router,
]
