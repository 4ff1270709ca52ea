"""Every way a bulk renewal's line can end is told as a sentence, in every language, filled with
the details its error gave (the plan, the example number, the card's expiry, the method's
maximum ...), never as the bare error code: the run's page and its result file show
``line_text``.

The lines are made to end each way for real, on fakes: the dry run's refusals (kept with the
run), every decline of the sandbox gateway's test cards, a price above the payment method's
maximum, the organisation's payment card gone or expired, the card gone."""

from __future__ import annotations

import dataclasses
import datetime as dt

from tests.fleets import PLAN, Fleet, make_fleet, work_bulk
from tests.unit.fakes import OnFakes, on_fakes
from topup.adapters import messages
from topup.adapters.gateways import sandbox
from topup.domain.fleets import BulkLine, BulkLineStatus
from topup.domain.money import Money
from topup.entrypoints.web.portal.fleet_bulk import line_text
from topup.entrypoints.web.portal.fleet_common import LINE_NOT_DONE
from topup.i18n import LOCALES, translations
from topup.ports import PaymentCardDetails
from topup.services.fleets import bulk, organisations

# Every decline the sandbox gateway's test cards give (one card for each of its codes).
DECLINE_CARDS = {
    decline.code: number
    for number, card in sorted(sandbox._SANDBOX_CARDS.items())
    if (decline := sandbox._DECLINES.get(card.behaviour)) is not None
}
# The codes the scenarios below must make a line end with: if one is not reached any more, the
# scenario stopped testing it.
EXPECTED_CODES = {
    "bulk_line_malformed",
    "bulk_line_duplicate",
    "card_number_wrong_length",
    "card_number_invalid_characters",
    "card_not_in_organisation",
    "plan_unknown",
    "plan_not_for_card_kind",
    "card_expired",
    "amount_above_method_maximum",
    "organisation_payment_card_missing",
    "payment_card_expired",
    "card_unknown",
    *DECLINE_CARDS,
}


async def _drain(fakes: OnFakes) -> None:
    for _ in range(20):
        await work_bulk(fakes.services)
        if not any(line.status.is_open for line, _ in fakes.committed.bulk_lines.values()):
            return
        fakes.clock.advance(fakes.services.limits.fleets.bulk_waiting_recheck_s + 1)
    raise AssertionError("bulk lines still open")


async def _pay_with(fakes: OnFakes, fleet: Fleet, number: str) -> None:
    fakes.committed.saved_payment_cards.clear()  # an account keeps a few; one at a time here
    token = (
        await fakes.services.gateway.tokenize(PaymentCardDetails(number, 12, 2030, "123"))
    ).token
    await organisations.set_payment_token_as_operator(fakes.services, fleet.organisation_id, token)


async def _run(fakes: OnFakes, fleet: Fleet, text: str) -> str:
    run = await bulk.start_run(fakes.services, fleet.admin_id, fleet.organisation_id, text)
    return run.id


def _card_id(fakes: OnFakes, msisdn: str) -> str:
    return next(card.id for card in fakes.committed.cards.values() if card.msisdn == msisdn)


async def _lines_ending_every_way(fakes: OnFakes, fleet: Fleet) -> list[BulkLine]:
    services = fakes.services
    cards = iter(fleet.msisdns)
    runs: list[str] = []
    # The dry run's refusals, kept with the run as its rejected lines.
    first, expired = next(cards), next(cards)
    card = fakes.committed.cards[_card_id(fakes, expired)]
    fakes.committed.cards[card.id] = dataclasses.replace(
        card, validity_end=services.clock.now() - dt.timedelta(days=400)
    )
    runs.append(
        await _run(
            fakes,
            fleet,
            "\n".join(
                [
                    f"{first},{PLAN}",
                    f"{first},{PLAN}",  # bulk_line_duplicate
                    "junk",  # bulk_line_malformed
                    f"12,{PLAN}",  # card_number_wrong_length
                    f"+6019x234567,{PLAN}",  # card_number_invalid_characters
                    f"{fleet.other_msisdns[0]},{PLAN}",  # card_not_in_organisation
                    f"{next(cards)},no_such_plan",  # plan_unknown
                    f"{next(cards)},postpaid_bill",  # plan_not_for_card_kind
                    f"{expired},{PLAN}",  # card_expired
                ]
            ),
        )
    )
    await _drain(fakes)
    # Each decline of the gateway, a card each (a declined renewal keeps its key's answer).
    for number in DECLINE_CARDS.values():
        await _pay_with(fakes, fleet, number)
        runs.append(await _run(fakes, fleet, f"{next(cards)},{PLAN}"))
        await _drain(fakes)
    await _pay_with(fakes, fleet, "4242424242424242")
    # A price above what the payment method takes (the plan's price changed after the check).
    plan = fakes.committed.plans[PLAN]
    dearer = "pack_30gb_30d"
    runs.append(await _run(fakes, fleet, f"{next(cards)},{dearer}"))
    kept = fakes.committed.plans[dearer]
    fakes.committed.plans[dearer] = dataclasses.replace(kept, price=Money(10**9, "MYR"))
    await _drain(fakes)
    fakes.committed.plans[dearer] = kept
    # The card gone between the check and the run.
    gone = next(cards)
    runs.append(await _run(fakes, fleet, f"{gone},{PLAN}"))
    removed = fakes.committed.cards.pop(_card_id(fakes, gone))
    await _drain(fakes)
    fakes.committed.cards[removed.id] = removed
    # The organisation's payment card taken away after the start.
    runs.append(await _run(fakes, fleet, f"{next(cards)},{PLAN}"))
    organisation = fakes.committed.organisations[fleet.organisation_id]
    fakes.committed.organisations[fleet.organisation_id] = dataclasses.replace(
        organisation, payment_card_id=None, payment_card_account_id=None
    )
    await _drain(fakes)
    fakes.committed.organisations[fleet.organisation_id] = organisation
    # The organisation's payment card expired by the time the worker takes the line.
    last = next(cards)
    card = fakes.committed.cards[_card_id(fakes, last)]
    fakes.committed.cards[card.id] = dataclasses.replace(
        card, validity_end=services.clock.now() + dt.timedelta(days=6 * 366)
    )
    runs.append(await _run(fakes, fleet, f"{last},{PLAN}"))
    fakes.clock.advance(5 * 366 * 24 * 3600)
    await _drain(fakes)
    assert plan is fakes.committed.plans[PLAN]
    lines: list[BulkLine] = []
    for run_id in runs:
        lines += await bulk.result_lines(services, None, fleet.organisation_id, run_id)
    return lines


async def test_every_code_a_line_can_end_with_is_told_as_a_sentence_in_every_language() -> None:
    fakes = await on_fakes()
    fleet = await make_fleet(fakes.services, cards=10 + len(DECLINE_CARDS))
    lines = await _lines_ending_every_way(fakes, fleet)
    ended = {line.error_code for line in lines if line.error_code}
    assert ended >= EXPECTED_CODES, sorted(EXPECTED_CODES - ended)
    assert all(
        line.status in (BulkLineStatus.REJECTED, BulkLineStatus.FAILED)
        for line in lines
        if line.error_code
    )
    for line in lines:
        if not line.error_code:
            assert line.status is BulkLineStatus.SUCCEEDED and line_text(line, "en") == ""
            continue
        entry = messages.entry(line.error_code)
        assert entry is not None, line.error_code
        assert entry.placeholders <= {*line.error_params, "plan", "number"}, line
        for locale in LOCALES:
            text = line_text(line, locale)
            assert text != line.error_code and line.error_code not in text, (locale, text)
            assert "{" not in text and text != translations(locale).gettext(LINE_NOT_DONE)
            assert text == entry.text[locale].format_map(
                {"plan": line.plan_code, "number": line.number, **line.error_params}
            )
    by_code = {line.error_code: line for line in lines if line.error_code}
    assert "12/30" in line_text(by_code["payment_card_expired"], "en")
    maximum = by_code["amount_above_method_maximum"].error_params["maximum"]
    assert maximum in line_text(by_code["amount_above_method_maximum"], "ms")
    assert "no_such_plan" in line_text(by_code["plan_unknown"], "zh_Hans")


def _line(code: str) -> BulkLine:
    return BulkLine(
        run_id="run",
        line_no=1,
        number="+60191234567",
        card_id=None,
        plan_code=PLAN,
        amount=Money.zero("MYR"),
        idempotency_key="k",
        status=BulkLineStatus.FAILED,
        error_code=code,
    )


def test_no_code_is_ever_shown_bare_even_without_its_params() -> None:
    """A line kept without its error's params (or a code the catalogue does not know) is still
    told by a sentence: the catalogue's, else the fleet pages' own."""
    codes = [entry.code for entry in messages.catalogue()]
    codes += [*bulk.UNPAID_CODES.values(), "no_such_code"]
    for code in codes:
        for locale in LOCALES:
            text = line_text(_line(code), locale)
            assert text and text != code and "{" not in text, (code, locale, text)
    assert all(messages.entry(code) is not None for code in bulk.UNPAID_CODES.values())
    assert line_text(_line("no_such_code"), "zh_Hans") == "此行未续费（原因见错误代码一栏）。"
