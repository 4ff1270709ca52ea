"""Payment methods: what each operator offers, where, and the answer when a method is not there."""

from __future__ import annotations

import pytest

from topup.adapters.methods import load_methods
from topup.adapters.profiles import load_profile
from topup.domain.errors import TopupError
from topup.domain.methods import MethodKind, MethodRegistry, methods_from_toml, wallet_account_of
from topup.domain.money import Money

MALAYSIA = load_methods(load_profile("my"))
INDONESIA = load_methods(load_profile("id"))
TEN_RINGGIT = Money(1000, "MYR")


def refusal(registry: MethodRegistry, code: str, **where: object) -> TopupError:
    arguments: dict[str, object] = {"channel": "web", "region": None, "amount": TEN_RINGGIT}
    arguments.update(where)
    with pytest.raises(TopupError) as caught:
        registry.choose(code, **arguments)  # type: ignore[arg-type]
    return caught.value


def test_malaysia_ships_cards_its_four_ewallets_cash_and_two_methods_switched_off() -> None:
    codes = [method.code for method in MALAYSIA.methods]
    assert codes[:2] == ["credit_card", "debit_card"]
    ewallets = {m.code for m in MALAYSIA.methods if m.kind is MethodKind.EWALLET}
    assert ewallets == {"ewallet:tng", "ewallet:grabpay", "ewallet:boost", "ewallet:shopeepay"}
    assert MALAYSIA.get("cash") is not None and MALAYSIA.get("cash").channels == {"store"}  # type: ignore[union-attr]
    assert not MALAYSIA.get("alipay").enabled  # type: ignore[union-attr]
    assert not MALAYSIA.get("wechat_pay").enabled  # type: ignore[union-attr]


def test_indonesia_ships_its_five_ewallets() -> None:
    ewallets = {m.code for m in INDONESIA.methods if m.kind is MethodKind.EWALLET}
    assert ewallets == {
        "ewallet:gopay",
        "ewallet:ovo",
        "ewallet:dana",
        "ewallet:shopeepay",
        "ewallet:linkaja",
    }
    assert all(method.amount_min.currency == "IDR" for method in INDONESIA.methods)


def test_a_switched_off_method_is_refused_with_the_methods_that_are_available() -> None:
    error = refusal(MALAYSIA, "wechat_pay")
    assert error.code == "method_disabled"
    assert error.message == (
        "WeChat Pay is not available. You can pay by credit card, debit card, "
        "Touch 'n Go eWallet, GrabPay, Boost or ShopeePay."
    )


def test_an_unknown_method_is_refused_with_its_own_code() -> None:
    assert refusal(MALAYSIA, "bitcoin").code == "method_unknown"


def test_cash_is_taken_by_store_staff_only() -> None:
    assert refusal(MALAYSIA, "cash").code == "method_not_offered_here"
    store = MALAYSIA.choose("cash", channel="store", region="penang", amount=TEN_RINGGIT)
    assert store.kind is MethodKind.CASH


@pytest.mark.parametrize(
    ("region", "offered"), [("klang_valley", True), ("penang", True), ("sabah", False)]
)
def test_a_kiosk_offers_a_regional_ewallet_only_in_its_regions(region: str, offered: bool) -> None:
    methods = {m.code for m in MALAYSIA.offered(channel="kiosk", region=region)}
    assert ("ewallet:grabpay" in methods) is offered
    assert "ewallet:tng" in methods  # offered everywhere


def test_the_website_offers_a_regional_ewallet_since_it_stands_in_no_region() -> None:
    assert MALAYSIA.choose("ewallet:grabpay", channel="web", region=None, amount=TEN_RINGGIT)


def test_a_kiosk_must_say_where_it_stands_and_name_a_known_region() -> None:
    assert refusal(MALAYSIA, "credit_card", channel="kiosk").code == "region_required"
    assert refusal(MALAYSIA, "credit_card", channel="kiosk", region="mars").code == (
        "region_unknown"
    )


def test_amounts_outside_a_methods_bounds_are_refused() -> None:
    too_small = refusal(MALAYSIA, "credit_card", amount=Money(99, "MYR"))
    assert too_small.code == "amount_below_method_minimum"
    too_large = refusal(MALAYSIA, "ewallet:tng", amount=Money(150001, "MYR"))
    assert too_large.code == "amount_above_method_maximum"
    assert all(
        m.code != "ewallet:tng"
        for m in MALAYSIA.offered(channel="web", region=None, amount=Money(150001, "MYR"))
    )


VALID = """
regions = ["north"]
[methods.credit_card]
kind = "card"
names = { en = "credit card" }
channels = ["web"]
"""


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('regions = ["north"]', 'regions = ["North!"]'), "regions"),
        (('kind = "card"', 'kind = "crypto"'), "methods.credit_card.kind"),
        (('kind = "card"', 'kind = "ewallet"'), "methods.credit_card.kind"),
        (('channels = ["web"]', 'channels = ["fax"]'), "methods.credit_card.channels"),
        (('names = { en = "credit card" }', 'names = { ms = "kad" }'), "methods.credit_card.names"),
        (
            ('channels = ["web"]', 'channels = ["web"]\nregions = ["south"]'),
            "methods.credit_card.regions",
        ),
        (
            ('channels = ["web"]', 'channels = ["web"]\namount_min_minor = 0'),
            "methods.credit_card.amount_min_minor",
        ),
        (
            ('channels = ["web"]', 'channels = ["web"]\ncolour = "red"'),
            "methods.credit_card.colour",
        ),
    ],
)
def test_a_configuration_mistake_names_the_field_at_fault(
    change: tuple[str, str], field: str
) -> None:
    with pytest.raises(TopupError) as caught:
        methods_from_toml(VALID.replace(*change), currency="MYR")
    assert caught.value.code == "invalid_method_configuration"
    assert caught.value.field == field


def test_the_valid_example_configuration_loads() -> None:
    registry = methods_from_toml(VALID, currency="MYR")
    assert [method.code for method in registry.methods] == ["credit_card"]


MALAYSIAN_PROFILE = load_profile("my")
TNG = MALAYSIA.get("ewallet:tng")


@pytest.mark.parametrize(
    "typed", ["0123456781", "60123456781", "0060123456781", "+60 12-345 6781", "012 345 6781"]
)
def test_every_spelling_of_a_wallet_account_comes_to_one_e164_number(typed: str) -> None:
    assert TNG is not None
    assert wallet_account_of(TNG, typed, MALAYSIAN_PROFILE) == "+60123456781"


@pytest.mark.parametrize(
    "typed",
    [
        "0119007438",  # 011 numbers have eight digits after 011
        "0312345678",  # a Kuala Lumpur landline
        "+6591234567",  # a Singapore mobile number
        "896012345678901234",  # an ICCID
        "abc",
        "12345",
    ],
)
def test_a_wallet_account_that_is_not_a_mobile_number_of_the_region_has_its_own_code(
    typed: str,
) -> None:
    assert TNG is not None
    with pytest.raises(TopupError) as caught:
        wallet_account_of(TNG, typed, MALAYSIAN_PROFILE)
    assert caught.value.code == "wallet_account_invalid"
    assert caught.value.field == "payment.wallet_account"
    assert caught.value.params["example"]


def test_a_wallet_method_without_an_account_asks_for_one() -> None:
    assert TNG is not None
    with pytest.raises(TopupError) as caught:
        wallet_account_of(TNG, "  ", MALAYSIAN_PROFILE)
    assert caught.value.code == "wallet_account_required"


@pytest.mark.parametrize(
    ("code", "where", "refusal_code"),
    [
        ("alipay", {}, "method_disabled"),
        ("ewallet:tnG", {}, "method_unknown"),
        ("paypal", {}, "method_unknown"),
        ("cash", {}, "method_not_offered_here"),
        ("cash", {"channel": "store", "region": "penang"}, "method_not_supported"),
        ("ewallet:shopeepay", {"channel": "kiosk"}, "method_not_offered_here"),
        ("ewallet:grabpay", {"channel": "kiosk", "region": "sabah"}, "method_not_offered_here"),
    ],
)
def test_a_method_is_judged_without_its_details_or_the_amount(
    code: str, where: dict[str, object], refusal_code: str
) -> None:
    arguments: dict[str, object] = {"channel": "web", "region": None}
    arguments.update(where)
    with pytest.raises(TopupError) as caught:
        MALAYSIA.judge(code, **arguments)  # type: ignore[arg-type]
    assert caught.value.code == refusal_code


def test_a_method_topup_takes_here_passes_judgement() -> None:
    assert (
        MALAYSIA.judge("ewallet:tng", channel="store", region="penang").kind is MethodKind.EWALLET
    )


@pytest.mark.parametrize("region", [None, "atlantis"])
def test_a_kiosk_without_a_known_region_is_judged_by_its_channel_and_refused_at_admission(
    region: str | None,
) -> None:
    assert MALAYSIA.judge("ewallet:grabpay", channel="kiosk", region=region)
    with pytest.raises(TopupError) as caught:
        MALAYSIA.choose("ewallet:grabpay", channel="kiosk", region=region, amount=TEN_RINGGIT)
    assert caught.value.code in {"region_required", "region_unknown"}


def test_cash_is_not_offered_while_topup_cannot_take_it() -> None:
    offered = {m.code for m in MALAYSIA.offered(channel="store", region="penang")}
    assert "cash" not in offered and "credit_card" in offered
    everything = MALAYSIA.offered(channel="store", region="penang", kinds=frozenset(MethodKind))
    assert "cash" in {m.code for m in everything}
