"""The sandbox payment gateway answers every documented test number as documented."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass

import pytest

from topup.adapters import messages
from topup.adapters.gateways.sandbox import (
    CARD_GATEWAY_UNREACHABLE,
    CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED,
    CARD_SLOW_SETTLEMENT,
    CARD_TIMEOUT_CHARGE_TAKEN,
    CARD_TIMEOUT_NOTHING_TAKEN,
    SandboxGateway,
)
from topup.domain.errors import InputError
from topup.domain.money import Money
from topup.ports import (
    ChargeRequest,
    GatewayOutcome,
    PaymentCardDetails,
    PaymentToken,
    RefundOutcome,
)

SECRET = b"sandbox-test-secret"
NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC)
SETTLEMENT_DELAY_S = 120

SUCCEEDED = GatewayOutcome.SUCCEEDED
PENDING = GatewayOutcome.PENDING
DECLINED = GatewayOutcome.DECLINED
UNKNOWN = GatewayOutcome.UNKNOWN
NOT_SENT = GatewayOutcome.NOT_SENT


class MovableClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass(frozen=True)
class Case:
    number: str
    brand: str
    funding: str
    charge: GatewayOutcome
    retrieve: GatewayOutcome
    decline_code: str | None = None
    requires_action: str | None = None

    @property
    def cvc(self) -> str:
        return "1234" if self.brand == "amex" else "123"


CASES = [
    Case("4242424242424242", "visa", "credit", SUCCEEDED, SUCCEEDED),
    Case("4000056655665556", "visa", "debit", SUCCEEDED, SUCCEEDED),
    Case("5555555555554444", "mastercard", "credit", SUCCEEDED, SUCCEEDED),
    Case("5200828282828210", "mastercard", "debit", SUCCEEDED, SUCCEEDED),
    Case("378282246310005", "amex", "credit", SUCCEEDED, SUCCEEDED),
    Case("4000000000000002", "visa", "credit", DECLINED, DECLINED, "card_declined"),
    Case("4000000000009995", "visa", "credit", DECLINED, DECLINED, "insufficient_funds"),
    Case("4000000000000069", "visa", "credit", DECLINED, DECLINED, "expired_card"),
    Case("4000000000000127", "visa", "credit", DECLINED, DECLINED, "incorrect_cvc"),
    Case("4000000000000119", "visa", "credit", DECLINED, DECLINED, "processing_error"),
    Case("4000000000009987", "visa", "credit", DECLINED, DECLINED, "lost_card"),
    Case("4000000000009979", "visa", "credit", DECLINED, DECLINED, "stolen_card"),
    Case("4000000000006975", "visa", "credit", DECLINED, DECLINED, "card_velocity_exceeded"),
    Case("4000000000000341", "visa", "credit", DECLINED, DECLINED, "card_declined"),
    Case("4000000000000101", "visa", "credit", DECLINED, DECLINED, "incorrect_cvc"),
    Case("4100000000000019", "visa", "credit", DECLINED, DECLINED, "fraudulent"),
    Case("4000000000004954", "visa", "credit", DECLINED, DECLINED, "fraudulent"),
    Case("4000000000009235", "visa", "credit", SUCCEEDED, SUCCEEDED),
    Case("4000000000003220", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case("4000002760003184", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case("4000002500003155", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case("4000000000003063", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case("4000008400001629", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case("4000008260003178", "visa", "credit", PENDING, PENDING, None, "authenticate"),
    Case(
        CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED,
        "visa",
        "credit",
        DECLINED,
        DECLINED,
        "international_payments_not_allowed",
    ),
    Case(CARD_TIMEOUT_CHARGE_TAKEN, "visa", "credit", UNKNOWN, SUCCEEDED),
    Case(CARD_TIMEOUT_NOTHING_TAKEN, "visa", "credit", UNKNOWN, DECLINED, "charge_not_found"),
    Case(CARD_SLOW_SETTLEMENT, "visa", "credit", PENDING, PENDING),
    Case(CARD_GATEWAY_UNREACHABLE, "visa", "credit", NOT_SENT, DECLINED, "charge_not_found"),
    Case("4111111111111111", "visa", "credit", SUCCEEDED, SUCCEEDED),
]


def make_gateway(**overrides: object) -> SandboxGateway:
    options: dict[str, object] = {"secret": SECRET, "clock": lambda: NOW}
    options.update(overrides)
    return SandboxGateway(**options)  # type: ignore[arg-type]


def card(number: str, *, month: int = 12, year: int = 2030, cvc: str = "123") -> PaymentCardDetails:
    return PaymentCardDetails(number=number, expiry_month=month, expiry_year=year, cvc=cvc)


def charge_request(token: str, payment_id: str = "pay_1", minor: int = 3000) -> ChargeRequest:
    return ChargeRequest(
        payment_id=payment_id,
        token=token,
        amount=Money(minor, "MYR"),
        description="Renewal of 60123456789",
        requested_at=NOW,
    )


def token_claims(token: str) -> dict[str, object]:
    payload = token.removeprefix("tok_sbx_").split(".")[0]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


async def tokenize(gateway: SandboxGateway, case: Case) -> PaymentToken:
    return await gateway.tokenize(card(case.number, cvc=case.cvc))


# --- outcomes per test number ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.number)
async def test_each_test_number_charges_and_retrieves_as_documented(case: Case) -> None:
    gateway = make_gateway()
    payment_token = await tokenize(gateway, case)
    request = charge_request(payment_token.token)

    charged = await gateway.charge(request)
    retrieved = await gateway.retrieve(request)

    assert (charged.outcome, retrieved.outcome) == (case.charge, case.retrieve)
    assert retrieved.decline_code == case.decline_code
    assert charged.requires_action == case.requires_action
    assert retrieved.requires_action == case.requires_action
    if case.charge is DECLINED:
        assert charged.decline_code == case.decline_code


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.number)
async def test_each_test_number_has_the_documented_brand_and_funding(case: Case) -> None:
    payment_token = await tokenize(make_gateway(), case)

    assert (payment_token.brand, payment_token.funding) == (case.brand, case.funding)


async def test_a_charge_and_its_retrieval_share_one_reference_derived_from_the_payment_id() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4242424242424242"))

    first = await gateway.charge(charge_request(payment_token.token, "pay_a"))
    again = await make_gateway().retrieve(charge_request(payment_token.token, "pay_a"))
    other = await gateway.charge(charge_request(payment_token.token, "pay_b"))

    assert first.gateway_reference is not None
    assert first.gateway_reference.startswith("ch_sbx_")
    assert again.gateway_reference == first.gateway_reference
    assert other.gateway_reference != first.gateway_reference


async def test_a_gateway_that_was_unreachable_gives_no_reference() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card(CARD_GATEWAY_UNREACHABLE))

    result = await gateway.charge(charge_request(payment_token.token))

    assert result.gateway_reference is None


async def test_the_issuer_that_refuses_international_payments_is_foreign() -> None:
    payment_token = await make_gateway().tokenize(card(CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED))

    assert payment_token.issuer_country == "US"


async def test_an_unknown_outcome_says_when_to_ask_again() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card(CARD_TIMEOUT_CHARGE_TAKEN))

    result = await gateway.charge(charge_request(payment_token.token))

    assert result.retry_after_s is not None
    assert result.retry_after_s > 0


# --- slow settlement and authentication -----------------------------------------------------


async def test_a_slow_settlement_stays_pending_until_the_settlement_delay_has_passed() -> None:
    clock = MovableClock(NOW)
    gateway = make_gateway(clock=clock, settlement_delay_s=SETTLEMENT_DELAY_S)
    payment_token = await gateway.tokenize(card(CARD_SLOW_SETTLEMENT))
    request = charge_request(payment_token.token)

    charged = await gateway.charge(request)
    clock.now = NOW + dt.timedelta(seconds=SETTLEMENT_DELAY_S - 30)
    still_pending = await gateway.retrieve(request)
    clock.now = NOW + dt.timedelta(seconds=SETTLEMENT_DELAY_S)
    settled = await gateway.retrieve(request)

    assert charged.outcome is PENDING
    assert charged.retry_after_s == SETTLEMENT_DELAY_S
    assert still_pending.outcome is PENDING
    assert still_pending.retry_after_s == 30
    assert settled.outcome is SUCCEEDED
    assert settled.gateway_reference == charged.gateway_reference


async def test_the_documented_authentication_code_confirms_the_charge() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4000000000003220"))
    request = charge_request(payment_token.token)

    charged = await gateway.charge(request)
    confirmed = await gateway.confirm(request, "123456")

    assert charged.requires_action == "authenticate"
    assert confirmed.outcome is SUCCEEDED
    assert confirmed.gateway_reference == charged.gateway_reference


@pytest.mark.parametrize(
    ("number", "decline_code"),
    [
        ("4000002760003184", None),
        ("4000002500003155", None),
        ("4000000000003063", None),
        ("4000008400001629", "card_declined"),
        ("4000008260003178", "insufficient_funds"),
    ],
)
async def test_stripes_authentication_cards_ask_first_then_give_their_outcome(
    number: str, decline_code: str | None
) -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card(number))
    request = charge_request(payment_token.token)

    charged = await gateway.charge(request)
    wrong = await gateway.confirm(request, "654321")
    confirmed = await gateway.confirm(request, "123456")

    assert charged.outcome is PENDING
    assert charged.requires_action == "authenticate"
    assert wrong.outcome is DECLINED
    assert wrong.decline_code == "authentication_failed"
    assert confirmed.outcome is (SUCCEEDED if decline_code is None else DECLINED)
    assert confirmed.decline_code == decline_code
    assert confirmed.gateway_reference == charged.gateway_reference


async def test_a_wrong_authentication_code_declines_the_charge() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4000000000003220"))

    result = await gateway.confirm(charge_request(payment_token.token), "654321")

    assert result.outcome is DECLINED
    assert result.decline_code == "authentication_failed"


async def test_confirming_a_charge_that_needs_no_authentication_changes_nothing() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4000000000000002"))

    result = await gateway.confirm(charge_request(payment_token.token), "123456")

    assert result.outcome is DECLINED
    assert result.decline_code == "card_declined"


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.number)
async def test_a_token_never_contains_the_card_number_or_the_cvc(case: Case) -> None:
    payment_token = await tokenize(make_gateway(), case)
    claims = token_claims(payment_token.token)
    decoded = json.dumps(claims)

    assert payment_token.token.startswith("tok_sbx_")
    assert case.number not in payment_token.token
    assert case.number not in decoded
    assert case.number[:-4] not in decoded
    assert not {"number", "card_number", "pan", "cvc"} & claims.keys()
    assert claims["last4"] == case.number[-4:] == payment_token.last4


async def test_the_same_card_gives_the_same_token_in_every_process() -> None:
    first = await make_gateway().tokenize(card("4242424242424242"))
    second = await make_gateway().tokenize(card("4242 4242 4242 4242"))

    assert first == second


async def test_a_token_signed_with_another_secret_is_rejected() -> None:
    payment_token = await make_gateway(secret=b"another-secret").tokenize(card("4242424242424242"))

    with pytest.raises(InputError) as raised:
        await make_gateway().charge(charge_request(payment_token.token))

    assert raised.value.code == "payment_token_invalid"


async def test_a_token_whose_claims_were_edited_is_rejected() -> None:
    gateway = make_gateway()
    declined = await gateway.tokenize(card("4000000000000002"))
    claims = token_claims(declined.token)
    claims["behaviour"] = "succeeds"
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    signature = declined.token.split(".")[1]
    forged = f"tok_sbx_{payload}.{signature}"

    with pytest.raises(InputError) as raised:
        await gateway.charge(charge_request(forged))

    assert raised.value.code == "payment_token_invalid"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "tok_sbx_",
        "tok_sbx_abc",
        "tok_sbx_abc.def",
        "tok_sbx_." + "x" * 2000,
        "tok_sbx_\udc80.x",  # a lone surrogate, as a JSON string may carry
        "tok_sbx_é.é",
    ],
)
async def test_a_garbage_token_is_rejected_by_every_operation(token: str) -> None:
    gateway = make_gateway()
    request = charge_request(token)

    for operation in (gateway.charge, gateway.retrieve):
        with pytest.raises(InputError) as raised:
            await operation(request)
        assert raised.value.code == "payment_token_invalid"
    with pytest.raises(InputError):
        await gateway.refund(refund_id="ref_1", charge=request)


# --- card validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "code", "field"),
    [
        (
            card("4242-4242-4242-4242"),
            "payment_card_number_invalid_characters",
            "payment.card_number",
        ),
        (card("4242abcd42424242"), "payment_card_number_invalid_characters", "payment.card_number"),
        (card("42424242424"), "payment_card_number_wrong_length", "payment.card_number"),
        (card("42424242424242424242"), "payment_card_number_wrong_length", "payment.card_number"),
        (
            card("４２４２４２４２４２４２４２４２"),
            "payment_card_number_invalid_characters",
            "payment.card_number",
        ),
        (card("4242424242424241"), "payment_card_number_bad_check_digit", "payment.card_number"),
        (card("4242424242424242", month=0), "expiry_month_invalid", "payment.expiry"),
        (card("4242424242424242", month=13), "expiry_month_invalid", "payment.expiry"),
        (card("4242424242424242", year=2099), "expiry_year_invalid", "payment.expiry"),
        (card("4242424242424242", month=5, year=2025), "payment_card_expired", "payment.expiry"),
        (card("4242424242424242", month=12, year=2024), "payment_card_expired", "payment.expiry"),
        (card("4242424242424242", month=12, year=24), "payment_card_expired", "payment.expiry"),
        (card("4242424242424242", cvc="12"), "cvc_wrong_length", "payment.cvc"),
        (card("4242424242424242", cvc="1234"), "cvc_wrong_length", "payment.cvc"),
        (card("4242424242424242", cvc="12a"), "cvc_invalid_characters", "payment.cvc"),
        (card("378282246310005", cvc="123"), "cvc_wrong_length", "payment.cvc"),
    ],
)
async def test_invalid_card_details_are_refused_with_a_code_and_a_field(
    details: PaymentCardDetails, code: str, field: str
) -> None:
    with pytest.raises(InputError) as raised:
        await make_gateway().tokenize(details)

    assert (raised.value.code, raised.value.field) == (code, field)


async def test_an_error_message_never_repeats_the_card_number_or_cvc() -> None:
    with pytest.raises(InputError) as raised:
        await make_gateway().tokenize(card("4242424242424241", cvc="987"))

    assert "424242424242424" not in str(raised.value)
    assert "987" not in str(raised.value)


async def test_a_card_expiring_this_month_is_still_valid() -> None:
    payment_token = await make_gateway().tokenize(card("4242424242424242", month=6, year=2025))

    assert (payment_token.expiry_month, payment_token.expiry_year) == (6, 2025)


async def test_a_two_digit_expiry_year_is_read_as_this_century() -> None:
    payment_token = await make_gateway().tokenize(card("4242424242424242", month=1, year=30))

    assert payment_token.expiry_year == 2030


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("2223003122003222", "mastercard"),
        ("6200000000000005", "unionpay"),
        ("6011111111111117", "unknown"),
    ],
)
async def test_the_brand_comes_from_the_issuer_identification_number(
    number: str, brand: str
) -> None:
    payment_token = await make_gateway().tokenize(card(number))

    assert payment_token.brand == brand


async def test_a_charge_for_nothing_is_refused() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4242424242424242"))

    with pytest.raises(InputError) as raised:
        await gateway.charge(charge_request(payment_token.token, minor=0))

    assert raised.value.code == "invalid_amount"


# --- refunds --------------------------------------------------------------------------------


async def test_a_refund_succeeds_with_a_reference_derived_from_the_refund_id() -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card("4242424242424242"))
    request = charge_request(payment_token.token)

    first = await gateway.refund(refund_id="ref_1", charge=request)
    again = await make_gateway().refund(refund_id="ref_1", charge=request)
    other = await gateway.refund(refund_id="ref_2", charge=request)

    assert first.outcome is RefundOutcome.SUCCEEDED
    assert first.gateway_reference is not None
    assert first.gateway_reference.startswith("re_sbx_")
    assert again.gateway_reference == first.gateway_reference
    assert other.gateway_reference != first.gateway_reference


@pytest.mark.parametrize("number", ["4000000000000002", CARD_TIMEOUT_NOTHING_TAKEN])
async def test_a_charge_that_took_no_money_cannot_be_refunded(number: str) -> None:
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card(number))

    result = await gateway.refund(refund_id="ref_1", charge=charge_request(payment_token.token))

    assert result.outcome is RefundOutcome.FAILED


# --- injected faults ------------------------------------------------------------------------

FAULT_RATE = 0.2
PAYMENT_COUNT = 2_000


async def outcomes(gateway: SandboxGateway, token: str) -> list[tuple[str, str, str | None]]:
    answers = []
    for index in range(PAYMENT_COUNT):
        request = charge_request(token, f"pay_{index}")
        charged = await gateway.charge(request)
        retrieved = await gateway.retrieve(request)
        answers.append((charged.outcome.value, retrieved.outcome.value, retrieved.decline_code))
    return answers


async def test_injected_faults_replay_exactly_with_the_same_seed() -> None:
    token = (await make_gateway().tokenize(card("4242424242424242"))).token

    first = await outcomes(make_gateway(fault_rate=FAULT_RATE, seed=7), token)
    replay = await outcomes(make_gateway(fault_rate=FAULT_RATE, seed=7), token)
    other_seed = await outcomes(make_gateway(fault_rate=FAULT_RATE, seed=8), token)

    assert first == replay
    assert first != other_seed


async def test_injected_faults_hit_about_the_configured_rate_split_between_taken_and_not() -> None:
    token = (await make_gateway().tokenize(card("4242424242424242"))).token

    answers = await outcomes(make_gateway(fault_rate=FAULT_RATE, seed=3), token)

    unknown = [answer for answer in answers if answer[0] == "unknown"]
    taken = [answer for answer in unknown if answer[1] == "succeeded"]
    not_taken = [answer for answer in unknown if answer[1:] == ("declined", "charge_not_found")]
    assert 0.17 < len(unknown) / PAYMENT_COUNT < 0.23
    assert len(taken) + len(not_taken) == len(unknown)
    assert 0.4 < len(taken) / len(unknown) < 0.6
    assert all(
        answer == ("succeeded", "succeeded", None) for answer in answers if answer[0] != "unknown"
    )


async def test_without_a_fault_rate_no_charge_is_faulted() -> None:
    token = (await make_gateway().tokenize(card("4242424242424242"))).token

    answers = await outcomes(make_gateway(seed=3), token)

    assert {answer[0] for answer in answers} == {"succeeded"}


# --- Stripe's decline cards and card fingerprints --------------------------------------------

# Stripe's documented declines (docs.stripe.com/testing: declined payments and fraud prevention):
# number -> (Stripe's decline code, topup's code).
STRIPE_DECLINES = {
    "4000000000000002": ("generic_decline", "card_declined"),
    "4000000000009995": ("insufficient_funds", "insufficient_funds"),
    "4000000000009987": ("lost_card", "lost_card"),
    "4000000000009979": ("stolen_card", "stolen_card"),
    "4000000000000069": ("expired_card", "expired_card"),
    "4000000000000127": ("incorrect_cvc", "incorrect_cvc"),
    "4000000000000119": ("processing_error", "processing_error"),
    "4000000000006975": ("card_velocity_exceeded", "card_velocity_exceeded"),
    "4100000000000019": ("fraudulent", "fraudulent"),
}


@pytest.mark.parametrize("number", sorted(STRIPE_DECLINES))
async def test_each_of_stripes_decline_cards_is_declined_with_the_code_stripe_gives_it(
    number: str,
) -> None:
    stripe_code, topup_code = STRIPE_DECLINES[number]
    gateway = make_gateway()
    payment_token = await gateway.tokenize(card(number))
    result = await gateway.charge(charge_request(payment_token.token, payment_id=f"pay_{number}"))
    assert result.outcome is DECLINED
    assert result.decline_code == topup_code
    assert result.message is not None and f"Stripe: {stripe_code}" in result.message


def test_stripes_decline_codes_map_to_distinct_topup_codes_each_with_a_suggestion() -> None:
    topup_codes = [topup_code for _, topup_code in STRIPE_DECLINES.values()]
    assert len(set(topup_codes)) == len(topup_codes)
    for code in topup_codes:
        entry = messages.entry(code)
        assert entry is not None, code
        assert set(entry.text) == {"en", "zh_Hans", "ms", "id"}
        assert entry.suggestion.strip(), code


async def test_stripes_incorrect_number_card_is_refused_before_a_token_is_made() -> None:
    with pytest.raises(InputError) as caught:
        await make_gateway().tokenize(card("4242424242424241"))
    assert caught.value.code == "payment_card_number_bad_check_digit"


async def test_a_card_keeps_its_fingerprint_whatever_its_expiry_cvc_or_token() -> None:
    gateway = make_gateway()
    first = await gateway.tokenize(card("4000000000003220", month=12, year=2030, cvc="123"))
    again = await gateway.tokenize(card("4000000000003220", month=1, year=2031, cvc="999"))
    other = await gateway.tokenize(card("4242424242424242"))
    assert first.token != again.token
    assert first.fingerprint and first.fingerprint == again.fingerprint
    assert other.fingerprint != first.fingerprint
    assert (await gateway.payment_token_of(again.token)).fingerprint == first.fingerprint
    assert "3220" not in first.fingerprint and "4000000000003220" not in first.fingerprint


async def test_a_cards_fingerprint_depends_on_the_gateways_key() -> None:
    number = card("4242424242424242")
    mine = await make_gateway().tokenize(number)
    theirs = await make_gateway(secret=b"another-secret").tokenize(number)
    assert mine.fingerprint != theirs.fingerprint
