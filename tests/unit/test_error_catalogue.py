"""The error catalogue: every code the platform can show has text in four languages, the texts of
one code agree on their placeholders, and real errors come out translated with nothing unfilled."""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from topup import i18n
from topup.adapters import messages
from topup.adapters.gateways import sandbox
from topup.adapters.gateways.sandbox import AUTHENTICATION_ANSWER, SandboxGateway
from topup.adapters.methods import load_methods
from topup.adapters.profiles import load_profile
from topup.domain.card_number import parse_card_number
from topup.domain.cards import CardKind
from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError
from topup.domain.money import Money
from topup.domain.payment_card import (
    UNKNOWN_CARD_FACTS,
    PaymentCardDetailsInvalid,
    check_card_details,
)
from topup.domain.plans import Plan, PlanKind
from topup.domain.profile_loading import profile_from_toml
from topup.ports import ChargeRequest, PaymentCardDetails

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "topup"
MALAYSIA = load_profile("my")
INDONESIA = load_profile("id")
NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
UNFILLED = re.compile(r"\{[^{}]*\}")

# `code="..."` keywords, class attributes `code = "..."` / `code: str = "..."`, and the command
# line's own `fail("...", ...)`.
_CODE_IN_SOURCE = re.compile(
    r"""\bcode(?:\s*:\s*str)?\s*=\s*"([a-z][a-z0-9_]*)"|\bfail\(\s*"([a-z][a-z0-9_]*)\""""
)
# Decline codes a service writes itself, as a positional argument the scan above cannot see.
DECLINE_CODES_SET_BY_SERVICES = frozenset({"gateway_unreachable"})
# Raise sites outside this change's files that name a placeholder's value in their English message
# but do not pass it in `params` yet: they show English until they do. Empty this list; never grow it.
PARAMS_NOT_YET_PASSED = frozenset(
    {
        ("adapters/profiles.py", "unknown_profile"),
        ("adapters/profiles.py", "invalid_profile"),
        ("adapters/profiles.py", "profile_file_unreadable"),
        ("adapters/methods.py", "methods_missing"),
        ("adapters/methods.py", "invalid_method_configuration"),
        ("adapters/methods.py", "methods_file_unreadable"),
        ("bootstrap.py", "gateway_unknown"),
    }
)


def _source_files() -> Iterator[Path]:
    yield from sorted(SOURCE.rglob("*.py"))


def codes_in_source() -> set[str]:
    found: set[str] = set()
    for path in _source_files():
        for match in _CODE_IN_SOURCE.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    return found | DECLINE_CODES_SET_BY_SERVICES


def _documented_sandbox_numbers() -> list[str]:
    assert sandbox.__doc__ is not None
    return re.findall(r"^(\d{15,16})\s", sandbox.__doc__, flags=re.MULTILINE)


async def sandbox_decline_codes() -> set[str]:
    """Every decline code the sandbox gives, found by paying with each documented test number."""
    clock = [NOW]
    gateway = SandboxGateway(secret=b"catalogue-test", clock=lambda: clock[0])
    found: set[str] = set()
    for number in _documented_sandbox_numbers():
        clock[0] = NOW
        cvc = "1234" if number[:2] in {"34", "37"} else "123"
        payment_token = await gateway.tokenize(PaymentCardDetails(number, 12, 2030, cvc))
        request = ChargeRequest(
            payment_id=f"pay-{number}",
            token=payment_token.token,
            amount=Money(1000, "MYR"),
            description="catalogue test",
            requested_at=NOW,
        )
        results = [
            await gateway.charge(request),
            await gateway.confirm(request, AUTHENTICATION_ANSWER[::-1]),
        ]
        clock[0] = NOW + dt.timedelta(days=1)  # past every settlement delay
        results.append(await gateway.retrieve(request))
        found |= {result.decline_code for result in results if result.decline_code}
    return found


def _entry(code: str) -> messages.CatalogueEntry:
    found = messages.entry(code)
    assert found is not None, f"{code} is not in the catalogue"
    return found


# --- every code has text ---------------------------------------------------------------------


def test_the_source_scan_finds_keyword_class_and_command_line_codes() -> None:
    found = codes_in_source()
    assert {"card_number_empty", "plan_unknown"} <= found  # code="..."
    assert {"not_found", "payment_failed", "topup_error"} <= found  # class attributes
    assert {"internal_error", "database_unavailable"} <= found  # fail("...") in the CLI
    assert {"expiry_invalid", "settlement_file_unreadable"} <= found  # only there
    assert "my" not in found  # profile files are not scanned


def test_every_code_raised_in_the_source_has_text_in_four_languages() -> None:
    missing = sorted(code for code in codes_in_source() if messages.entry(code) is None)
    assert missing == [], f"add these codes to src/topup/messages/errors.toml: {missing}"
    for code in codes_in_source():
        texts = _entry(code).text
        assert set(texts) == {"en", "zh_Hans", "ms", "id"}
        assert all(text.strip() for text in texts.values()), code


async def test_every_decline_code_of_the_sandbox_gateway_has_text_in_four_languages() -> None:
    declines = await sandbox_decline_codes()
    assert {
        "card_declined",
        "insufficient_funds",
        "expired_card",
        "incorrect_cvc",
        "processing_error",
        "international_payments_not_allowed",
        "authentication_failed",
        "charge_not_found",
    } <= declines
    assert sorted(code for code in declines if messages.entry(code) is None) == []


def test_every_language_of_a_code_names_the_same_placeholders() -> None:
    for entry in messages.catalogue():
        by_locale = {locale: messages.placeholders_of(text) for locale, text in entry.text.items()}
        assert set(by_locale.values()) == {entry.placeholders}, (entry.code, by_locale)


def test_no_language_is_left_as_a_copy_of_the_english_text() -> None:
    for entry in messages.catalogue():
        for locale in ("zh_Hans", "ms", "id"):
            assert entry.text[locale] != entry.text["en"], (entry.code, locale)
        assert re.search(r"[\u4e00-\u9fff]", entry.text["zh_Hans"]), entry.code


# --- the catalogue is checked when it is read --------------------------------------------------

GOOD_ENTRY = """
[plan_unknown]
meaning = "No plan has this code."
retryable = false
suggestion = "Choose a plan on sale."
[plan_unknown.text]
en = "There is no plan {plan}."
zh_Hans = "不存在套餐 {plan}。"
ms = "Tiada pelan {plan}."
id = "Paket {plan} tidak ada."
"""


def test_a_well_formed_catalogue_is_read_with_its_placeholders() -> None:
    entry = messages.parse_catalogue(GOOD_ENTRY)["plan_unknown"]
    assert entry.placeholders == {"plan"}
    assert entry.retryable is False


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        pytest.param(
            ('ms = "Tiada pelan {plan}."', 'ms = "Tiada pelan."'),
            "placeholders",
            id="placeholder missing in one language",
        ),
        pytest.param(
            ('id = "Paket {plan} tidak ada."', 'id = "Paket {kode} tidak ada."'),
            "placeholders",
            id="placeholder renamed in one language",
        ),
        pytest.param(('id = "Paket {plan} tidak ada."\n', ""), "locales", id="a language missing"),
        pytest.param(("retryable = false\n", ""), "fields", id="a field missing"),
        pytest.param(
            ("retryable = false", 'retryable = "no"'), "true or false", id="retryable not a bool"
        ),
        pytest.param(
            ('en = "There is no plan {plan}."', 'en = "There is no plan {plan!r}."'),
            "placeholder",
            id="a conversion",
        ),
        pytest.param(
            ('en = "There is no plan {plan}."', 'en = "There is no plan {plan.code}."'),
            "placeholder",
            id="attribute access",
        ),
        pytest.param(
            ('en = "There is no plan {plan}."', 'en = "There is no plan {plan."'),
            "braces",
            id="unbalanced brace",
        ),
        pytest.param(('en = "There is no plan {plan}."', 'en = ""'), "non-empty", id="empty text"),
    ],
)
def test_a_broken_catalogue_is_refused_with_the_reason(
    change: tuple[str, str], complaint: str
) -> None:
    old, new = change
    assert old in GOOD_ENTRY
    with pytest.raises(InvariantError, match=complaint):
        messages.parse_catalogue(GOOD_ENTRY.replace(old, new))


# --- picking the language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "en"),
        ("zh_Hans", "zh_Hans"),
        ("ms", "ms"),
        ("id", "id"),
        ("zh", "zh_Hans"),
        ("zh_CN", "zh_Hans"),
        ("zh-Hans", "zh_Hans"),
        ("ms_MY", "ms"),
        ("ms-MY", "ms"),
        ("id_ID", "id"),
        ("en_GB", "en"),
        ("fr", "en"),
        ("", "en"),
    ],
)
def test_a_locale_falls_back_to_its_language_then_to_english(locale: str, expected: str) -> None:
    assert i18n.resolve_or_default(locale) == expected
    error = NotFoundError("no card", code="card_unknown")
    assert messages.message_for(error, locale) == _entry("card_unknown").text[expected]


def test_an_unknown_code_gives_the_errors_own_english_message() -> None:
    error = InputError("the frobnicator is jammed", code="frobnicator_jammed")
    assert messages.message_for(error, "zh_Hans") == "the frobnicator is jammed"


def test_params_that_do_not_fill_the_text_give_the_english_message_instead_of_raising() -> None:
    error = NotFoundError("there is no plan 'x'", code="plan_unknown", params={"other": "x"})
    assert messages.message_for(error, "zh_Hans") == "there is no plan 'x'"


def test_params_fill_the_text_in_the_chosen_language() -> None:
    error = NotFoundError("there is no plan 'x'", code="plan_unknown", params={"plan": "x"})
    assert messages.message_for(error, "zh_Hans") == "不存在套餐“x”。请从在售套餐中选择。"


def test_braces_inside_a_param_value_are_shown_as_they_are() -> None:
    error = NotFoundError("no plan", code="plan_unknown", params={"plan": "{plan}"})
    assert "“{plan}”" in messages.message_for(error, "zh_Hans")


# --- real errors from real functions -------------------------------------------------------------


def _raised(call: Callable[[], object]) -> TopupError:
    with pytest.raises(TopupError) as caught:
        call()
    return caught.value


def _plan(**changes: object) -> Plan:
    values: dict[str, object] = {
        "code": "pack_5gb_7d",
        "names": {"en": "5 GB, 7 days"},
        "kind": PlanKind.PREPAID_PACK,
        "price": Money(1000, "MYR"),
        "data_quota_mb": 5120,
        "validity_days": 7,
        "card_kinds": frozenset({CardKind.PREPAID}),
        "channels": frozenset({"web", "app"}),
    }
    values.update(changes)
    return Plan(**values)  # type: ignore[arg-type]


def _choose(code: str, amount_minor: int = 1000, channel: str = "web") -> Callable[[], object]:
    methods = load_methods(MALAYSIA)
    return lambda: methods.choose(
        code, channel=channel, region=None, amount=Money(amount_minor, "MYR")
    )


REAL_ERRORS: dict[str, Callable[[], object]] = {
    "card_number_empty": lambda: parse_card_number("  ", MALAYSIA),
    "card_number_invalid_characters": lambda: parse_card_number("012-345 678O", MALAYSIA),
    "card_number_wrong_length": lambda: parse_card_number("999", MALAYSIA),
    "card_number_wrong_length (id)": lambda: parse_card_number("999", INDONESIA),
    "card_number_wrong_country": lambda: parse_card_number("+44 7400 123456", MALAYSIA),
    "card_number_not_mobile": lambda: parse_card_number("03-2345 6789", MALAYSIA),
    "card_number_bad_check_digit": lambda: parse_card_number("8960000000000000001", MALAYSIA),
    "invalid_amount": lambda: Money.parse("12.345", "MYR"),
    "unknown_currency": lambda: Money.parse("1", "XXX"),
    "plan_not_on_channel": lambda: _plan().check_can_buy(
        card_kind=CardKind.PREPAID, channel="kiosk", at=NOW
    ),
    "plan_not_for_card_kind": lambda: _plan().check_can_buy(
        card_kind=CardKind.POSTPAID, channel="web", at=NOW
    ),
    "plan_not_on_sale": lambda: _plan(active_until=NOW).check_can_buy(
        card_kind=CardKind.PREPAID, channel="web", at=NOW
    ),
    "method_unknown": _choose("bitcoin"),
    "method_disabled": _choose("alipay"),
    "method_not_offered_here": _choose("cash"),
    "region_required": _choose("credit_card", channel="kiosk"),
    "invalid_profile": lambda: profile_from_toml("code = "),
}


@pytest.mark.parametrize("case", sorted(REAL_ERRORS))
@pytest.mark.parametrize("locale", ["en", "zh_Hans", "ms", "id"])
def test_a_real_error_is_translated_with_every_placeholder_filled(case: str, locale: str) -> None:
    error = _raised(REAL_ERRORS[case])
    assert error.code == case.split(" ")[0]
    entry = _entry(error.code)
    assert entry.placeholders <= error.params.keys(), "the raise site must pass every placeholder"
    assert error.retryable == entry.retryable
    text = messages.message_for(error, locale)
    assert text.strip()
    assert not UNFILLED.search(text), text
    assert text == entry.text[locale].format_map(error.params)
    assert messages.message_for(error, "en") != messages.message_for(error, "zh_Hans")


async def test_a_payment_card_error_from_the_sandbox_is_translated_with_its_digits() -> None:
    gateway = SandboxGateway(secret=b"catalogue-test", clock=lambda: NOW)
    with pytest.raises(TopupError) as caught:
        await gateway.tokenize(
            PaymentCardDetails("378282246310005", 12, 2030, "123")
        )  # amex: 4 digits
    error = caught.value
    assert error.code == "cvc_wrong_length"
    assert messages.message_for(error, "ms") == (
        "Kod keselamatan (CVC) mempunyai 4 digit. Sila semak pada kad pembayaran anda."
    )


def test_an_error_that_gathers_several_problems_is_followed_by_each_in_the_same_language() -> None:
    error = _raised(
        lambda: check_card_details(
            PaymentCardDetails("4242 4242 4242 4241", 13, 2030, "123"),
            today=NOW.date(),
            holder_name_required=True,
            holder_name="",
            facts=UNKNOWN_CARD_FACTS,
        )
    )
    assert isinstance(error, PaymentCardDetailsInvalid)
    codes = [problem.code for problem in error.problems]
    assert codes == [
        "payment_card_number_bad_check_digit",
        "expiry_month_invalid",
        "holder_name_missing",
    ]
    for locale in ("en", "zh_Hans", "ms", "id"):
        expected = [_entry(code).text[locale] for code in ["card_details_invalid", *codes]]
        separator = "" if locale == "zh_Hans" else " "
        assert messages.message_for(error, locale) == separator.join(expected)


def _raise_sites() -> Iterator[tuple[str, int, str, frozenset[str] | None]]:
    """(file, line, code, the constant keys of its params or None) of every `...Error(code="...")`."""
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not ast.unparse(node.func).endswith("Error"):
                continue
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            code = keywords.get("code")
            if not isinstance(code, ast.Constant) or not isinstance(code.value, str):
                continue
            params = keywords.get("params")
            keys = None
            if isinstance(params, ast.Dict):
                keys = frozenset(
                    key.value
                    for key in params.keys
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)
                )
            relative = path.relative_to(SOURCE).as_posix()
            yield relative, node.lineno, code.value, keys


def test_every_raise_site_passes_the_params_its_text_needs() -> None:
    sites = list(_raise_sites())
    assert len(sites) > 30  # the scan sees the raise sites
    lacking = {
        (file, code): f"{file}:{line} {code} needs params {sorted(needed)}"
        for file, line, code, keys in sites
        if (entry := messages.entry(code)) is not None
        and not (needed := entry.placeholders) <= (keys or frozenset())
    }
    new = {site: where for site, where in lacking.items() if site not in PARAMS_NOT_YET_PASSED}
    assert new == {}, "pass params=... at these raise sites: " + "; ".join(new.values())


# --- the documentation ---------------------------------------------------------------------------


def test_docs_error_codes_is_the_table_the_catalogue_generates() -> None:
    committed = (ROOT / "docs" / "error-codes.md").read_text(encoding="utf-8")
    assert committed == messages.markdown_table(), (
        "docs/error-codes.md is stale: run `topup errors --markdown > docs/error-codes.md`"
    )


def test_the_table_lists_every_code_once_with_whether_retrying_helps() -> None:
    rows = [line for line in messages.markdown_table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(messages.catalogue())
    assert "| `processing_error` |" in "\n".join(rows)
    assert any(row.startswith("| `idempotency_key_in_use` |") and "| yes |" in row for row in rows)
    assert any(row.startswith("| `card_declined` |") and "| no |" in row for row in rows)
