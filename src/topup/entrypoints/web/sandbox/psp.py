"""The sandbox PSP's pages: its hosted payment page (card details typed there, for browsers without JavaScript) and its tokeniser script."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
