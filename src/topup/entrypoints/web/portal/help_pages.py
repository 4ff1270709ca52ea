"""Help: activation times per method, what each error means, how to reach support."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
