"""`topup auto-renew` and `topup auto-renewals` refuse bad options with one error line and a
code: a missing --plan or payment, --days out of its range, a saved payment card of an account
that never linked the card."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import EXIT_INPUT, Cli

CARD = "+60123456789"  # demo: prepaid


def test_auto_renewals_days_out_of_range_is_one_error_line(
    database_url: str, tmp_path: Path
) -> None:
    cli = Cli(database_url, tmp_path)
    cli.json("init", "--demo")

    huge = cli.run("auto-renewals", "--days", "99999999")
    negative = cli.run("auto-renewals", "--days", "-1")

    for completed in (huge, negative):
        assert completed.returncode == EXIT_INPUT, completed.stderr
        assert completed.stderr.startswith("error [auto_renewals_days_invalid]: "), completed.stderr
        assert "0 to 366" in completed.stderr
    assert cli.json("auto-renewals", "--days", "366") == {"auto_renewals": []}


def test_auto_renew_without_a_plan_or_a_payment_is_one_error_line(
    database_url: str, tmp_path: Path
) -> None:
    cli = Cli(database_url, tmp_path)
    cli.json("init", "--demo")

    no_plan = cli.run("auto-renew", CARD, "--credit")
    no_payment = cli.run("auto-renew", CARD, "--plan", "pack_5gb_7d")

    assert no_plan.returncode == EXIT_INPUT
    assert no_plan.stderr.splitlines() == [
        "error [auto_renewal_plan_required]: Give --plan with the plan to renew with each period,"
        " or --off to turn auto-renewal off."
    ]
    assert no_payment.returncode == EXIT_INPUT
    assert no_payment.stderr.startswith("error [auto_renewal_payment_required]: ")
    assert "Usage:" not in no_plan.stderr + no_payment.stderr
