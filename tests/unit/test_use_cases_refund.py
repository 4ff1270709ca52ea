"""Refunds, on fakes: a staff refund before activation, and a renewal the network refuses for
good, are refunded in full once; an applied renewal is not refunded."""

from __future__ import annotations

import pytest

from tests.unit.fakes import GOOD_CARD, on_fakes
from topup.domain.errors import TopupError
from topup.domain.ledger import EntryKind
from topup.domain.records import PaymentStatus
from topup.domain.renewal import RenewalStatus
from topup.services.activation import request_refund
from topup.services.renewals import RenewalRequest, get_renewal, renew

ACTIVE_CARD = "+60123456789"
REFUSED_BY_THE_NETWORK = "+60123400000"  # the demo's card the sandbox network never applies


async def test_a_staff_refund_before_activation_refunds_in_full_and_never_credits() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    credit_before = fakes.committed.cards[view.renewal.card_id].credit
    assert await request_refund(fakes.services, view.id, reason="network outage") == "queued"
    assert await request_refund(fakes.services, view.id, reason="again") == "already_queued"
    await fakes.drain()
    final = await get_renewal(fakes.services, view.id)
    assert final.renewal.status is RenewalStatus.REFUNDED
    assert final.payment is not None and final.payment.status is PaymentStatus.REFUNDED
    assert fakes.entries(EntryKind.REFUND) == [view.id]
    assert fakes.entries(EntryKind.ACTIVATION) == []
    assert fakes.committed.cards[view.renewal.card_id].credit == credit_before


async def test_an_applied_renewal_is_not_refunded_by_staff() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    await fakes.drain()
    with pytest.raises(TopupError) as caught:
        await request_refund(fakes.services, view.id, reason="changed my mind")
    assert caught.value.code == "renewal_not_refundable"
    assert fakes.entries(EntryKind.REFUND) == []


async def test_a_permanent_activation_failure_refunds_in_full_exactly_once() -> None:
    fakes = await on_fakes()
    view = await renew(
        fakes.services, RenewalRequest(REFUSED_BY_THE_NETWORK, "reload_10", GOOD_CARD)
    )
    await fakes.drain()
    final = await get_renewal(fakes.services, view.id)
    assert final.renewal.status is RenewalStatus.REFUNDED
    assert final.payment is not None and final.payment.status is PaymentStatus.REFUNDED
    assert fakes.entries(EntryKind.REFUND) == [view.id]
    assert fakes.committed.cards[view.renewal.card_id].credit.minor == 0
