"""The renewal state machine.

    pending_payment ──> requires_action ──> payment_pending ──> activating ──> completed
          │  │  │             │  │               │                 │
          │  │  └─────────────┼──┼───────────────┘ (paid at once)  └──> refunded
          │  └──> declined <──┴──┴─ (no money taken)
          └─────> cancelled <─┘     (abandoned before payment)

activating -> refunded happens for one of the ``RefundCause``s, which its reason names.

Every transition is recorded with its time and reason. Any other transition is a bug.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.errors import InvariantError


class RenewalStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    REQUIRES_ACTION = "requires_action"
    PAYMENT_PENDING = "payment_pending"
    ACTIVATING = "activating"
    COMPLETED = "completed"
    DECLINED = "declined"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        RenewalStatus.COMPLETED,
        RenewalStatus.DECLINED,
        RenewalStatus.REFUNDED,
        RenewalStatus.CANCELLED,
    }
)

_S = RenewalStatus
ALLOWED_TRANSITIONS: dict[RenewalStatus, frozenset[RenewalStatus]] = {
    _S.PENDING_PAYMENT: frozenset(
        {_S.REQUIRES_ACTION, _S.PAYMENT_PENDING, _S.ACTIVATING, _S.DECLINED, _S.CANCELLED}
    ),
    _S.REQUIRES_ACTION: frozenset({_S.PAYMENT_PENDING, _S.ACTIVATING, _S.DECLINED, _S.CANCELLED}),
    # cancelled: the gateway, asked again, wants a payer's step that never came (nothing taken)
    _S.PAYMENT_PENDING: frozenset({_S.REQUIRES_ACTION, _S.ACTIVATING, _S.DECLINED, _S.CANCELLED}),
    _S.ACTIVATING: frozenset({_S.COMPLETED, _S.REFUNDED}),
    _S.COMPLETED: frozenset(),
    _S.DECLINED: frozenset(),
    _S.REFUNDED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def can_transition(current: RenewalStatus, target: RenewalStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class Transition:
    from_status: RenewalStatus | None
    to_status: RenewalStatus
    at: dt.datetime
    reason: str


def transition(
    current: RenewalStatus, target: RenewalStatus, *, at: dt.datetime, reason: str
) -> Transition:
    """Validate a state change; an impossible one is an invariant error, never a silent no-op."""
    if not can_transition(current, target):
        raise InvariantError(f"renewal cannot go from {current.value} to {target.value}")
    return Transition(current, target, at, reason)


class RefundCause(StrEnum):
    """Why a paid renewal is refunded instead of applied; each gives its own timeline reason."""

    STAFF_REQUEST = "staff_request"  # staff asked, before the activation was sent
    ACTIVATION_FAILED = "activation_failed"  # the network refused it for good
    # The network did not apply it in time (its deadline passed, or it stayed busy through every
    # attempt): it may apply a later renewal.
    ACTIVATION_TIMED_OUT = "activation_timed_out"
    CARD_REFUSED = "card_refused"  # the card could no longer take it (its bill was paid)


_REFUND_REASONS = {
    RefundCause.STAFF_REQUEST: "refunded at staff request before activation: {detail}",
    RefundCause.ACTIVATION_FAILED: "activation failed permanently ({detail}); payment refunded in full",
    RefundCause.ACTIVATION_TIMED_OUT: "activation did not complete in time ({detail}); payment refunded in full",
    RefundCause.CARD_REFUSED: "the card could not take the renewal ({detail}); payment refunded in full",
}


def refund_reason(cause: RefundCause, detail: str) -> str:
    """The reason the timeline gives for ``activating -> refunded``, naming its cause."""
    return _REFUND_REASONS[cause].format(detail=detail)


def refund_cause(reason: str) -> RefundCause | None:
    """The cause a refund's timeline reason (made by ``refund_reason``, perhaps followed by more,
    e.g. "given back to the card's credit") names; None for a reason made otherwise."""
    for cause, template in _REFUND_REASONS.items():
        if reason.startswith(template.split("{detail}", 1)[0].rstrip(" (")):
            return cause
    return None


@dataclass(frozen=True, slots=True)
class ActivationEstimate:
    """When a paid renewal is expected to take effect, and whom to contact if it is late (R9)."""

    expected_by: dt.datetime
    contact_after: dt.datetime


def estimate_activation(
    *, paid_at: dt.datetime, typical_delay_s: int, late_after_s: int
) -> ActivationEstimate:
    return ActivationEstimate(
        expected_by=paid_at + dt.timedelta(seconds=typical_delay_s),
        contact_after=paid_at + dt.timedelta(seconds=late_after_s),
    )


def backoff_s(*, attempt: int, base_s: float, cap_s: float, jitter_fraction: float) -> float:
    """Exponential backoff with jitter. ``jitter_fraction`` in [0, 1) comes from the caller's randomness."""
    if attempt < 1:
        raise InvariantError("attempts are counted from 1")
    if not 0.0 <= jitter_fraction < 1.0:
        raise InvariantError("jitter fraction must be in [0, 1)")
    try:
        grown_s = math.ldexp(base_s, attempt - 1)  # base_s * 2 ** (attempt - 1), exactly
    except OverflowError:  # past the largest float, so past any cap
        grown_s = math.inf
    raw: float = min(cap_s, grown_s)
    return raw * (0.5 + jitter_fraction / 2)
