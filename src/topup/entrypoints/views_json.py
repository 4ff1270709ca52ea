"""Views as JSON objects: the shapes the API answers with and ``--json`` prints (the HTTP
contract: see ``api.schemas``). Money as decimal text and minor units, times as ISO 8601 UTC,
enums by value; plan names in the caller's language."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from topup.domain.records import PaymentRecord, RenewalRecord
from topup.services.views import (
    ApiKeyView,
    CardHistory,
    CardPlans,
    CardView,
    MethodsOffer,
    PlanOffer,
    ReceiptView,
    RenewalView,
    TransactionsPage,
    iso,
)

if TYPE_CHECKING:  # the settlement's module is imported only by those who settle
    from topup.services.settlement import Finding, SettlementReport


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
        "data_exhausted": card.data_exhausted,
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


def renewal_json(view: RenewalView) -> dict[str, Any]:
    """A renewal with its payment and timeline. ``idempotency_key`` is the service's own key:
    the API leaves it out, ``--json`` prints it."""
    renewal = view.renewal
    data: dict[str, Any] = {
        "id": renewal.id,
        "status": renewal.status.value,
        "card_number": view.card_number,
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
            for step in view.timeline
        ],
    }
    if view.payment is not None:
        data["payment"] = payment_json(view.payment)
        if renewal.status.value == "requires_action":
            data["next_action"] = (
                {"type": "approve_in_wallet", "url": view.payment.action_url}
                if view.payment.action_url
                else {"type": "payment_password"}
            )
    return data


def payment_json(payment: PaymentRecord) -> dict[str, Any]:
    return {
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


def methods_json(offer: MethodsOffer, locale: str = "en") -> dict[str, Any]:
    return {
        "channel": offer.channel,
        "region": offer.region,
        "amount": offer.amount.decimal_text(),
        "amount_minor": offer.amount.minor,
        "currency": offer.amount.currency,
        "methods": [
            {
                "code": method.code,
                "kind": method.kind.value,
                "name": method.name(locale),
                "amount_min_minor": method.amount_min.minor,
                "amount_max_minor": method.amount_max.minor,
            }
            for method in offer.methods
        ],
        "reason": offer.reason,
    }


def receipt_json(receipt: ReceiptView, locale: str) -> dict[str, Any]:
    """The receipt, its plan's and method's names in ``locale``; paid at in UTC and local."""
    from topup.i18n import resolve_or_default  # here: kept out of the CLI's start-up

    chosen = resolve_or_default(locale)
    amount = receipt.amount
    return {
        "receipt_number": receipt.receipt_number,
        "verification_code": receipt.verification_code,
        "operator": receipt.operator,
        "paid_at": iso(receipt.paid_at),
        "paid_at_local": receipt.paid_at.astimezone(ZoneInfo(receipt.time_zone)).isoformat(),
        "time_zone": receipt.time_zone,
        "card_number": receipt.card_number,
        "card_kind": receipt.card_kind.value,
        "plan_code": receipt.plan_code,
        "plan_name": receipt.plan_name(chosen),
        "plan_names": dict(receipt.plan_names),
        "amount": amount.decimal_text(),
        "amount_minor": amount.minor,
        "currency": amount.currency,
        "payment": {
            "method": receipt.method,
            "method_name": receipt.method_name(chosen),
            "brand": receipt.brand,
            "last4": receipt.last4,
        },
        "renewal_id": receipt.renewal_id,
        "status": receipt.status.value,
        "refund": None
        if receipt.refunded_at is None
        else {
            "refunded_at": iso(receipt.refunded_at),
            "amount": amount.decimal_text(),
            "amount_minor": amount.minor,
            "currency": amount.currency,
        },
    }


def api_key_json(key: ApiKeyView) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "role": key.role.value,
        "channel": key.channel,
        "outlet": key.outlet,
        "region": key.region,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "status": key.status,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "detail": finding.detail,
        "line": finding.line,
        "payment_id": finding.payment_id,
        "renewal_id": finding.renewal_id,
        "gateway_reference": finding.gateway_reference,
    }


def settlement_json(report: SettlementReport) -> dict[str, Any]:
    return {
        "clean": report.clean,
        "gateway": report.gateway,
        "days": [day.isoformat() for day in report.days],
        "lines": report.lines,
        "matched": report.matched,
        "totals": report.totals,
        "counts": report.counts(),
        "discrepancies": [finding_json(finding) for finding in report.discrepancies],
        "in_progress": [finding_json(finding) for finding in report.in_progress],
    }
