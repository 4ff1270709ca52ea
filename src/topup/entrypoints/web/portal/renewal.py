"""Renewing a card without an account: the card, its plans, the methods, paying (R2, R7)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
