"""The audit finds what is wrong: each kind of corruption is reported, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, update

from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.entrypoints.worker import work_once
from topup.ports import CardDetails
from topup.services.audit import audit
from topup.services.renewals import RenewalRequest, renew

GOOD_CARD = CardDetails(number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123")


async def _completed_reload(application: Application) -> str:
    services = application.services
    view = await renew(services, RenewalRequest("0123456789", "reload_10", GOOD_CARD))
    await work_once(services)
    report = await audit(services)
    assert report.clean, report.violations  # the corruption below is the only problem
    return view.id


def _drift_a_balance(renewal_id: str) -> Any:
    return update(t.account_balances).values(balance_minor=t.account_balances.c.balance_minor + 1)


def _drop_the_activation_entry(renewal_id: str) -> Any:
    return delete(t.ledger_postings).where(
        t.ledger_postings.c.entry_id.in_(
            t.ledger_entries.select()
            .with_only_columns(t.ledger_entries.c.id)
            .where(
                t.ledger_entries.c.renewal_id == renewal_id, t.ledger_entries.c.kind == "activation"
            )
        )
    )


def _unbalance_a_posting(renewal_id: str) -> Any:
    return update(t.ledger_postings).values(amount_minor=t.ledger_postings.c.amount_minor + 7)


def _credit_without_ledger(renewal_id: str) -> Any:
    return update(t.cards).where(t.cards.c.msisdn == "+60123456789").values(credit_minor=999_999)


def _activating_with_nothing_scheduled(renewal_id: str) -> Any:
    return update(t.renewals).where(t.renewals.c.id == renewal_id).values(status="activating")


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_drift_a_balance, "but its entries sum to"),
        (_drop_the_activation_entry, "has fewer than two postings"),
        (_unbalance_a_posting, "does not balance"),
        (_credit_without_ledger, "but its ledger account holds"),
        (_activating_with_nothing_scheduled, "with nothing scheduled to move it on"),
    ],
)
async def test_each_kind_of_corruption_is_reported(
    demo_app: Application, corrupt: Callable[[str], Any], expected: str
) -> None:
    renewal_id = await _completed_reload(demo_app)
    async with demo_app.engine.begin() as connection:
        await connection.execute(corrupt(renewal_id))
    report = await audit(demo_app.services)
    assert not report.clean
    assert any(expected in violation for violation in report.violations), report.violations


async def test_a_renewal_whose_entries_do_not_match_its_status_is_reported(
    demo_app: Application,
) -> None:
    renewal_id = await _completed_reload(demo_app)
    async with demo_app.engine.begin() as connection:
        await connection.execute(
            update(t.renewals).where(t.renewals.c.id == renewal_id).values(status="refunded")
        )
    report = await audit(demo_app.services)
    expected = "is refunded with 1 capture(s), 1 activation(s), 0 refund(s)"
    assert any(expected in violation for violation in report.violations), report.violations
