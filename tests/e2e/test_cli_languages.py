"""`topup` speaks the subscriber's language: TOPUP_LANGUAGE picks it, the operator profile's first
locale is the default, and the code stays the same in every language."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.e2e.test_cli import EXIT_INPUT, Cli, assert_one_error_line, pay
from topup.adapters import messages
from topup.adapters.profiles import load_profile
from topup.bootstrap import build
from topup.domain.card_number import parse_card_number
from topup.domain.errors import TopupError
from topup.services.demo import load_demo

UNKNOWN_CARD = "+60 12 999 9999"  # a Malaysian mobile number that is not one of the demo's cards


def _text(code: str, locale: str) -> str:
    entry = messages.entry(code)
    assert entry is not None
    return entry.text[locale]


@pytest.fixture
async def demo_cli(database_url: str, tmp_path: Path) -> Cli:
    application = build(conftest.test_settings(database_url))
    try:
        await load_demo(application.services)
    finally:
        await application.close()
    return Cli(database_url, tmp_path)


def test_renewing_an_unknown_card_in_chinese_prints_the_chinese_text_with_the_same_code(
    demo_cli: Cli,
) -> None:
    arguments = ("renew", UNKNOWN_CARD, "pack_5gb_7d", *pay())
    demo_cli.environment["TOPUP_LANGUAGE"] = "zh_Hans"
    chinese = demo_cli.run(*arguments)
    demo_cli.environment["TOPUP_LANGUAGE"] = "en"
    english = demo_cli.run(*arguments)

    for completed in (chinese, english):
        assert_one_error_line(completed, "card_unknown")
        assert completed.returncode == EXIT_INPUT
    assert chinese.stderr == f"error [card_unknown]: {_text('card_unknown', 'zh_Hans')}\n"
    assert english.stderr == f"error [card_unknown]: {_text('card_unknown', 'en')}\n"


def test_a_language_with_a_region_falls_back_to_its_language_and_fills_the_params(
    demo_cli: Cli,
) -> None:
    demo_cli.environment["TOPUP_LANGUAGE"] = "ms_MY"
    completed = demo_cli.run("renew", "999", "pack_5gb_7d", *pay())
    assert_one_error_line(completed, "card_number_wrong_length")
    with pytest.raises(TopupError) as caught:
        parse_card_number("999", load_profile("my"))
    malay = messages.message_for(caught.value, "ms")
    assert "{" not in malay
    assert completed.stderr == f"error [card_number_wrong_length]: {malay}\n"


def test_without_topup_language_the_profiles_first_locale_is_used(demo_cli: Cli) -> None:
    demo_cli.environment["TOPUP_PROFILE"] = "id"  # locales: id, en, zh_Hans, ms
    completed = demo_cli.run("balance", "0812 3456 7890")
    assert_one_error_line(completed, "card_unknown")
    assert completed.stderr == f"error [card_unknown]: {_text('card_unknown', 'id')}\n"


def test_errors_lists_every_code_with_whether_retrying_helps(tmp_path: Path) -> None:
    cli = Cli("sqlite:///unused.sqlite3", tmp_path)  # the table needs no database
    listed = cli.json("errors")["errors"]
    codes = [item["code"] for item in listed]
    assert codes == sorted(codes)
    assert {"card_unknown", "card_declined", "insufficient_funds", "internal_error"} <= set(codes)
    by_code = {item["code"]: item for item in listed}
    assert by_code["processing_error"]["retryable"] is True
    assert by_code["card_declined"]["retryable"] is False
    assert set(by_code["card_unknown"]["text"]) == {"en", "zh_Hans", "ms", "id"}
    assert by_code["card_unknown"]["meaning"] and by_code["card_unknown"]["suggestion"]
    assert not (tmp_path / "unused.sqlite3").exists()


def test_errors_markdown_prints_the_committed_table(tmp_path: Path) -> None:
    completed = Cli("sqlite:///unused.sqlite3", tmp_path).run("errors", "--markdown")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == messages.markdown_table()
