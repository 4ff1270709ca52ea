"""Saved payment cards: a payment card an account keeps for one-tap renewals (and, later,
auto-renewal). What is kept is the PSP's token (sealed at rest), our keyed hash of the PSP's
fingerprint of the card, and what the payer recognises it by: brand, last four digits, expiry.
Never the number, never the CVC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

SAVED_PAYMENT_CARDS_MAX = 10  # per account


@dataclass(frozen=True, slots=True)
class SavedPaymentCard:
    id: str
    account_id: str
    gateway: str  # the gateway that issued the token
    token_sealed: str  # the PSP's token, sealed (services.tokens.seal)
    fingerprint: str  # services.fingerprints.payment_card_fingerprint: one per payment card
    brand: str
    funding: str  # credit, debit, prepaid, unknown
    last4: str
    expiry_month: int
    expiry_year: int  # four digits
    created_at: dt.datetime

    def expired(self, year: int, month: int) -> bool:
        """Whether the card's expiry month is before (``year``, ``month``)."""
        return (self.expiry_year, self.expiry_month) < (year, month)
