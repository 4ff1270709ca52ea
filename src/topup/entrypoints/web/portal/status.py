"""Where a renewal stands (live), its receipt on screen, as PDF and by e-mail (R9)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
