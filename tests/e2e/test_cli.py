"""The `topup` command as a user runs it: real subprocesses on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import conftest
from tests.e2e.commands import COMMAND_TIMEOUT_S, topup_executable
from topup.bootstrap import build
from topup.services.demo import load_demo

CARD = "0123456789"  # the demo's active prepaid card, +60123456789
PACK_QUOTA_MB = 5 * 1024  # pack_5gb_7d
EXIT_INPUT = 2
EXIT_FAILED = 1


def pay(number: str = "4242424242424242", expiry: str = "12/30") -> tuple[str, ...]:
    return ("--card-number", number, "--expiry", expiry, "--cvc", "123")


class Cli:
    """Runs `topup` with its own environment, in a scratch directory."""

    def __init__(self, database_url: str, directory: Path) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
        environment.update(
            TOPUP_DATABASE_URL=database_url,
            TOPUP_SECRET_KEY=conftest._valid_test_key(),
            TOPUP_GATEWAY_LATENCY_S="0",
            TOPUP_NETWORK_LATENCY_S="0",
            TOPUP_NETWORK_DELAY_S="0",
        )
        self.environment = environment
        self.directory = directory
        self.executable = topup_executable()

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, *arguments],
            env=self.environment,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def json(self, *arguments: str) -> dict[str, Any]:
        """Run with --json; it must succeed, say nothing on stderr and print one JSON object."""
        completed = self.run(*arguments, "--json")
        assert completed.returncode == 0, completed.stderr
        assert completed.stderr == ""
        return one_json_object(completed.stdout)


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one line of JSON, got {stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def assert_one_error_line(completed: subprocess.CompletedProcess[str], code: str) -> None:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr + completed.stdout
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert re.fullmatch(rf"error \[{re.escape(code)}\]: \S.*", lines[0]), lines[0]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    return Cli(database_url, tmp_path)


@pytest.fixture
async def demo_cli(cli: Cli, database_url: str) -> Cli:
    """Demo data loaded in-process (fast), dated by the real clock the CLI will use too."""
    application = build(conftest.test_settings(database_url))
    try:
        await load_demo(application.services)
    finally:
        await application.close()
    return cli


def test_every_command_answers_with_one_json_object(cli: Cli) -> None:
    init = cli.json("init", "--demo")
    assert init["migrated"] is True
    assert init["demo"]["cards_added"] == 6

    cards = cli.json("cards")["cards"]
    assert "+60123456789" in {card["msisdn"] for card in cards}

    plans = cli.json("plans", "--card", CARD)
    assert plans["card"]["msisdn"] == "+60123456789"
    codes = {plan["code"] for plan in plans["plans"]}
    assert "pack_5gb_7d" in codes
    assert "postpaid_bill" not in codes  # not for a prepaid card

    before = cli.json("balance", CARD)
    renewal = cli.json("renew", CARD, "pack_5gb_7d", *pay())
    assert renewal["status"] == "activating"
    assert cli.json("status", renewal["id"])["id"] == renewal["id"]

    worked = cli.json("worker", "--once")
    assert worked["done"] >= 1
    assert {"event": "activation_completed", "renewal_id": renewal["id"]}.items() <= (
        worked["events"][0].items()
    )

    assert cli.json("status", renewal["id"])["status"] == "completed"
    after = cli.json("balance", CARD)
    assert after["data_quota_mb"] == before["data_quota_mb"] + PACK_QUOTA_MB

    history = cli.json("history", CARD)
    assert [(r["id"], r["status"]) for r in history["renewals"]] == [(renewal["id"], "completed")]

    audit = cli.json("audit")
    assert audit["clean"] is True
    assert audit["violations"] == []


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        pytest.param(
            ("renew", "999", "pack_5gb_7d", *pay()),
            "card_number_wrong_length",
            id="card number too short",
        ),
        pytest.param(("balance", "+60 12 999 9999"), "card_unknown", id="card not ours"),
        pytest.param(
            ("renew", CARD, "pack_5gb_7d", *pay(number="4242424242424241")),
            "payment_card_number_bad_check_digit",
            id="payment card mistyped",
        ),
        pytest.param(("renew", CARD, "no_such_plan", *pay()), "plan_unknown", id="unknown plan"),
        pytest.param(
            ("renew", CARD, "pack_5gb_7d", *pay(expiry="13/99")),
            "expiry_month_invalid",
            id="month 13",
        ),
        pytest.param(
            ("renew", CARD, "pack_5gb_7d", *pay(expiry="1299")),
            "expiry_invalid",
            id="expiry without slash",
        ),
        pytest.param(("status", "no-such-renewal"), "renewal_unknown", id="unknown renewal"),
    ],
)
def test_bad_input_prints_one_error_line_and_exits_with_the_input_code(
    demo_cli: Cli, arguments: tuple[str, ...], code: str
) -> None:
    completed = demo_cli.run(*arguments, "--json")
    assert_one_error_line(completed, code)
    assert completed.returncode == EXIT_INPUT
    assert completed.stdout == ""


def test_declined_card_exits_non_zero_with_the_decline_code(demo_cli: Cli) -> None:
    insufficient_funds = pay(number="4000000000009995")
    completed = demo_cli.run("renew", CARD, "pack_5gb_7d", *insufficient_funds, "--json")
    assert_one_error_line(completed, "insufficient_funds")
    assert completed.returncode == EXIT_FAILED
    renewal = one_json_object(completed.stdout)
    assert renewal["status"] == "declined"
    assert renewal["decline_code"] == "insufficient_funds"
    assert demo_cli.json("audit")["clean"] is True


def test_audit_exits_one_and_lists_the_violation_when_the_ledger_is_tampered_with(
    demo_cli: Cli, database_url: str
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(database_url)
    driver = "postgresql+psycopg" if parsed.get_backend_name() == "postgresql" else "sqlite"
    engine = create_engine(parsed.set(drivername=driver))
    with engine.begin() as connection:
        connection.execute(text("UPDATE account_balances SET balance_minor = balance_minor + 1"))
    engine.dispose()
    completed = demo_cli.run("audit", "--json")
    assert completed.returncode == EXIT_FAILED
    report = one_json_object(completed.stdout)
    assert report["clean"] is False
    assert any("but its entries sum to" in violation for violation in report["violations"])
