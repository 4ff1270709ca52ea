"""`topup organisations` (enterprise fleets, for the operator) and `topup bulk-renew`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from topup.entrypoints.cli.output import (
    EXIT_INPUT,
    JsonOption,
    console,
    fail,
    language,
    print_json,
    run,
    table,
)
from topup.entrypoints.spreadsheets import bulk_result_csv

if TYPE_CHECKING:
    from topup.bootstrap import Application
    from topup.domain.fleets import BulkLine
    from topup.services.fleets.bulk import DryRun, RunProgress

organisations_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Organisations (enterprise fleets): create, members, cards, payment card, invoices.",
)

OrganisationArgument = Annotated[str, typer.Argument(help="The organisation's id.")]
PROGRESS_POLL_S = 0.5


def problem_text(code: str | None, params: Mapping[str, str], *, plan: str, number: str) -> str:
    """A line's problem as a sentence in the operator's language (TOPUP_LANGUAGE), filled with
    what its error gave; the code itself when the catalogue cannot say it ("" for no problem)."""
    from topup.adapters import messages
    from topup.domain.errors import TopupError

    if not code:
        return ""
    error = TopupError(code, code=code, params={"plan": plan, "number": number, **params})
    return messages.message_for(error, language())


def _unwritable(path: Path, why: str) -> typer.Exit:
    return fail(
        "fleet_file_unwritable", f"cannot write {path}: {why}", EXIT_INPUT, {"file": str(path)}
    )


def check_writable(path: Path) -> None:
    """Refuse, before anything is done, a file this command could not write at the end: a
    directory, a folder that does not exist, no permission."""
    if path.is_dir():
        raise _unwritable(path, "it is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise _unwritable(path, "its folder does not exist")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise _unwritable(path, "permission denied")


def write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise _unwritable(path, type(error).__name__) from None


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8-sig") if str(path) != "-" else sys.stdin.read()
    except (OSError, UnicodeDecodeError) as error:
        raise fail(
            "fleet_file_unreadable",
            f"cannot read {path}: {type(error).__name__}",
            EXIT_INPUT,
            {"file": str(path)},
        ) from None


@organisations_app.command(name="create")
def create(
    name: Annotated[str, typer.Argument(help="The organisation's name.")],
    owner: Annotated[str, typer.Option("--owner", help="The owner's account e-mail.")],
    language: Annotated[str, typer.Option(help="Its invoices' language: en, ms, zh_Hans, id.")],
    as_json: JsonOption = False,
) -> None:
    """Create an organisation with its owner (an account that exists)."""
    from topup.services.fleets.organisations import create_organisation

    made = run(
        lambda application: create_organisation(
            application.services, name=name, owner_email=owner, language=language
        )
    )
    if as_json:
        print_json({"organisation": {"id": made.id, "name": made.name, "language": made.language}})
        return
    console().print(f"organisation [bold]{made.id}[/bold] ({made.name}) created")


@organisations_app.command(name="add-member")
def add_member(
    organisation: OrganisationArgument,
    email: Annotated[str, typer.Argument(help="The member's account e-mail.")],
    role: Annotated[str, typer.Option(help="owner, admin or viewer.")] = "viewer",
) -> None:
    """Add a member (or change a member's role)."""
    from topup.domain.fleets import member_role
    from topup.services.fleets.organisations import put_member

    chosen = member_role(role)
    member = run(
        lambda application: put_member(application.services, organisation, email=email, role=chosen)
    )
    console().print(f"{email} is now {member.role.value} of {organisation}")


@organisations_app.command(name="add-cards")
def add_cards(
    organisation: OrganisationArgument,
    file: Annotated[
        Path, typer.Argument(help="One card number (MSISDN or ICCID) a line; - stdin.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Import cards into the organisation's fleet (the operator's import)."""
    from topup.services.fleets.organisations import import_cards

    numbers = [line.split(",")[0] for line in _read(file).splitlines()]
    result = run(lambda application: import_cards(application.services, organisation, numbers))
    if as_json:
        print_json(
            {
                "added": result.added,
                "already_here": result.already_here,
                "in_another_organisation": [line for line, _ in result.in_another_organisation],
                "unknown": [{"line": line, "code": code} for line, _, code in result.unknown],
            }
        )
        return
    console().print(f"{result.added} cards added, {result.already_here} already in the fleet")
    for line, number in result.in_another_organisation:
        console().print(f"  line {line}: {number} belongs to another organisation")
    for line, number, code in result.unknown:
        console().print(f"  line {line}: {number}: {code}")


@organisations_app.command(name="payment-card")
def payment_card(
    organisation: OrganisationArgument,
    token: Annotated[
        str | None, typer.Option(help="A token from the PSP's tokeniser (never a card number).")
    ] = None,
    card_number: Annotated[
        str | None, typer.Option("--card-number", help="Sandbox: a test card, tokenised here.")
    ] = None,
    expiry: Annotated[str | None, typer.Option(help="With --card-number: MM/YY.")] = None,
    cvc: Annotated[str | None, typer.Option(help="With --card-number.")] = None,
) -> None:
    """Charge the organisation's bulk renewals to this payment card (saved as its owner's)."""
    from topup.entrypoints.cli.renewals import parse_expiry
    from topup.ports import PaymentCardDetails
    from topup.services.fleets.organisations import set_payment_token_as_operator

    async def work(application: Application) -> str:
        chosen = token
        if chosen is None:
            if not (card_number and expiry and cvc):
                raise fail(
                    "payment_card_required",
                    "give --token, or --card-number, --expiry and --cvc",
                    EXIT_INPUT,
                )
            month, year = parse_expiry(expiry)
            details = PaymentCardDetails(card_number, month, year, cvc)
            chosen = (await application.services.gateway.tokenize(details)).token
        made = await set_payment_token_as_operator(application.services, organisation, chosen)
        return made.payment_card_id or ""

    saved_id = run(work)
    console().print(f"bulk renewals of {organisation} are charged to saved payment card {saved_id}")


@organisations_app.command(name="invoice")
def invoice(
    organisation: OrganisationArgument,
    month: Annotated[str, typer.Option(help="YYYY-MM, in the operator's time zone.")],
    output: Annotated[
        Path | None, typer.Option(help="Where to write the PDF (default: <number>.pdf).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's consolidated invoice of a month (PDF, in its language)."""
    from topup.services.fleets.invoices import issue_invoice

    if output is not None:
        check_writable(output)
    document = run(
        lambda application: issue_invoice(application.services, None, organisation, month)
    )
    target = output or Path(f"{document.invoice.number}.pdf")
    write_file(target, document.pdf)
    facts = {
        "number": document.invoice.number,
        "month": document.invoice.month,
        "renewals": document.invoice.renewals_count,
        "net": document.invoice.net.decimal_text(),
        "tax": document.invoice.tax.decimal_text(),
        "total": document.invoice.gross.decimal_text(),
        "currency": document.invoice.gross.currency,
        "file": str(target),
    }
    if as_json:
        print_json({"invoice": facts})
        return
    console().print(
        f"invoice {facts['number']}: {facts['renewals']} renewals, total {facts['currency']} "
        f"{facts['total']} (tax {facts['tax']}) -> {target}"
    )


# --- bulk renewal -------------------------------------------------------------------------------


def _print_dry_run(checked: DryRun) -> None:
    from topup.services.fleets.bulk import RENEWED_RECENTLY

    shown = table("line", "number", "plan", "check", whole=("line", "number"))
    for line in checked.lines:
        verdict = "already renewed" if line.already_renewed else "ok"
        if line.problem:
            said = problem_text(
                line.problem, line.problem_params, plan=line.plan_code, number=line.number
            )
            verdict = line.problem if said == line.problem else f"{line.problem}: {said}"
            if line.problem == RENEWED_RECENTLY:
                verdict += f" ({line.problem_params.get('renewed_at', '')})"
        price = (
            f" {line.amount.decimal_text()}" if line.amount is not None and line.accepted else ""
        )
        shown.add_row(str(line.line_no), line.number, line.plan_code, verdict + price)
    console().print(shown)
    console().print(
        f"{checked.accepted} lines to renew ({checked.already_renewed} already renewed), "
        f"{checked.rejected} refused; total {checked.total.currency} {checked.total.decimal_text()}"
    )
    if checked.renewed_recently:
        console().print(
            f"{checked.renewed_recently} lines left out: their cards were renewed by a recent "
            "bulk renewal (--renew-again renews them again)"
        )


def result_csv(lines: list[BulkLine]) -> str:
    """The result file, each line's message in the operator's language (TOPUP_LANGUAGE)."""
    return bulk_result_csv(
        lines,
        lambda line: problem_text(
            line.error_code, line.error_params, plan=line.plan_code, number=line.number
        ),
    )


def bulk_renew(
    file: Annotated[
        Path, typer.Argument(help="CSV of number,plan (a header line is allowed); - stdin.")
    ],
    organisation: Annotated[str, typer.Option("--organisation", help="The organisation's id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the lines only.")] = False,
    result: Annotated[
        Path | None, typer.Option(help="Write the result file (CSV) here once done.")
    ] = None,
    renew_again: Annotated[
        bool,
        typer.Option(
            "--renew-again",
            help="Renew cards that a recent bulk renewal renewed too (left out by default, so "
            "the same file given twice renews nothing twice).",
        ),
    ] = False,
    work_here: Annotated[
        bool,
        typer.Option(
            "--work/--watch",
            help="Renew the lines (and apply their renewals) in this process too (default), or only "
            "watch the workers.",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Renew many cards of an organisation: a dry run, then one run in the background with a
    progress bar, then the result file (line, number, plan, outcome, renewal, receipt, error)."""
    import asyncio

    from topup.services.fleets import bulk

    text = _read(file)
    if result is not None:
        check_writable(result)  # before anything is renewed

    checked = run(
        lambda application: bulk.dry_run_as_operator(
            application.services, organisation, text, renew_again=renew_again
        )
    )
    if not as_json:
        _print_dry_run(checked)
    if dry_run:
        if as_json:
            print_json(
                {
                    "accepted": checked.accepted,
                    "rejected": checked.rejected,
                    "renewed_recently": checked.renewed_recently,
                    "total": checked.total.decimal_text(),
                }
            )
        return

    async def go(application: Application) -> tuple[RunProgress, list[BulkLine]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from topup.domain.errors import TopupError
        from topup.services.activation import run_due_jobs

        services = application.services
        try:  # the total printed above, or nothing is started
            started = await bulk.start_run_as_operator(
                services, organisation, text, renew_again=renew_again, shown_total=checked.total
            )
        except TopupError as error:
            if error.code == "bulk_total_changed" and not as_json:
                console().print("the lines' check changed since the one above; it is now:")
                _print_dry_run(
                    await bulk.dry_run_as_operator(
                        services, organisation, text, renew_again=renew_again
                    )
                )
            raise
        progress_now = await bulk.run_progress(services, None, organisation, started.id)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(),
            disable=as_json,
        ) as shown:
            task = shown.add_task(f"run {started.id}", total=progress_now.to_renew)
            while not progress_now.finished:
                if work_here:
                    # The lines, then the jobs applying the renewals they paid (a line is
                    # renewed once its renewal is applied), as the worker's passes do.
                    taken = await bulk.process_bulk_lines(services)
                    taken += await run_due_jobs(services)
                    if not taken:
                        await asyncio.sleep(PROGRESS_POLL_S)
                else:
                    await asyncio.sleep(PROGRESS_POLL_S)
                progress_now = await bulk.run_progress(services, None, organisation, started.id)
                shown.update(task, completed=progress_now.done)
        lines = await bulk.result_lines(services, None, organisation, started.id)
        return progress_now, lines

    final, lines = run(go)
    if result is not None:
        write_file(result, result_csv(lines).encode("utf-8"))
    summary = {
        "run": final.run.id,
        "succeeded": final.count("succeeded"),
        "failed": final.count("failed"),
        "rejected": final.count("rejected"),
        "result_file": str(result) if result else None,
    }
    if as_json:
        print_json(summary)
        return
    console().print(
        f"run {summary['run']}: {summary['succeeded']} renewed, {summary['failed']} failed, "
        f"{summary['rejected']} refused by the check"
        + (f"; result file {result}" if result else "")
    )
