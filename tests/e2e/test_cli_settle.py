"""`topup sandbox-settlement` and `topup settle` as an operator runs them: a clean file exits 0,
a discrepancy 1, a file that cannot be read or is not valid 2 with one error line."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import conftest
from tests.e2e.test_cli import (
    CARD,
    EXIT_FAILED,
    EXIT_INPUT,
    Cli,
    assert_one_error_line,
    one_json_object,
)
from topup.adapters.gateways.sandbox_settlement import (
    JournalingGateway,
    SettlementJournal,
    read_journal,
)
from topup.bootstrap import build
from topup.entrypoints.worker import work_once
from topup.ports import PaymentCardDetails
from topup.services.renewals import RenewalRequest, renew

pytest_plugins = ["tests.e2e.test_cli"]
GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)
REFUSED_BY_NETWORK = "+60123400000"
WORK_ROUNDS_MAX = 20


@pytest.fixture
async def journal(demo_cli: Cli, database_url: str) -> Path:
    """Two renewals paid through a journalling sandbox (one refunded by the worker), in-process."""
    path = demo_cli.directory / "var" / "sandbox-settlements.jsonl"
    application = build(conftest.test_settings(database_url))
    services = application.services
    services.gateway = JournalingGateway(services.gateway, SettlementJournal(path))
    try:
        for card, plan in ((CARD, "pack_5gb_7d"), (REFUSED_BY_NETWORK, "reload_10")):
            await renew(services, RenewalRequest(card, plan, GOOD_CARD))
        for _ in range(WORK_ROUNDS_MAX):
            if await work_once(services) == 0:
                break
    finally:
        await application.close()
    return path


def settlement_day(journal: Path) -> str:
    [charge, *_] = read_journal(journal)
    return charge.at.astimezone(ZoneInfo("Asia/Kuala_Lumpur")).date().isoformat()


def settlement_file(cli: Cli, journal: Path, name: str = "settlement.csv") -> Path:
    day = settlement_day(journal)
    completed = cli.run("sandbox-settlement", "--date", day, "--journal", str(journal))
    assert completed.returncode == 0, completed.stderr
    path = cli.directory / name
    path.write_text(completed.stdout)
    return path


def test_a_clean_settlement_exits_zero(demo_cli: Cli, journal: Path) -> None:
    path = settlement_file(demo_cli, journal)
    assert len(path.read_text().splitlines()) == 4  # header, two charges, one refund
    completed = demo_cli.run("settle", str(path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "settlement clean" in completed.stdout
    report = demo_cli.json("settle", str(path))
    assert (report["clean"], report["lines"], report["matched"]) == (True, 3, 3)


def test_a_discrepancy_exits_one_and_is_listed(demo_cli: Cli, journal: Path) -> None:
    path = settlement_file(demo_cli, journal)
    header, first, *rest = path.read_text().splitlines()
    fields = first.split(",")
    fields[4], fields[7] = str(int(fields[4]) + 1), str(int(fields[7]) + 1)
    path.write_text("\n".join([header, ",".join(fields), *rest]) + "\n")
    completed = demo_cli.run("settle", str(path), "--json")
    assert completed.returncode == EXIT_FAILED
    assert completed.stderr == ""
    report = one_json_object(completed.stdout)
    assert report["clean"] is False
    assert report["counts"]["amount_mismatch"] == 1
    text = demo_cli.run("settle", str(path))
    assert text.returncode == EXIT_FAILED
    assert "amount_mismatch line 2" in text.stdout


def test_the_journal_is_found_through_its_setting(demo_cli: Cli, journal: Path) -> None:
    demo_cli.environment["TOPUP_SANDBOX_JOURNAL"] = str(journal)
    report = demo_cli.json("sandbox-settlement", "--date", settlement_day(journal))
    assert report["lines"] == 3
    assert report["csv"].startswith("settlement_date,gateway_reference,payment_id,type,")


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        pytest.param(("settle", "missing.csv"), "settlement_file_unreadable", id="no such file"),
        pytest.param(("settle", "bad.csv"), "settlement_file_invalid", id="bad header"),
        pytest.param(
            ("settle", "bad.csv", "--date", "2026-02-30"), "settlement_date_invalid", id="bad date"
        ),
        pytest.param(
            ("sandbox-settlement", "--date", "tomorrow"),
            "settlement_date_invalid",
            id="settlement day not a date",
        ),
        pytest.param(
            ("sandbox-settlement", "--date", "2026-11-25", "--journal", "none.jsonl"),
            "settlement_journal_unreadable",
            id="no journal",
        ),
    ],
)
def test_a_file_that_cannot_be_settled_prints_one_error_line_and_exits_two(
    cli: Cli, arguments: tuple[str, ...], code: str
) -> None:
    (cli.directory / "bad.csv").write_text("date,amount\n2026-11-25,1000\n")
    completed = cli.run(*arguments, "--json")
    assert_one_error_line(completed, code)
    assert completed.returncode == EXIT_INPUT
    assert completed.stdout == ""
