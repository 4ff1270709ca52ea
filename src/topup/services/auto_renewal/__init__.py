"""Auto-renewal and auto top-up (issue 11, part 3): settings (``settings``), the worker's pass
(``runs``: pre-checks, charges with retries, one charge per card and period), auto top-ups
(``top_ups``) and renewals paid from a card's credit (``credit``). The rules are pure, in
``topup.domain.auto_renewal``."""

from topup.services.auto_renewal.runs import run_auto_renewals
from topup.services.auto_renewal.settings import (
    AutoRenewalView,
    PaymentChoice,
    SetBy,
    UpcomingAutoRenewal,
    auto_renewal_of,
    fix_path,
    managed_by,
    set_auto_renewal,
    set_by_operator,
    set_for_account,
    turn_off,
    turn_off_allowed,
    turn_off_for_account,
    upcoming_auto_renewals,
)
from topup.services.auto_renewal.top_ups import run_auto_top_ups

__all__ = [
    "AutoRenewalView",
    "PaymentChoice",
    "SetBy",
    "UpcomingAutoRenewal",
    "auto_renewal_of",
    "fix_path",
    "managed_by",
    "run_auto_renewals",
    "run_auto_top_ups",
    "set_auto_renewal",
    "set_by_operator",
    "set_for_account",
    "turn_off",
    "turn_off_allowed",
    "turn_off_for_account",
    "upcoming_auto_renewals",
]
