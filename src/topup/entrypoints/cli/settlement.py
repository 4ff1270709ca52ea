"""Commands about settlement: the sandbox gateway's settlement file and matching one with our
books. Settlement days are the operator's days (the profile's time zone), not UTC days."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from topup.domain.errors import TopupError
from topup.entrypoints.cli.output import (
    EXIT_FAILED,
    EXIT_INPUT,
    JsonOption,
    console,
    fail,
    fail_with,
    print_json,
    run,
)

if TYPE_CHECKING:
    import datetime as dt

    from topup.services.settlement import SettlementReport


def settlement_day(text: str | None) -> dt.date | None:
    """A --date option as a date (None when not given), or one error line."""
    from topup.services.settlement import parse_settlement_day

    if text is None:
        return None
    try:
        return parse_settlement_day(text)
    except TopupError as error:
        raise fail_with(error, EXIT_INPUT) from None


def sandbox_settlement_command(
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="The day to settle, YYYY-MM-DD, in the operator's time zone "
            "[default: the operator's today].",
        ),
    ] = None,
    journal: Annotated[
        str | None,
        typer.Option(
            "--journal",
            envvar="TOPUP_SANDBOX_JOURNAL",
            help="The sandbox's settlement journal [default: var/sandbox-settlements.jsonl].",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The sandbox gateway's settlement file for one day, as CSV on stdout (for `topup settle`)."""
    from topup import bootstrap
    from topup.adapters.gateways.sandbox_settlement import DEFAULT_JOURNAL_PATH, settlement_csv

    path = journal or DEFAULT_JOURNAL_PATH
    try:
        profile = bootstrap.operator_profile()
        day = settlement_day(date) or bootstrap.operator_today(profile)
        text = settlement_csv(path, day, profile.time_zone)
    except TopupError as error:
        raise fail_with(error, EXIT_INPUT) from None
    if as_json:
        lines = text.count("\n") - 1  # the header is not a settlement line
        print_json({"date": day.isoformat(), "journal": path, "lines": lines, "csv": text})
    else:
        sys.stdout.write(text)


def settle_command(
    file: Annotated[str, typer.Argument(help="The gateway's settlement file (CSV).")],
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="Also check this day (YYYY-MM-DD, the operator's); the day a file without "
            "lines is checked for [default: the operator's today].",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Match a gateway settlement file with our payments and activations. Exit 1 on any
    discrepancy, 2 if the file cannot be read, is not valid or has no lines."""
    from topup.services.settlement import SETTLEMENT_FILE_BYTES_MAX, settle, settlement_text

    day = settlement_day(date)
    try:
        with open(file, "rb") as handle:
            data = handle.read(SETTLEMENT_FILE_BYTES_MAX + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise fail(
            "settlement_file_unreadable",
            f"cannot read {file}: {reason}",
            EXIT_INPUT,
            {"path": file, "reason": reason},
        ) from None
    report = run(lambda application: settle(application.services, settlement_text(data), day=day))
    if report.lines == 0:
        raise _empty_file(file, report)
    if as_json:
        from topup.entrypoints.views_json import settlement_json

        print_json(settlement_json(report))
    else:
        _print_settlement(report)
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)


def _empty_file(file: str, report: SettlementReport) -> typer.Exit:
    """A file without lines settles nothing: one error line naming the day it was checked for
    and how many of our payments and refunds that day it should have listed."""
    days = ", ".join(each.isoformat() for each in report.days)
    unlisted = len(report.discrepancies) + len(report.in_progress)
    return fail(
        "settlement_file_empty",
        f"{file} has no settlement lines; on {days} (the operator's day) "
        f"{unlisted} of our payments and refunds are not in it",
        EXIT_INPUT,
        {"path": file, "date": days, "unlisted": str(unlisted)},
    )


def _print_settlement(report: SettlementReport) -> None:
    from rich.markup import escape

    out = console()
    for colour, findings in (("red", report.discrepancies), ("yellow", report.in_progress)):
        for finding in findings:
            where = f"line {finding.line}" if finding.line else f"payment {finding.payment_id}"
            out.print(
                f"[{colour}]{finding.kind}[/{colour}] {escape(where)} "
                f"(renewal {escape(finding.renewal_id or '-')}): {escape(finding.detail)}"
            )
    days = ", ".join(each.isoformat() for each in report.days) or "no day"
    counts = [f"{kind} {count}" for kind, count in report.counts().items() if count]
    out.print(
        f"settlement {'clean' if report.clean else 'FAILED'} ({days}): {report.lines} lines, "
        f"{report.matched} matched, {len(report.in_progress)} in progress; "
        + (", ".join(counts) or "no discrepancy")
    )
