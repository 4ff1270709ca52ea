"""Renewals: a request checked (``requests``), admitted and recorded with its payment
(``intake``), charged and its outcome recorded (``charges``), and read back (``reads``)."""

from topup.services.renewals.charges import (
    OPEN_RENEWAL_STATUSES,
    charge_of,
    record_charge_result,
    send_charge,
)
from topup.services.renewals.intake import amount_due, payment_card_locked, renew
from topup.services.renewals.reads import (
    find_card,
    get_renewal,
    renewal_unknown,
    renewal_with_payment,
)
from topup.services.renewals.requests import (
    IDEMPOTENCY_KEY_LENGTH_MAX,
    RenewalRequest,
    check_channel,
)

__all__ = [
    "IDEMPOTENCY_KEY_LENGTH_MAX",
    "OPEN_RENEWAL_STATUSES",
    "RenewalRequest",
    "amount_due",
    "charge_of",
    "check_channel",
    "find_card",
    "get_renewal",
    "payment_card_locked",
    "record_charge_result",
    "renew",
    "renewal_unknown",
    "renewal_with_payment",
    "send_charge",
]
