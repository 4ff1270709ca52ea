from __future__ import annotations

import pathlib
import re

import pytest

from topup.adapters.profiles import available_profile_codes, load_profile, load_profile_file
from topup.domain.errors import InputError
from topup.domain.profile_loading import profile_from_toml

VALID_PROFILE = """\
code = "test"
name = "Test operator"
country = "MY"
currency = "MYR"
phone_region = "MY"
calling_code = 60
time_zone = "Asia/Kuala_Lumpur"
grace_period_days = 30
locales = ["en", "ms"]

[terms.validity]
en = "active period"
ms = "tempoh sah"
"""


def with_line(field: str, line: str | None) -> str:
    """VALID_PROFILE with the line setting ``field`` replaced by ``line`` (or removed)."""
    pattern = re.compile(rf"^{re.escape(field)} = .*$", re.MULTILINE)
    assert pattern.search(VALID_PROFILE), field
    return pattern.sub(line if line is not None else "", VALID_PROFILE)


def test_malaysian_profile_loads() -> None:
    profile = load_profile("my")

    assert (profile.code, profile.country, profile.currency) == ("my", "MY", "MYR")
    assert (profile.phone_region, profile.calling_code) == ("MY", 60)
    assert profile.time_zone == "Asia/Kuala_Lumpur"
    assert profile.grace_period_days == 30
    assert profile.locales == ("en", "ms", "zh_Hans", "id")
    assert profile.term("grace", "ms") == "tempoh tangguh"


def test_indonesian_profile_loads_with_its_own_words() -> None:
    profile = load_profile("id")

    assert (profile.country, profile.currency, profile.calling_code) == ("ID", "IDR", 62)
    assert profile.time_zone == "Asia/Jakarta"
    assert profile.default_locale == "id"
    assert profile.term("validity", "id") == "masa aktif"
    assert profile.term("grace", "id") == "masa tenggang"
    assert profile.term("grace", "zh_Hans") == "宽限期"


def test_shipped_profiles_are_listed() -> None:
    assert available_profile_codes() == ("id", "my")


@pytest.mark.parametrize("code", ["xx", "", "../my", "MY"])
def test_unknown_profile_code_lists_the_available_ones(code: str) -> None:
    with pytest.raises(InputError) as caught:
        load_profile(code)

    assert caught.value.code == "unknown_profile"
    assert "id, my" in caught.value.message


def test_valid_profile_text_loads_with_defaults() -> None:
    profile = profile_from_toml(VALID_PROFILE)

    assert profile.code == "test"
    assert profile.postpaid_bill_due_days == 14
    assert profile.terms == {"validity": {"en": "active period", "ms": "tempoh sah"}}


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("code", 'code = "Bad Code"'),
        ("code", None),
        ("name", 'name = "  "'),
        ("country", 'country = "Malaysia"'),
        ("currency", 'currency = "XYZ"'),
        ("currency", "currency = 458"),
        ("phone_region", 'phone_region = "ZZ"'),
        ("calling_code", "calling_code = 62"),
        ("calling_code", 'calling_code = "60"'),
        ("time_zone", 'time_zone = "Asia/Kuala_Lumpr"'),
        ("grace_period_days", "grace_period_days = -1"),
        ("grace_period_days", "grace_period_days = 366"),
        ("grace_period_days", "grace_period_days = true"),
        ("grace_period_days", "grace_period_days = 1.5"),
        ("locales", "locales = []"),
        ("locales", 'locales = "en"'),
        ("locales", 'locales = ["en", "en"]'),
        ("locales", 'locales = ["english"]'),
    ],
)
def test_bad_field_is_rejected_naming_the_field(field: str, line: str | None) -> None:
    with pytest.raises(InputError) as caught:
        profile_from_toml(with_line(field, line))

    assert caught.value.code == "invalid_profile"
    assert caught.value.field == field
    assert repr(field) in caught.value.message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("grace_days = 30\n", "grace_days"),
        ("postpaid_bill_due_days = 0\n", "postpaid_bill_due_days"),
    ],
)
def test_unknown_or_out_of_range_extra_field_is_rejected(extra: str, field: str) -> None:
    with pytest.raises(InputError) as caught:
        profile_from_toml(extra + VALID_PROFILE)

    assert caught.value.code == "invalid_profile"
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ('[terms.validity]\nen = ""\n', "terms.validity.en"),
        ('[terms.validity]\nzh_Hans = "有效期"\n', "terms.validity.zh_Hans"),
        ('[terms]\nvalidity = "active period"\n', "terms.validity"),
    ],
)
def test_bad_terms_are_rejected_naming_the_word_and_locale(terms: str, field: str) -> None:
    text = VALID_PROFILE.split("[terms.validity]")[0] + terms

    with pytest.raises(InputError) as caught:
        profile_from_toml(text)

    assert caught.value.code == "invalid_profile"
    assert caught.value.field == field


def test_text_that_is_not_toml_is_an_invalid_profile() -> None:
    with pytest.raises(InputError) as caught:
        profile_from_toml("code = ")

    assert caught.value.code == "invalid_profile"


def test_profile_file_loads_from_a_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "test.toml"
    path.write_text(VALID_PROFILE, encoding="utf-8")

    assert load_profile_file(path).code == "test"


def test_missing_profile_file_is_an_input_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError) as caught:
        load_profile_file(tmp_path / "missing.toml")

    assert caught.value.code == "profile_file_unreadable"
