"""Operator's commands: create the schema, audit the ledger, list error codes, read the sandbox SMS."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from topup.adapters import messages
from topup.bootstrap import migrate
from topup.entrypoints.cli.output import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERNAL,
    JsonOption,
    console,
    fail,
    print_json,
    run,
)
from topup.services import audit as audit_service
from topup.services.demo import load_demo
from topup.settings import Settings


def init(
    demo: Annotated[bool, typer.Option("--demo", help="Load demo plans and cards.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or upgrade the database schema; with --demo, load demo data."""
    settings = Settings()
    try:
        migrate(settings.database_url)
    except Exception as error:
        raise fail(
            "database_unavailable",
            f"cannot migrate the database: {type(error).__name__}",
            EXIT_INTERNAL,
        ) from None
    result: dict[str, Any] = {"migrated": True, "database": settings.database_url.split("@")[-1]}
    if demo:
        result["demo"] = run(lambda application: load_demo(application.services))
    if as_json:
        print_json(result)
    else:
        console.print(f"database ready ({result['database']})")
        if demo:
            console.print(
                f"demo data: {result['demo']['plans']} plans, {result['demo']['cards_added']} new cards"
            )


def audit(as_json: JsonOption = False) -> None:
    """Recompute balances from ledger entries and check every invariant. Exit 1 on any violation."""
    report = run(lambda application: audit_service.audit(application.services))
    if as_json:
        print_json(
            {"clean": report.clean, "checked": report.checked, "violations": report.violations}
        )
    else:
        for violation in report.violations:
            console.print(f"[red]violation[/red]: {violation}")
        console.print(f"audit {'clean' if report.clean else 'FAILED'}: {report.checked}")
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)


def errors_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the table as docs/error-codes.md.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Every error code: what it means, whether retrying can help, what to suggest."""
    entries = messages.catalogue()
    if as_json:
        print_json({"errors": [entry.to_dict() for entry in entries]})
    elif markdown:
        sys.stdout.write(messages.markdown_table())
    else:
        table = Table("code", "retry can help", "meaning", "suggestion")
        for entry in entries:
            table.add_row(
                entry.code, "yes" if entry.retryable else "no", entry.meaning, entry.suggestion
            )
        console.print(table)


def sandbox_sms_command(
    last: Annotated[int, typer.Option(min=1, max=1000, help="How many messages to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """The last text messages the sandbox SMS provider sent (e.g. a code to link a card)."""
    from dataclasses import asdict
    from pathlib import Path

    from topup.adapters.notify.sandbox_sms import read_outbox

    outbox = Settings().sandbox_sms_outbox
    if not outbox:
        raise fail("sms_outbox_off", "TOPUP_SANDBOX_SMS_OUTBOX is empty", EXIT_INPUT, {})
    sent = read_outbox(Path(outbox), last=last)
    if as_json:
        print_json({"messages": [asdict(message) for message in sent]})
        return
    table = Table("sent at", "to", "text")
    for message in sent:
        table.add_row(message.sent_at, message.msisdn, message.text)
    console.print(table)
