"""The sandbox e-wallet's approval page: the payer approves or refuses a payment in the wallet (on a phone, or by scanning a QR code)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
