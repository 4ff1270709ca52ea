"""Operator's commands: create the schema, audit the ledger, list error codes, read the sandbox
SMS."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from topup.entrypoints.cli.output import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERNAL,
    JsonOption,
    console,
    fail,
    print_json,
    run,
    table,
)

if TYPE_CHECKING:
    from topup.services.audit import AuditReport


def init(
    demo: Annotated[bool, typer.Option("--demo", help="Load demo plans and cards.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or upgrade the database schema; with --demo, load demo data."""
    from topup.bootstrap import ensure_push_keys, load_settings, migrate, usage_secret
    from topup.services.demo import load_demo

    settings = load_settings()
    ensure_push_keys(settings)  # Web Push's VAPID key pair, once (var/, mode 0600)
    try:
        migrate(settings.database_url)
    except Exception as error:
        raise fail(
            "database_unavailable",
            f"cannot migrate the database: {type(error).__name__}",
            EXIT_INTERNAL,
        ) from None
    result: dict[str, Any] = {"migrated": True, "database": settings.database_url.split("@")[-1]}
    usage_secret(settings, create=True)  # the mediation system's signing secret (issue 11)
    if demo:
        result["demo"] = run(lambda application: load_demo(application.services))
    if as_json:
        print_json(result)
    else:
        console().print(f"database ready ({result['database']})")
        if demo:
            console().print(
                f"demo data: {result['demo']['plans']} plans, {result['demo']['cards_added']} new cards"
            )


def audit(as_json: JsonOption = False) -> None:
    """Recompute balances from ledger entries and check every invariant. Exit 1 on any violation."""
    from topup.services.audit import audit as audit_books

    report = run(lambda application: audit_books(application.services))
    if as_json:
        print_json(
            {"clean": report.clean, "checked": report.checked, "violations": report.violations}
        )
    else:
        _print_audit(report)
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)


def _print_audit(report: AuditReport) -> None:
    """The violations, one a line, then what was checked and the verdict, for a person."""
    from rich.markup import escape

    out = console()
    for violation in report.violations:
        out.print(f"[red]violation[/red]: {escape(violation)}")
    out.print(f"audit {'clean' if report.clean else '[red]FAILED[/red]'}")
    rows = [(f"{what} checked", count) for what, count in report.checked.items()]
    rows.append(("violations", len(report.violations)))
    width = max(len(label) for label, _ in rows)
    for label, count in rows:
        out.print(f"  {label:<{width}}  {count:>8}")


def errors_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the table as docs/error-codes.md.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Every error code: what it means, whether retrying can help, what to suggest."""
    from topup.adapters import messages

    entries = messages.catalogue()
    if as_json:
        print_json({"errors": [entry.to_dict() for entry in entries]})
    elif markdown:
        sys.stdout.write(messages.markdown_table())
    else:
        shown = table("code", "retry can help", "meaning", "suggestion", whole=("code",))
        for entry in entries:
            shown.add_row(
                entry.code, "yes" if entry.retryable else "no", entry.meaning, entry.suggestion
            )
        console().print(shown)


def sandbox_sms_command(
    last: Annotated[int, typer.Option(min=1, max=1000, help="How many messages to show.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """The last text messages the sandbox SMS provider sent (e.g. a code to link a card)."""
    from dataclasses import asdict
    from pathlib import Path

    from topup.adapters.notify.sandbox_sms import read_outbox
    from topup.bootstrap import load_settings

    outbox = load_settings().sandbox_sms_outbox
    if not outbox:
        raise fail("sms_outbox_off", "TOPUP_SANDBOX_SMS_OUTBOX is empty", EXIT_INPUT, {})
    sent = read_outbox(Path(outbox), last=last)
    if as_json:
        print_json({"messages": [asdict(message) for message in sent]})
        return
    shown = table("sent at", "to", "text", whole=("to",))
    for message in sent:
        shown.add_row(message.sent_at, message.msisdn, message.text)
    console().print(shown)
