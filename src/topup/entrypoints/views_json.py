"""Views as JSON objects: the shapes the API answers with and ``--json`` prints (the HTTP
contract: see ``api.schemas``). Money as decimal text and minor units, times as ISO 8601 UTC,
enums by value; plan names in the caller's language."""

from __future__ import annotations

from typing import Any

from topup.domain.records import RenewalRecord
from topup.services.views import (
    CardHistory,
    CardPlans,
    CardView,
    PlanOffer,
    TransactionsPage,
    iso,
)


def card_json(card: CardView) -> dict[str, Any]:
    return {
        "id": card.id,
        "msisdn": card.msisdn,
        "iccid": card.iccid,
        "kind": card.kind.value,
        "status": card.status.value,
        "currency": card.currency,
        "credit": card.credit.decimal_text(),
        "credit_minor": card.credit.minor,
        "data_quota_mb": card.data_quota_mb,
        "validity_end": iso(card.validity_end),
        "grace_end": iso(card.grace_end),
        "bill_due": card.bill_due.decimal_text(),
        "bill_due_minor": card.bill_due.minor,
        "bill_due_date": iso(card.bill_due_date),
    }


def plan_json(offer: PlanOffer, locale: str) -> dict[str, Any]:
    plan = offer.plan
    return {
        "code": plan.code,
        "name": plan.name(locale),
        "kind": plan.kind.value,
        "price": offer.price.decimal_text(),
        "price_minor": offer.price.minor,
        "currency": offer.price.currency,
        "data_quota_mb": plan.data_quota_mb,
        "validity_days": plan.validity_days,
        "card_kinds": sorted(kind.value for kind in plan.card_kinds),
        "channels": sorted(plan.channels),
    }


def card_plans_json(found: CardPlans, locale: str) -> dict[str, Any]:
    """Nothing personal about the card: no holder, credit or data left."""
    card = found.card
    return {
        "card": {
            "kind": card.kind.value,
            "status": card.status.value,
            "validity_end": iso(card.validity_end),
            "grace_end": iso(card.grace_end),
            "currency": card.currency,
        },
        "channel": found.channel,
        "plans": [plan_json(offer, locale) for offer in found.plans],
    }


def history_json(history: CardHistory) -> dict[str, Any]:
    return {
        "card": card_json(history.card),
        "renewals": [
            {
                "id": r.id,
                "status": r.status.value,
                "plan": r.plan_code,
                "channel": r.channel,
                "amount": r.amount.decimal_text(),
                "currency": r.amount.currency,
                "created_at": iso(r.created_at),
                "completed_at": iso(r.completed_at),
            }
            for r in history.renewals
        ],
        "card_events": [
            {"kind": e.kind, "at": iso(e.at), "detail": e.detail} for e in history.card_events
        ],
        "ledger_entries": [
            {"id": line.id, "kind": line.kind.value, "memo": line.memo, "at": iso(line.at)}
            for line in history.ledger_entries
        ],
    }


def transaction_json(renewal: RenewalRecord) -> dict[str, Any]:
    return {
        "renewal_id": renewal.id,
        "status": renewal.status.value,
        "kind": renewal.kind.value,
        "plan": renewal.plan_code,
        "channel": renewal.channel,
        "amount": renewal.amount.decimal_text(),
        "amount_minor": renewal.amount.minor,
        "currency": renewal.amount.currency,
        "created_at": iso(renewal.created_at),
        "paid_at": iso(renewal.paid_at),
        "completed_at": iso(renewal.completed_at),
        "receipt_number": renewal.receipt_number if renewal.paid_at is not None else None,
    }


def transactions_json(page: TransactionsPage) -> dict[str, Any]:
    return {
        "card_number": page.card_number,
        "transactions": [transaction_json(renewal) for renewal in page.renewals],
        "next_cursor": page.next_cursor,
    }
