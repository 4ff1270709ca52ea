"""`topup usage import FILE`: usage records from the network (CSV or JSON lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from topup.entrypoints.cli.output import (
    EXIT_FAILED,
    EXIT_INPUT,
    JsonOption,
    console,
    fail,
    print_json,
    run,
    table,
)

usage_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Usage records from the network: they debit the cards' data quotas.",
)

FIRST_LINE_BYTES_MAX = 4096


@usage_app.command(name="import")
def usage_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header, or JSON lines (.jsonl).")],
    as_json: JsonOption = False,
) -> None:
    """Apply each record once by its record id (a re-sent file changes nothing); list the bad
    lines by number. Exit 1 if any line was bad (the good ones are applied all the same)."""
    from topup.domain.usage_files import detect_format
    from topup.services.usage import import_usage

    try:
        with file.open(encoding="utf-8", newline="") as handle:
            kind = detect_format(file.name, handle.readline(FIRST_LINE_BYTES_MAX))
    except (OSError, UnicodeDecodeError) as error:
        raise fail(
            "usage_file_unreadable",
            f"cannot read {file}: {type(error).__name__}",
            EXIT_INPUT,
            {"file": str(file)},
        ) from None

    async def work(application: Any) -> Any:
        with file.open(encoding="utf-8", errors="replace", newline="") as handle:
            return await import_usage(application.services, handle, kind=kind, pause_collector=True)

    summary = run(work)
    data = {
        "file": str(file),
        "format": kind.value,
        "records": summary.records,
        "applied": summary.applied,
        "duplicates": summary.duplicates,
        "earlier_period": summary.earlier_period,
        "postpaid": summary.postpaid,
        "card_expired": summary.card_expired,
        "debited_mb": summary.debited_mb,
        "cards": summary.cards,
        "events": summary.events,
        "bad_lines": summary.problem_count,
        "problems": [
            {"line": problem.line, "code": problem.code, "message": problem.message}
            for problem in summary.problems
        ],
    }
    if as_json:
        print_json(data)
    else:
        _print_summary(data)
    if summary.problem_count:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(data: dict[str, Any]) -> None:
    out = console()
    kept = [
        f"{data[key]} {what}"
        for key, what in (
            ("earlier_period", "of an earlier period"),
            ("postpaid", "of postpaid cards"),
            ("card_expired", "of expired cards"),
        )
        if data[key]
    ]
    out.print(
        f"{data['applied']} records applied, {data['duplicates']} already applied, "
        f"{data['bad_lines']} bad lines; {data['debited_mb']} MB debited from "
        f"{data['cards']} cards, {data['events']} threshold events"
        + (f"; kept, not debited: {', '.join(kept)}" if kept else "")
    )
    if data["problems"]:
        shown = table("line", "code", "problem", whole=("line", "code"))
        for problem in data["problems"]:
            shown.add_row(str(problem["line"]), problem["code"], problem["message"])
        out.print(shown)
        if data["bad_lines"] > len(data["problems"]):
            out.print(f"(and {data['bad_lines'] - len(data['problems'])} more bad lines)")
