"""What services hand back to entrypoints: plain data, ready for JSON or a table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from topup.domain.records import PaymentRecord, RenewalRecord
from topup.domain.renewal import Transition


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RenewalView:
    renewal: RenewalRecord
    payment: PaymentRecord | None
    timeline: list[Transition] = field(default_factory=list)
    card_number: str = ""
    replayed: bool = False

    @property
    def id(self) -> str:
        return self.renewal.id

    @property
    def status(self) -> str:
        return self.renewal.status.value

    def to_dict(self) -> dict[str, Any]:
        renewal = self.renewal
        data: dict[str, Any] = {
            "id": renewal.id,
            "status": renewal.status.value,
            "card_number": self.card_number,
            "plan": renewal.plan_code,
            "kind": renewal.kind.value,
            "channel": renewal.channel,
            "amount": renewal.amount.decimal_text(),
            "amount_minor": renewal.amount.minor,
            "currency": renewal.amount.currency,
            "decline_code": renewal.decline_code,
            "created_at": iso(renewal.created_at),
            "paid_at": iso(renewal.paid_at),
            "completed_at": iso(renewal.completed_at),
            "estimated_activation_by": iso(renewal.expected_by),
            "contact_support_after": iso(renewal.contact_after),
            "idempotency_key": renewal.idempotency_key,
            "receipt_number": renewal.receipt_number if renewal.paid_at is not None else None,
            "timeline": [
                {
                    "from": None if step.from_status is None else step.from_status.value,
                    "to": step.to_status.value,
                    "at": iso(step.at),
                    "reason": step.reason,
                }
                for step in self.timeline
            ],
        }
        if self.payment is not None:
            payment = self.payment
            data["payment"] = {
                "status": payment.status,
                "method": payment.method,
                "brand": payment.brand,
                "funding": payment.funding,
                "last4": payment.last4,
                "expiry": f"{payment.expiry_month:02d}/{payment.expiry_year % 100:02d}"
                if payment.expiry_month
                else None,
                "gateway_reference": payment.gateway_reference,
                "decline_code": payment.decline_code,
                "next_check_at": iso(payment.next_check_at),
                "flagged_for_staff": payment.flagged_for_staff,
            }
            if renewal.status.value == "requires_action":
                data["next_action"] = (
                    {"type": "approve_in_wallet", "url": payment.action_url}
                    if payment.action_url
                    else {"type": "payment_password"}
                )
        return data
