"""The account's use cases on fakes: web sessions (rotation, idle and absolute timeouts, seen at
most once a minute, sign-out on the server), saved payment cards (from a PSP token or a paid
renewal, never another account's, a bounded number) and a one-tap renewal made once per key,
and an account's history."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.mailed_links import confirmed_account
from tests.unit.fakes import GOOD_CARD, OnFakes, on_fakes
from topup.domain.errors import TopupError
from topup.domain.renewal import RenewalStatus
from topup.domain.saved_payment_cards import SAVED_PAYMENT_CARDS_MAX
from topup.entrypoints.spreadsheets import spreadsheet_safe
from topup.ports import PaymentCardDetails
from topup.services import account_history, saved_payment_cards, web_sessions
from topup.services.account_history import HistoryFilter
from topup.services.renewals import RenewalRequest, renew
from topup.settings import LimitSettings

EMAIL = "mei@example.com"
PASSWORD = "correct horse battery"
CARD = "+60123456789"
IDLE_S = 600
LIFETIME_S = 3600
LIMITS = LimitSettings(
    login_slowdown_s=0, web_session_idle_s=IDLE_S, web_session_lifetime_s=LIFETIME_S
)


async def _signed_in(fakes: OnFakes, replacing: str | None = None) -> str:
    issued = await web_sessions.sign_in(
        fakes.services,
        email=EMAIL,
        password=PASSWORD,
        client_address="203.0.113.7",
        replacing=replacing,
    )
    return issued.access_token


@pytest.fixture
async def fakes() -> OnFakes:
    found = await on_fakes(limits=LIMITS)
    await confirmed_account(found.services, email=EMAIL, password=PASSWORD)
    return found


def _account_id(fakes: OnFakes) -> str:
    [account] = fakes.committed.accounts.values()
    return account.id


async def _ended(fakes: OnFakes, token: str) -> bool:
    try:
        await web_sessions.authenticate(fakes.services, token)
    except TopupError as error:
        assert error.code == "token_invalid"
        return True
    return False


# --- sessions ---------------------------------------------------------------------------------


async def test_a_session_lasts_the_web_sessions_lifetime_not_the_api_tokens(
    fakes: OnFakes,
) -> None:
    await _signed_in(fakes)

    [token] = fakes.committed.access_tokens.values()

    assert token.expires_at - token.created_at == dt.timedelta(seconds=LIFETIME_S)


async def test_signing_in_again_ends_the_session_named_before(fakes: OnFakes) -> None:
    old = await _signed_in(fakes)

    new = await _signed_in(fakes, replacing=old)

    assert await _ended(fakes, old)
    assert not await _ended(fakes, new)


async def test_a_session_idle_too_long_ends_and_is_revoked(fakes: OnFakes) -> None:
    token = await _signed_in(fakes)
    fakes.clock.advance(IDLE_S)

    assert await _ended(fakes, token)
    [stored] = fakes.committed.access_tokens.values()
    assert stored.revoked_at is not None


async def test_a_session_in_use_ends_at_its_absolute_lifetime(fakes: OnFakes) -> None:
    token = await _signed_in(fakes)
    for _ in range(LIFETIME_S // (IDLE_S // 2) - 1):
        fakes.clock.advance(IDLE_S // 2)
        assert not await _ended(fakes, token)

    fakes.clock.advance(IDLE_S // 2)

    assert await _ended(fakes, token)


async def test_when_a_session_was_seen_is_written_at_most_once_a_minute(fakes: OnFakes) -> None:
    token = await _signed_in(fakes)
    commits = fakes.database.commits
    for _ in range(5):
        fakes.clock.advance(10)
        await web_sessions.authenticate(fakes.services, token)
    quiet = fakes.database.commits - commits

    fakes.clock.advance(20)  # a minute since the sign-in
    await web_sessions.authenticate(fakes.services, token)

    assert quiet == 0
    assert fakes.database.commits - commits == 1
    [stored] = fakes.committed.access_tokens.values()
    assert stored.last_seen_at == fakes.clock.now()


async def test_signing_out_revokes_the_session_and_twice_is_harmless(fakes: OnFakes) -> None:
    token = await _signed_in(fakes)

    await web_sessions.sign_out(fakes.services, token)
    await web_sessions.sign_out(fakes.services, token)

    assert await _ended(fakes, token)


# --- saved payment cards, one-tap renewal ----------------------------------------------------


async def _linked(fakes: OnFakes, number: str = CARD) -> str:
    async with fakes.services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=number)
        assert card is not None
        await uow.accounts.link_card(_account_id(fakes), card.id, at=fakes.clock.now())
        await uow.commit()
    return card.id


async def _token(fakes: OnFakes, card: PaymentCardDetails = GOOD_CARD) -> str:
    return (await fakes.services.gateway.tokenize(card)).token


async def test_a_payment_card_saved_twice_is_kept_once_without_its_number(
    fakes: OnFakes,
) -> None:
    account_id = _account_id(fakes)

    first = await saved_payment_cards.save_payment_token(
        fakes.services, account_id, await _token(fakes)
    )
    again = await saved_payment_cards.save_payment_token(
        fakes.services, account_id, await _token(fakes)
    )

    assert again.id == first.id
    [kept] = fakes.committed.saved_payment_cards.values()
    assert (kept.brand, kept.last4, kept.expiry_month, kept.expiry_year) == (
        "visa",
        "4242",
        12,
        2030,
    )
    assert GOOD_CARD.number not in repr(kept)
    assert kept.token_sealed != await _token(fakes)  # sealed at rest


async def test_a_token_the_psp_did_not_issue_is_refused(fakes: OnFakes) -> None:
    with pytest.raises(TopupError) as refused:
        await saved_payment_cards.save_payment_token(
            fakes.services, _account_id(fakes), "tok_sbx_forged.signature"
        )

    assert refused.value.code == "payment_token_invalid"


async def test_an_account_keeps_a_bounded_number_of_payment_cards(fakes: OnFakes) -> None:
    account_id = _account_id(fakes)
    numbers = [f"400000000000{index:03d}" for index in range(200)]
    valid = [n + str(d) for n in numbers for d in range(10) if _luhn(n + str(d))][
        : SAVED_PAYMENT_CARDS_MAX + 1
    ]
    for number in valid[:SAVED_PAYMENT_CARDS_MAX]:
        card = PaymentCardDetails(number, 12, 2030, "123")
        await saved_payment_cards.save_payment_token(
            fakes.services, account_id, await _token(fakes, card)
        )

    with pytest.raises(TopupError) as refused:
        card = PaymentCardDetails(valid[-1], 12, 2030, "123")
        await saved_payment_cards.save_payment_token(
            fakes.services, account_id, await _token(fakes, card)
        )

    assert refused.value.code == "saved_payment_cards_full"


def _luhn(number: str) -> bool:
    from topup.domain.card_number import luhn_is_valid

    return luhn_is_valid(number)


async def test_the_payment_card_of_another_accounts_renewal_cannot_be_saved(
    fakes: OnFakes,
) -> None:
    view = await renew(fakes.services, RenewalRequest(CARD, "pack_5gb_7d", GOOD_CARD))

    with pytest.raises(TopupError) as refused:
        await saved_payment_cards.save_from_renewal(fakes.services, _account_id(fakes), view.id)

    assert refused.value.code == "payment_card_not_savable"


async def test_a_one_tap_renewal_is_made_once_per_key_with_one_charge(fakes: OnFakes) -> None:
    account_id = _account_id(fakes)
    card_id = await _linked(fakes)
    paid = await renew(fakes.services, RenewalRequest(CARD, "pack_5gb_7d", GOOD_CARD))
    saved = await saved_payment_cards.save_from_renewal(fakes.services, account_id, paid.id)
    charges = len(fakes.gateway.charges)

    views = [
        await saved_payment_cards.renew_with_saved_card(
            fakes.services,
            account_id,
            card_id=card_id,
            plan_code="pack_5gb_7d",
            saved_id=saved.id,
            idempotency_key="one-checkout",
            channel="web",
        )
        for _ in range(3)
    ]

    assert len({view.id for view in views}) == 1
    assert len(fakes.gateway.charges) == charges + 1
    assert views[0].renewal.status is not RenewalStatus.DECLINED


async def test_a_one_tap_renewal_of_a_card_not_linked_is_refused(fakes: OnFakes) -> None:
    account_id = _account_id(fakes)
    saved = await saved_payment_cards.save_payment_token(
        fakes.services, account_id, await _token(fakes)
    )
    async with fakes.services.unit_of_work() as uow:
        card = await uow.cards.by_number(msisdn=CARD)
    assert card is not None

    with pytest.raises(TopupError) as refused:
        await saved_payment_cards.renew_with_saved_card(
            fakes.services,
            account_id,
            card_id=card.id,
            plan_code="pack_5gb_7d",
            saved_id=saved.id,
            idempotency_key="k",
            channel="web",
        )

    assert refused.value.code == "card_unknown"


async def test_another_accounts_saved_payment_card_cannot_pay(fakes: OnFakes) -> None:
    card_id = await _linked(fakes)

    with pytest.raises(TopupError) as refused:
        await saved_payment_cards.renew_with_saved_card(
            fakes.services,
            _account_id(fakes),
            card_id=card_id,
            plan_code="pack_5gb_7d",
            saved_id="not-mine",
            idempotency_key="k",
            channel="web",
        )

    assert refused.value.code == "saved_payment_card_unknown"


# --- history ----------------------------------------------------------------------------------


async def test_my_cards_measure_the_data_left_against_the_last_plan_applied(
    fakes: OnFakes,
) -> None:
    await _linked(fakes)
    await renew(fakes.services, RenewalRequest(CARD, "pack_5gb_7d", GOOD_CARD))
    await fakes.drain()

    [mine] = await account_history.my_cards(fakes.services, _account_id(fakes))

    assert mine.plan_data_mb == 5120
    assert mine.data_share_percent == 100  # 2 GB left before + 5 GB: more than the plan's


async def test_a_history_page_size_is_bounded(fakes: OnFakes) -> None:
    limit = fakes.services.limits.pages.history_limit_max

    with pytest.raises(TopupError) as refused:
        await account_history.history(
            fakes.services, _account_id(fakes), HistoryFilter(), page_size=limit + 1
        )

    assert refused.value.code == "limit_out_of_range"


@pytest.mark.parametrize("cell", ["=1+2", "+60123", "-3", "@SUM(A1)", "\tx", "\rx"])
def test_a_csv_cell_that_would_be_a_formula_is_written_as_text(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell


def test_a_plain_csv_cell_is_written_as_it_is() -> None:
    assert spreadsheet_safe("Pack 5 GB") == "Pack 5 GB"
