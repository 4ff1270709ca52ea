"""Commands about settlement: the sandbox gateway's settlement file and matching one with our books."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from topup.adapters.profiles import load_profile
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
from topup.settings import Settings


def settlement_day(text: str | None) -> Any:
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
        str, typer.Option("--date", help="The day to settle, YYYY-MM-DD, in the operator's zone.")
    ],
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
    from topup.adapters.gateways.sandbox_settlement import DEFAULT_JOURNAL_PATH, settlement_csv

    day = settlement_day(date)
    path = journal or DEFAULT_JOURNAL_PATH
    try:
        text = settlement_csv(path, day, load_profile(Settings().profile).time_zone)
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
        typer.Option("--date", help="Also check this day (YYYY-MM-DD) if the file has no line."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Match a gateway settlement file with our payments and activations. Exit 1 on any
    discrepancy, 2 if the file cannot be read or is not valid."""
    from rich.markup import escape

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
    if as_json:
        print_json(report.to_dict())
    else:
        for colour, findings in (("red", report.discrepancies), ("yellow", report.in_progress)):
            for finding in findings:
                where = f"line {finding.line}" if finding.line else f"payment {finding.payment_id}"
                console.print(
                    f"[{colour}]{finding.kind}[/{colour}] {escape(where)} "
                    f"(renewal {escape(finding.renewal_id or '-')}): {escape(finding.detail)}"
                )
        days = ", ".join(each.isoformat() for each in report.days) or "no day"
        counts = [f"{kind} {count}" for kind, count in report.counts().items() if count]
        console.print(
            f"settlement {'clean' if report.clean else 'FAILED'} ({days}): {report.lines} lines, "
            f"{report.matched} matched, {len(report.in_progress)} in progress; "
            + (", ".join(counts) or "no discrepancy")
        )
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)
