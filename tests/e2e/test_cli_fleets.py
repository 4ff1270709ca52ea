"""`topup bulk-renew` and `topup organisations invoice` as the operator runs them, on a fleet
made in the test's database (a real clock: the command's): the same file given twice renews
nothing twice unless --renew-again; bad options and paths are one error line with a code."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import AppFactory
from tests.e2e.test_cli import Cli, assert_one_error_line
from tests.fleets import Fleet, lines_of, make_fleet
from topup.adapters.clock import SystemClock
from topup.entrypoints.spreadsheets import FORMULA_STARTS
from topup.services.demo import load_demo


@dataclass
class FleetCli:
    cli: Cli
    fleet: Fleet
    directory: Path

    def lines(self, text: str, name: str = "lines.csv") -> str:
        path = self.directory / name
        path.write_text(text, "utf-8")
        return str(path)

    def bulk_renew(self, *arguments: str) -> list[str]:
        return ["bulk-renew", *arguments, "--organisation", self.fleet.organisation_id]


@pytest.fixture
async def fleet_cli(make_app: AppFactory, database_url: str, tmp_path: Path) -> FleetCli:
    application = make_app(clock=SystemClock())
    await load_demo(application.services)
    fleet = await make_fleet(application.services, cards=3)
    return FleetCli(Cli(database_url, tmp_path), fleet, tmp_path)


def test_the_same_file_given_twice_renews_nothing_twice_unless_asked(fleet_cli: FleetCli) -> None:
    file = fleet_cli.lines(lines_of(fleet_cli.fleet.msisdns))
    first = fleet_cli.cli.json(*fleet_cli.bulk_renew(file))
    assert (first["succeeded"], first["failed"]) == (3, 0)

    checked = fleet_cli.cli.json(*fleet_cli.bulk_renew(file, "--dry-run"))
    again = fleet_cli.cli.run(*fleet_cli.bulk_renew(file))
    asked = fleet_cli.cli.run(*fleet_cli.bulk_renew(file, "--renew-again"))

    assert (checked["accepted"], checked["renewed_recently"], checked["total"]) == (0, 3, "0.00")
    assert "bulk_line_renewed_recently" in again.stdout and "--renew-again" in again.stdout
    assert again.stderr.startswith("error [bulk_nothing_to_renew]: "), again.stderr
    assert asked.returncode == 0, asked.stderr
    assert "3 renewed, 0 failed" in asked.stdout


def test_the_result_file_writes_no_cell_a_spreadsheet_would_run(fleet_cli: FleetCli) -> None:
    renewed = fleet_cli.fleet.msisdns[0]
    file = fleet_cli.lines(f'{renewed},pack_5gb_7d\n=HYPERLINK("x"),pack_5gb_7d\n@SUM(1),x\n')
    result = fleet_cli.directory / "result.csv"

    made = fleet_cli.cli.run(*fleet_cli.bulk_renew(file, "--result", str(result)))

    assert made.returncode == 0, made.stderr
    rows = list(csv.reader(io.StringIO(result.read_text("utf-8"))))
    assert [row[1] for row in rows[1:]] == ["'" + renewed, '\'=HYPERLINK("x")', "'@SUM(1)"]
    assert [row[3] for row in rows[1:]] == ["succeeded", "rejected", "rejected"]
    for row in rows:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row


def test_a_file_that_cannot_be_written_is_one_error_line_before_anything_is_done(
    fleet_cli: FleetCli,
) -> None:
    file = fleet_cli.lines(lines_of(fleet_cli.fleet.msisdns))
    folder = fleet_cli.directory / "a-folder"
    folder.mkdir()
    missing = fleet_cli.directory / "no-such-folder" / "result.csv"
    month = f"{dt.datetime.now(dt.UTC):%Y-%m}"

    for target in (folder, missing):
        refused = fleet_cli.cli.run(*fleet_cli.bulk_renew(file, "--result", str(target)))
        assert_one_error_line(refused, "fleet_file_unwritable")
        assert str(target) in refused.stderr and refused.stdout == ""
        invoice = fleet_cli.cli.run(
            "organisations", "invoice", fleet_cli.fleet.organisation_id, "--month", month,
            "--output", str(target),
        )  # fmt: skip
        assert_one_error_line(invoice, "fleet_file_unwritable")
    # Nothing was renewed: the same file's dry run still accepts every line.
    checked = fleet_cli.cli.json(*fleet_cli.bulk_renew(file, "--dry-run"))
    assert checked["accepted"] == 3


def test_an_invoice_month_out_of_range_is_one_error_line(fleet_cli: FleetCli) -> None:
    organisation = fleet_cli.fleet.organisation_id
    for month, code in (("9999-12", "invoice_month_out_of_range"), ("2026-13", "month_invalid")):
        refused = fleet_cli.cli.run("organisations", "invoice", organisation, "--month", month)
        assert_one_error_line(refused, code)
    unknown = fleet_cli.cli.run("organisations", "invoice", "no-such-org", "--month", "9999-12")
    assert_one_error_line(unknown, "organisation_unknown")
    assert not list(fleet_cli.directory.glob("*.pdf"))


def test_a_refused_line_is_told_as_a_sentence_in_the_check_and_the_result_file(
    fleet_cli: FleetCli,
) -> None:
    renewed = fleet_cli.fleet.msisdns[0]
    file = fleet_cli.lines(f"{renewed},pack_5gb_7d\n0199999999,pack_5gb_7d\n")
    result = fleet_cli.directory / "result.csv"

    checked = fleet_cli.cli.run(*fleet_cli.bulk_renew(file, "--dry-run"))
    made = fleet_cli.cli.run(*fleet_cli.bulk_renew(file, "--result", str(result)))

    assert checked.returncode == 0, checked.stderr
    said = " ".join(checked.stdout.split())  # the table wraps long cells
    assert "card_not_in_organisation: This number is not one of your organisation's" in said
    assert made.returncode == 0, made.stderr
    rows = list(csv.DictReader(io.StringIO(result.read_text("utf-8"))))
    assert [row["outcome"] for row in rows] == ["succeeded", "rejected"]
    assert rows[0]["message"] == ""
    assert rows[1]["error_code"] == "card_not_in_organisation"
    assert rows[1]["message"].startswith("This number is not one of your organisation's cards.")
