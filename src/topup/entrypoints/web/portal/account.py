"""A subscriber's account: sign-up, sign-in, cards, history, receipts, saved payment cards (R5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
