"""A payment method's own activation times (R9): read from its configuration, checked, and used
instead of the platform's when given."""

from __future__ import annotations

import pytest

from topup.domain.errors import InputError
from topup.domain.methods import PaymentMethod, methods_from_toml

CONFIGURATION = """
regions = ["klang_valley"]

[methods.credit_card]
kind = "card"
names = {{ en = "credit card" }}
channels = ["web"]
{extra}
"""


def credit_card(extra: str = "") -> PaymentMethod:
    found = methods_from_toml(CONFIGURATION.format(extra=extra), currency="MYR").get("credit_card")
    assert found is not None
    return found


def test_a_method_without_its_own_times_takes_the_platforms() -> None:
    method = credit_card()
    assert method.activation_times_s(typical_default_s=60, late_default_s=3600) == (60, 3600)


def test_a_method_with_its_own_times_takes_them() -> None:
    extra = "activation_typical_delay_s = 900\nactivation_late_after_s = 7200"
    method = credit_card(extra)
    assert method.activation_times_s(typical_default_s=60, late_default_s=3600) == (900, 7200)


def test_a_usual_delay_past_the_platforms_late_time_moves_the_late_time_with_it() -> None:
    method = credit_card("activation_typical_delay_s = 9000")
    assert method.activation_times_s(typical_default_s=60, late_default_s=3600) == (9000, 9000)


@pytest.mark.parametrize(
    "extra",
    [
        "activation_typical_delay_s = 0",
        'activation_typical_delay_s = "1h"',
        "activation_typical_delay_s = true",
        "activation_late_after_s = 99999999",
        "activation_typical_delay_s = 600\nactivation_late_after_s = 60",
    ],
)
def test_activation_times_that_are_not_seconds_in_range_are_refused(extra: str) -> None:
    with pytest.raises(InputError) as refused:
        credit_card(extra)
    assert refused.value.code == "invalid_method_configuration"
