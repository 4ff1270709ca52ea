"""`topup audit` on fakes: the in-memory audit recomputes what the SQL one does, so a use case
run on fakes can end with an audit, and a violation planted in the committed tables is found."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.fakes import GOOD_CARD, on_fakes
from topup.domain.ledger import card_credit_account
from topup.domain.records import JobKind, JobOutcome, JobStatus, JobSubject
from topup.services.activation import request_refund
from topup.services.audit import audit
from topup.services.renewals import RenewalRequest, renew

ACTIVE_CARD = "+60123456789"
REFUSED_BY_THE_NETWORK = "+60123400000"  # the demo's card the sandbox network never applies


async def test_renewals_applied_refused_and_refunded_on_fakes_leave_a_clean_audit() -> None:
    fakes = await on_fakes()
    applied = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    refused = await renew(
        fakes.services, RenewalRequest(REFUSED_BY_THE_NETWORK, "reload_10", GOOD_CARD)
    )
    await fakes.drain()
    refunded = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "pack_5gb_7d", GOOD_CARD))
    assert await request_refund(fakes.services, refunded.id, reason="network outage") == "queued"
    await fakes.drain()
    report = await audit(fakes.services)
    assert report.violations == []
    assert report.checked["renewals"] == 3
    assert report.checked["cards"] == len(fakes.committed.cards)
    assert {applied.id, refused.id, refunded.id} <= set(fakes.committed.renewals)


async def test_a_balance_changed_behind_the_ledger_is_reported_on_fakes() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    await fakes.drain()
    card_id = view.renewal.card_id
    key = (card_credit_account(card_id), view.renewal.amount.currency)
    fakes.committed.balances[key] -= 1  # one sen of credit the ledger never gave
    report = await audit(fakes.services)
    assert len(report.violations) == 2
    assert report.violations[0].startswith(f"balance of {key[0]} (MYR) is ")
    assert report.violations[1].startswith(f"card {card_id} shows credit ")


async def test_a_refunded_renewal_the_network_applied_is_reported_on_fakes() -> None:
    fakes = await on_fakes()
    view = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    assert await request_refund(fakes.services, view.id, reason="network outage") == "queued"
    await fakes.drain()
    jobs = fakes.committed.jobs
    [activation] = [
        job
        for job in jobs.values()
        if job.kind is JobKind.ACTIVATE and job.subject == JobSubject.renewal(view.id)
    ]
    # The race of issue 9 A1: the worker's answer from the network arrives after the refund.
    jobs[activation.id] = replace(activation, status=JobStatus.DONE, outcome=JobOutcome.APPLIED)
    report = await audit(fakes.services)
    assert report.violations == [
        f"renewal {view.id} was refunded but the network applied it (activation job "
        f"{activation.id}): the subscriber has the data and the money"
    ]
