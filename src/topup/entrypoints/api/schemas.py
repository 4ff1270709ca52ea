"""Shapes of the API's bodies, for validation and for the OpenAPI document. Writes refuse
unknown fields; every text has a bounded length."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from topup.entrypoints.api.health import Problem
from topup.entrypoints.http.problems import PROBLEM_MEDIA_TYPE

Channel = Literal["web", "store", "kiosk", "app", "api"]


# What any route may answer: a malformed request, a bad credential, a channel the credential
# does not sell through, an oversize body, invalid fields, too many requests, no database.
COMMON_PROBLEM_STATUSES = (400, 401, 403, 413, 422, 429, 503)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that can answer these error statuses (and the common ones)."""
    return {
        status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in sorted({*statuses, *COMMON_PROBLEM_STATUSES})
    }


class Write(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaymentIn(Write):
    method: str = Field(
        min_length=1, max_length=64, description="credit_card, debit_card, ewallet:<provider>"
    )
    token: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Cards: the token from the gateway's tokenisation endpoint.",
    )
    wallet_account: str | None = Field(
        None, min_length=1, max_length=32, description="E-wallets: the wallet's phone number."
    )


class RenewalIn(Write):
    card_number: str = Field(min_length=1, max_length=40, description="MSISDN or ICCID")
    plan: str = Field(min_length=1, max_length=64)
    channel: Channel | None = Field(
        None, description="web or app without an API key; a key sells through its own channel"
    )
    payment: PaymentIn
    email: str | None = Field(
        None,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Where to send the receipt once paid; card-number recovery also finds the "
        "card by this address.",
    )


class ConfirmIn(Write):
    answer: str = Field(min_length=1, max_length=256, description="Payment password or 3-D code")


class Read(BaseModel):
    model_config = ConfigDict(extra="allow")


class NextAction(Read):
    type: Literal["payment_password", "approve_in_wallet"]
    url: str | None = None


class TimelineStep(Read):
    to: str
    at: str | None


class PaymentOut(Read):
    status: str
    method: str
    last4: str


class RenewalOut(Read):
    id: str
    status: str
    card_number: str
    plan: str
    kind: str
    channel: str
    amount: str
    amount_minor: int
    currency: str
    created_at: str | None
    estimated_activation_by: str | None
    contact_support_after: str | None
    receipt_number: str | None = Field(description="Once paid; None before")
    verification_code: str | None = Field(
        None,
        description="Once paid: opens the receipt (GET /api/v1/receipts/{receipt_number}) "
        "without an account. Shown only to those who may read the renewal.",
    )
    timeline: list[TimelineStep]
    payment: PaymentOut | None = None
    next_action: NextAction | None = None
    client_secret: str | None = Field(
        None, description="Given once, at creation: lets this client read and confirm it."
    )


class CardPublic(Read):
    kind: str
    status: str
    validity_end: str | None
    grace_end: str | None
    currency: str


class PlanOut(Read):
    code: str
    name: str
    kind: str
    price: str
    price_minor: int
    currency: str
    data_quota_mb: int
    validity_days: int


class CardPlansOut(Read):
    card: CardPublic
    channel: str
    plans: list[PlanOut]


class MethodOut(Read):
    code: str
    kind: str
    name: str
    amount_min_minor: int
    amount_max_minor: int


class MethodsOut(Read):
    channel: str
    region: str | None
    amount: str
    amount_minor: int
    currency: str
    methods: list[MethodOut]
    reason: str | None


class CardOut(Read):
    """A card and its balance, read now (``services.queries.card_summary``)."""

    id: str
    msisdn: str
    iccid: str
    kind: str
    status: str
    currency: str
    credit: str
    credit_minor: int
    data_quota_mb: int
    data_exhausted: bool = Field(
        description="A prepaid card with no data left: no internet until it is renewed."
    )
    validity_end: str | None
    grace_end: str | None
    bill_due: str
    bill_due_minor: int
    bill_due_date: str | None


class TransactionOut(Read):
    renewal_id: str
    status: str
    plan: str
    amount: str
    amount_minor: int
    currency: str
    created_at: str | None
    receipt_number: str | None


class TransactionsOut(Read):
    card_number: str
    transactions: list[TransactionOut]
    next_cursor: str | None


class WebhookOut(Read):
    outcome: Literal["recorded", "duplicate", "unknown_payment"]


class CardIn(Write):
    number: str = Field(min_length=1, max_length=40)
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=0, le=9999)
    cvc: str = Field(min_length=1, max_length=8)


class TokenOut(Read):
    token: str
    brand: str
    funding: str
    last4: str
    exp_month: int
    exp_year: int
