"""What `topup` prints for a person, at 80 columns (a terminal's width, and what rich assumes when
the output is a pipe): numbers whole, limits shown, sections complete, no Python reprs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.test_cli import CARD, EXIT_FAILED, EXIT_INPUT, Cli, assert_one_error_line, pay

pytest_plugins = ["tests.e2e.test_cli"]
DEMO_PREPAID_CARDS = ("+60123456789", "+60123450001", "+60123450002", "+60123400000")
GRACE_CARD = "+60123450001"  # the worker moves it into grace: a card event
TERMINAL_COLUMNS = "80"


@pytest.fixture
def narrow(demo_cli: Cli) -> Cli:
    demo_cli.environment["COLUMNS"] = TERMINAL_COLUMNS
    return demo_cli


def test_cards_shows_every_card_number_and_iccid_whole_at_80_columns(narrow: Cli) -> None:
    completed = narrow.run("cards")
    assert completed.returncode == 0, completed.stderr
    assert "…" not in completed.stdout
    for number in DEMO_PREPAID_CARDS:
        assert number in completed.stdout
    iccids = {card["iccid"] for card in narrow.json("cards")["cards"]}
    assert all(iccid in completed.stdout for iccid in iccids)
    assert max(len(line) for line in completed.stdout.splitlines()) <= int(TERMINAL_COLUMNS)


def test_methods_shows_each_methods_limits_per_payment_and_per_day(narrow: Cli) -> None:
    completed = narrow.run("methods", CARD, "pack_5gb_7d")
    assert completed.returncode == 0, completed.stderr
    offer = narrow.json("methods", CARD, "pack_5gb_7d")
    assert "per payment" in completed.stdout
    assert "per day" in completed.stdout
    for method in offer["methods"]:
        row = next(line for line in completed.stdout.splitlines() if method["code"] in line)
        assert re.search(r"\d+\.\d\d MYR to \d+\.\d\d MYR", row), row
    wallet = next(line for line in completed.stdout.splitlines() if "ewallet:tng" in line)
    assert wallet.rstrip().endswith("MYR"), wallet  # a daily limit, not "no limit"


def test_history_shows_renewals_card_events_and_ledger_entries(narrow: Cli) -> None:
    assert narrow.json("worker", "--once")["done"] >= 1  # the grace card moves into grace
    completed = narrow.run("history", GRACE_CARD)
    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert "renewals: none" in text
    assert "card events" in text
    assert "status_grace" in text
    assert "ledger entries" in text
    assert "opening" in text  # the demo's opening credit


def test_audit_prints_a_readable_report_not_a_python_dict(narrow: Cli) -> None:
    completed = narrow.run("audit")
    assert completed.returncode == 0, completed.stderr
    assert "{" not in completed.stdout
    assert "'" not in completed.stdout
    lines = completed.stdout.splitlines()
    assert lines[0] == "audit clean"
    assert re.fullmatch(r"\s+cards checked\s+6", lines[2]), lines
    assert re.fullmatch(r"\s+violations\s+0", lines[-1]), lines


@pytest.mark.parametrize("arguments", [(), ("cards",), ("serve",), ("api-keys",)])
def test_help_shows_no_type_after_a_flag(cli: Cli, arguments: tuple[str, ...]) -> None:
    completed = cli.run(*arguments, "--help")
    assert completed.returncode == 0, completed.stderr
    assert "<bool>" not in completed.stdout
    assert re.search(r"^\s+--help\s+Show this message and exit\.$", completed.stdout, re.M)


def test_help_loads_neither_the_database_nor_the_web_stack(cli: Cli) -> None:
    program = (
        "import sys; sys.argv = ['topup', '--help']\n"
        "from topup.entrypoints.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'sqlalchemy', 'alembic', 'fastapi', 'uvicorn', 'fpdf', 'httpx', 'redis',"
        " 'pydantic_settings', 'topup.bootstrap', 'topup.services.renewals'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program],
        env=cli.environment,
        cwd=cli.directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "[]"


def test_sandbox_settlement_without_a_date_is_the_operators_today(demo_cli: Cli) -> None:
    completed = demo_cli.run("sandbox-settlement", "--journal", "none.jsonl", "--json")
    assert_one_error_line(completed, "settlement_journal_unreadable")  # it got past the date
    journal = demo_cli.directory / "empty.jsonl"
    journal.write_text("")
    report = demo_cli.json("sandbox-settlement", "--journal", str(journal))
    today = subprocess.run(
        ["date", "+%F"],
        env={"TZ": "Asia/Kuala_Lumpur"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert report["date"] == today
    assert report["lines"] == 0


def test_settling_a_file_without_lines_says_so_and_exits_non_zero(demo_cli: Cli) -> None:
    journal = demo_cli.directory / "empty.jsonl"
    journal.write_text("")
    made = demo_cli.run("sandbox-settlement", "--journal", str(journal))
    assert made.returncode == 0, made.stderr
    path = demo_cli.directory / "settlement.csv"
    path.write_text(made.stdout)  # a header and no line: made for a day without payments
    for arguments in (("settle", str(path)), ("settle", str(path), "--date", "2026-11-25")):
        completed = demo_cli.run(*arguments)
        assert_one_error_line(completed, "settlement_file_empty")
        assert completed.returncode == EXIT_INPUT
        assert completed.returncode not in (0, EXIT_FAILED)
        assert "no lines" in completed.stderr
    dated = demo_cli.run("settle", str(path), "--date", "2026-11-25", "--json")
    assert "2026-11-25" in dated.stderr
    assert dated.stdout == ""


def shown_whole(cli: Cli, *arguments: str) -> str:
    """What the command prints at 80 columns: no line wider, nothing elided."""
    completed = cli.run(*arguments)
    assert completed.returncode == 0, completed.stderr
    assert "…" not in completed.stdout
    assert max(len(line) for line in completed.stdout.splitlines()) <= int(TERMINAL_COLUMNS)
    return completed.stdout


def test_plans_shows_every_plan_code_whole_at_80_columns(narrow: Cli) -> None:
    text = shown_whole(narrow, "plans")
    codes = [plan["code"] for plan in narrow.json("plans")["plans"]]
    assert "pack_100gb_30d" in codes
    assert all(re.search(rf"^ {re.escape(code)}\s", text, re.M) for code in codes), text


def test_errors_shows_every_code_whole_at_80_columns(narrow: Cli) -> None:
    text = shown_whole(narrow, "errors")
    codes = [entry["code"] for entry in narrow.json("errors")["errors"]]
    assert "payment_card_number_invalid_characters" in codes
    missing = [code for code in codes if not re.search(rf"^ {re.escape(code)}\s", text, re.M)]
    assert missing == []


def test_history_shows_every_renewal_id_whole_at_80_columns(narrow: Cli) -> None:
    ids = [
        narrow.json("renew", CARD, plan, *pay())["id"] for plan in ("pack_100gb_30d", "reload_10")
    ]
    text = shown_whole(narrow, "history", CARD)
    assert all(renewal_id in text for renewal_id in ids), text
    assert "pack_100gb_30d" in text


def test_api_keys_list_shows_the_id_that_revoke_takes_whole_at_80_columns(narrow: Cli) -> None:
    narrow.json("api-keys", "create", "--name", "Kiosk 3, KL Sentral", "--role", "partner")
    narrow.json("api-keys", "create", "--name", "A partner with a long name", "--role", "partner")
    text = shown_whole(narrow, "api-keys", "list")
    ids = [key["id"] for key in narrow.json("api-keys", "list")["api_keys"]]
    assert len(ids) == 2
    assert all(re.search(rf"^ {re.escape(key_id)}\s", text, re.M) for key_id in ids), text
    revoked = narrow.json("api-keys", "revoke", ids[0])
    assert revoked


def test_refund_help_says_the_reason_goes_into_the_renewals_timeline(cli: Cli) -> None:
    completed = cli.run("refund", "--help")
    assert completed.returncode == 0, completed.stderr
    assert "timeline" in completed.stdout
    assert "job" not in completed.stdout
