"""Finding a forgotten card number: by receipt, by registered e-mail, by support (R8)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
