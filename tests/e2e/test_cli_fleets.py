"""`topup bulk-renew` and `topup organisations invoice` as the operator runs them, on a fleet
made in the test's database (a real clock: the command's): the same file given twice renews
nothing twice unless --renew-again; bad options and paths are one error line with a code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import AppFactory
from tests.e2e.test_cli import Cli
from tests.fleets import Fleet, lines_of, make_fleet
from topup.adapters.clock import SystemClock
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
