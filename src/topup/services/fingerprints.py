"""What a payment card or wallet account is known by in topup: the key of its payment-password lock, its
wrong-answer count and, for a wallet account, its daily limit.

A payment card is known by its PSP's fingerprint (the same for the same card number whatever the
expiry, the CVC or the token), so a card locked after too many wrong payment passwords stays
locked when it is tokenised again with another expiry. An payment_token without one (a wallet
account, a token made before fingerprints) is known by its token, which is the same for the same
canonical wallet account. Either way the key is our own keyed hash: nothing stored names the card.
"""

from __future__ import annotations

import json

from topup.ports import PaymentToken
from topup.services.context import Services


def payment_card_fingerprint(
    services: Services, gateway_name: str, payment_token: PaymentToken
) -> str:
    """The key topup keeps for this payment card or wallet account (see the module docstring)."""
    if payment_token.fingerprint:
        material = json.dumps(["payment-card", gateway_name, payment_token.fingerprint])
        return services.tokens.fingerprint(material)
    return services.tokens.fingerprint(payment_token.token)
