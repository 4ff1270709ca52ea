"""Where a renewal stands, as its status page shows it (R9): the renewal and its timeline, what
it waits for, when it is expected to take effect for its method and network, when to contact
customer service, and the reference to quote. For those who may read the renewal
(``services.access.visible_renewal``: the holder of its client secret, the card's owner, staff)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.callers import Caller
from topup.domain.card_number import CardNumber, CardNumberKind
from topup.domain.methods import MethodKind, PaymentMethod
from topup.domain.renewal import RenewalStatus, estimate_activation
from topup.services.access import visible_renewal
from topup.services.context import Services
from topup.services.receipts import paid_receipt_code
from topup.services.renewals.charges import activation_times_s
from topup.services.views import RenewalView


class Waiting(StrEnum):
    """What a renewal waits for from the payer, if anything."""

    NOTHING = "nothing"
    WALLET = "wallet"  # approval in the e-wallet's app (or its page)
    PASSWORD = "password"  # noqa: S105 - the payment password / 3-D Secure step, not one


@dataclass(frozen=True)
class RenewalStatusView:
    renewal: RenewalView
    card_number: str  # masked
    plan_names: Mapping[str, str]  # by locale; empty if the plan was withdrawn
    method: PaymentMethod | None  # as configured; None if unknown
    waiting: Waiting
    wallet_url: str | None  # where the payer approves in the wallet, while it waits for that
    typical_delay: dt.timedelta  # from payment to activation, usually
    late_after: dt.timedelta  # from payment; past it, the payer should contact customer service
    expected_by: dt.datetime | None  # once paid
    contact_after: dt.datetime | None  # once paid
    verification_code: str | None  # the receipt's, once paid

    @property
    def id(self) -> str:
        return self.renewal.id

    @property
    def status(self) -> RenewalStatus:
        return self.renewal.renewal.status

    @property
    def is_final(self) -> bool:
        return self.status.is_terminal

    @property
    def receipt_number(self) -> str | None:
        renewal = self.renewal.renewal
        return renewal.receipt_number if renewal.paid_at is not None else None

    def plan_name(self, locale: str) -> str:
        return (
            self.plan_names.get(locale)
            or self.plan_names.get("en")
            or self.renewal.renewal.plan_code
        )

    def method_name(self, locale: str) -> str:
        if self.method is not None:
            return self.method.name(locale)
        return self.renewal.payment.method if self.renewal.payment is not None else ""

    def is_late(self, now: dt.datetime) -> bool:
        """Paid, not yet applied, and past the time to contact customer service."""
        return (
            self.status is RenewalStatus.ACTIVATING
            and self.contact_after is not None
            and now >= self.contact_after
        )

    def version(self) -> str:
        """Changes whenever what the page shows of the renewal changes."""
        renewal = self.renewal.renewal
        payment = self.renewal.payment
        return "|".join(
            (
                renewal.status.value,
                renewal.updated_at.isoformat(),
                str(len(self.renewal.timeline)),
                "" if payment is None else payment.status.value,
            )
        )


def _waiting(view: RenewalView, method: PaymentMethod | None) -> tuple[Waiting, str | None]:
    if view.renewal.status is not RenewalStatus.REQUIRES_ACTION or view.payment is None:
        return Waiting.NOTHING, None
    if view.payment.action_url or (method is not None and method.kind is MethodKind.EWALLET):
        return Waiting.WALLET, view.payment.action_url
    return Waiting.PASSWORD, None


async def renewal_status(
    services: Services, caller: Caller, renewal_id: str, client_secret: str | None
) -> RenewalStatusView:
    """The renewal's status page, if the caller may read it; else ``renewal_unknown`` (404)."""
    view = await visible_renewal(services, caller, renewal_id, client_secret)
    renewal = view.renewal
    async with services.unit_of_work() as uow:
        plan = await uow.plans.get(renewal.plan_code)
    method = services.methods.get(view.payment.method) if view.payment is not None else None
    waiting, wallet_url = _waiting(view, method)
    typical_s, late_s = activation_times_s(
        services, view.payment.method if view.payment is not None else ""
    )
    expected_by, contact_after = renewal.expected_by, renewal.contact_after
    if renewal.paid_at is not None and (expected_by is None or contact_after is None):
        estimate = estimate_activation(
            paid_at=renewal.paid_at, typical_delay_s=typical_s, late_after_s=late_s
        )
        expected_by, contact_after = estimate.expected_by, estimate.contact_after
    return RenewalStatusView(
        renewal=view,
        card_number=CardNumber(CardNumberKind.MSISDN, view.card_number).masked()
        if view.card_number
        else "",
        plan_names=dict(plan.names) if plan is not None else {},
        method=method,
        waiting=waiting,
        wallet_url=wallet_url,
        typical_delay=dt.timedelta(seconds=typical_s),
        late_after=dt.timedelta(seconds=late_s),
        expected_by=expected_by,
        contact_after=contact_after,
        verification_code=paid_receipt_code(services, renewal),
    )
