"""Errors of the topup domain.

Two families, never mixed:

    TopupError                      an expected failure: a value with a stable ``code``
    ├── InputError                  the caller gave something we cannot use (bad card number, bad expiry)
    ├── NotFoundError               the thing named does not exist (unknown card, unknown plan, unknown renewal)
    ├── ConflictError               the request clashes with what exists (idempotency key reused, card expired)
    ├── PaymentError                the payment cannot go ahead (declined, insufficient funds)
    └── WebhookError                a gateway's webhook we refuse (unsigned, forged, stale, malformed):
                                    a bad request (400), changing nothing

    InvariantError                  a bug: a rule that must always hold did not (unbalanced ledger entry,
                                    impossible state transition). It aborts the unit of work; it is never
                                    shown to a user as anything but "internal error".

Every ``TopupError`` says whether retrying the same request can help (``retryable``), so callers
do not have to guess from the message. Codes are lowercase snake case and never change meaning.
The English ``message`` is for logs and operators; ``params`` carries the dynamic values (an example
number, a plan code, an amount) that the translated texts in ``topup/messages/errors.toml`` need.
"""

from __future__ import annotations

from collections.abc import Mapping


class TopupError(Exception):
    """An expected failure with a stable code."""

    code: str = "topup_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        field: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.field = field
        self.params: dict[str, str] = dict(params or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InputError(TopupError):
    code = "invalid_input"


class NotFoundError(TopupError):
    code = "not_found"


class ConflictError(TopupError):
    code = "conflict"


class PaymentError(TopupError):
    code = "payment_failed"


class WebhookError(TopupError):
    code = "webhook_malformed"


class InvariantError(Exception):
    """A rule that must always hold did not. Raised, never caught by business code."""


def require(condition: bool, message: str) -> None:
    """Check an invariant; unlike ``assert`` this survives ``python -O``."""
    if not condition:
        raise InvariantError(message)
