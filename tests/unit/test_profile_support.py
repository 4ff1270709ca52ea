"""The operator profile's customer-service contacts (``[support]``), shown on the portal's pages."""

from __future__ import annotations

import pytest

from topup.adapters.profiles import load_profile
from topup.domain.errors import InputError
from topup.domain.profile_loading import profile_from_toml

BASE = """\
code = "test"
name = "Test operator"
country = "MY"
currency = "MYR"
phone_region = "MY"
calling_code = 60
time_zone = "Asia/Kuala_Lumpur"
grace_period_days = 30
locales = ["en", "ms"]
"""


def test_shipped_profiles_name_a_phone_an_email_and_hours_in_each_of_their_languages() -> None:
    for code in ("my", "id"):
        profile = load_profile(code)
        support = profile.support
        assert support is not None
        assert support.phone and "@" in support.email
        assert all(support.hours_in(locale) for locale in profile.locales)


def test_a_profile_without_support_has_none() -> None:
    assert profile_from_toml(BASE).support is None


def test_support_hours_fall_back_to_english_and_the_phone_link_keeps_digits_and_plus() -> None:
    text = BASE + '[support]\nphone = "+60 3-2700 0000"\n[support.hours]\nen = "Every day"\n'
    support = profile_from_toml(text).support

    assert support is not None
    assert support.hours_in("ms") == "Every day"
    assert support.phone_link == "+60327000000"
    assert support.email == ""


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ('[support]\nfax = "1"\n', "support.fax"),
        ('[support]\nphone = "call us"\n', "support.phone"),
        ('[support]\nemail = "nobody"\n', "support.email"),
        ('[support]\nemail = " "\n', "support.email"),
        ('[support.hours]\nzh_Hans = "每天"\n', "support.hours.zh_Hans"),
        ('[support.hours]\nen = ""\n', "support.hours.en"),
        ("support = 3\n", "support"),
    ],
)
def test_a_wrong_support_section_names_its_field(section: str, field: str) -> None:
    with pytest.raises(InputError) as raised:
        profile_from_toml(BASE + section)

    assert raised.value.code == "invalid_profile"
    assert raised.value.field == field
