"""The installable app: manifest, icons, service worker, offline page; channel ``app`` (R5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
