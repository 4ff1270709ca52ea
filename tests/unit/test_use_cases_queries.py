"""Reading cards, on fakes: the services hand back typed views (Money, datetimes and enums
raw), and the JSON formatter keeps the API's shape."""

from __future__ import annotations

from tests.unit.fakes import GOOD_CARD, on_fakes
from topup.domain.cards import CardKind, CardStatus
from topup.domain.ledger import EntryKind
from topup.domain.money import Money
from topup.domain.renewal import RenewalStatus
from topup.entrypoints.views_json import card_json, history_json
from topup.services import queries
from topup.services.renewals import RenewalRequest, renew
from topup.services.views import CardView

ACTIVE_CARD = "+60123456789"


async def test_a_balance_is_a_view_with_money_and_times_kept_raw() -> None:
    fakes = await on_fakes()
    view = await queries.balance(fakes.services, ACTIVE_CARD)
    assert isinstance(view, CardView)
    assert view.kind is CardKind.PREPAID and view.status is CardStatus.ACTIVE
    assert view.credit == Money(500, "MYR")
    assert view.validity_end is not None and view.grace_end is not None
    assert view.grace_end > view.validity_end
    shown = card_json(view)
    assert (shown["credit"], shown["credit_minor"], shown["status"]) == ("5.00", 500, "active")
    assert shown["validity_end"].endswith("Z")


async def test_a_reload_shows_in_the_balance_and_the_history_after_activation() -> None:
    fakes = await on_fakes()
    renewal = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "reload_10", GOOD_CARD))
    await fakes.drain()
    assert (await queries.balance(fakes.services, ACTIVE_CARD)).credit == Money(1500, "MYR")
    history = await queries.history(fakes.services, ACTIVE_CARD, limit=10)
    assert [(r.id, r.status) for r in history.renewals] == [(renewal.id, RenewalStatus.COMPLETED)]
    assert [line.kind for line in history.ledger_entries][:2] == [
        EntryKind.ACTIVATION,
        EntryKind.CAPTURE,
    ]
    shown = history_json(history)
    assert shown["renewals"][0]["amount"] == "10.00"
    assert shown["card"]["credit_minor"] == 1500


async def test_the_plans_for_a_postpaid_card_are_priced_at_its_bill() -> None:
    fakes = await on_fakes()
    found = await queries.public_plans(fakes.services, card_number="+60198760001", channel="web")
    bill = [offer for offer in found.plans if offer.plan.code == "postpaid_bill"]
    assert [offer.price for offer in bill] == [found.card.bill_due]
    assert found.card.bill_due.minor > 0
