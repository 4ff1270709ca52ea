"""The limits reach the services grouped by concern, each flat setting in exactly one group."""

from __future__ import annotations

from dataclasses import fields

import pytest

from topup.limits import GROUPS
from topup.settings import LimitSettings


def test_every_limit_setting_lands_in_exactly_one_group() -> None:
    grouped = [field.name for group in GROUPS.values() for field in fields(group)]
    assert sorted(grouped) == sorted(LimitSettings.model_fields)
    assert len(grouped) == len(set(grouped))


def test_a_limit_set_in_the_environment_reaches_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPUP_GATEWAY_TIMEOUT_S", "3.5")
    monkeypatch.setenv("TOPUP_LOGIN_FAILURES_MAX", "7")
    limits = LimitSettings().by_concern()
    assert limits.payments.gateway_timeout_s == 3.5
    assert limits.accounts.login_failures_max == 7
