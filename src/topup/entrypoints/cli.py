"""`topup`: the command line. Thin: parse, call a service, render. Errors are one line, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from topup.adapters import messages
from topup.adapters.profiles import load_profile
from topup.bootstrap import Application, build, migrate
from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError
from topup.entrypoints import runtime
from topup.entrypoints.views_json import card_json, history_json, plan_json
from topup.ports import CardDetails
from topup.services import audit as audit_service
from topup.services import queries
from topup.services.activation import request_refund
from topup.services.confirmation import confirm_payment
from topup.services.demo import load_demo
from topup.services.payment_methods import offered_methods
from topup.services.reconcile import reconcile_payments
from topup.services.renewals import RenewalRequest, get_renewal, renew
from topup.services.views import RenewalView
from topup.services.wallets import payer_returned
from topup.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Renew mobile-data cards.")
console = Console()
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ChannelOption = Annotated[str, typer.Option(help="web, store, kiosk, app or api.")]
RegionOption = Annotated[
    str | None, typer.Option(help="Where the kiosk or store stands (see `topup methods`).")
]
EXIT_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERNAL = 70
LANGUAGE_VARIABLE = "TOPUP_LANGUAGE"  # en, zh_Hans, ms or id; default: the profile's first locale


def _language() -> str:
    """The language of error messages: TOPUP_LANGUAGE, else the operator profile's default."""
    chosen = os.environ.get(LANGUAGE_VARIABLE, "").strip()
    if chosen:
        return chosen
    try:
        return load_profile(Settings().profile).default_locale
    except (TopupError, ValueError):  # a bad profile or setting: say so in English
        return messages.DEFAULT_LOCALE


def _fail(
    code: str, message: str, exit_code: int, params: Mapping[str, str] | None = None
) -> typer.Exit:
    """Print ``error [code]: <message in the chosen language>``; ``message`` is the English text,
    used when the catalogue has no text for the code or ``params`` do not fill it."""
    return _fail_with(TopupError(message, code=code, params=params), exit_code)


def _fail_with(error: TopupError, exit_code: int) -> typer.Exit:
    try:
        text = messages.message_for(error, _language())
    except (InvariantError, OSError):  # a broken catalogue must not hide the error itself
        text = error.message
    print(f"error [{error.code}]: {text}", file=sys.stderr)
    return typer.Exit(exit_code)


def _run(work: Callable[[Application], Awaitable[T]], **build_options: Any) -> T:
    async def main() -> T:
        application = build(**build_options)
        try:
            return await work(application)
        finally:
            await application.close()

    try:
        return runtime.run(main())
    except TopupError as error:
        exit_code = EXIT_INPUT if isinstance(error, InputError | NotFoundError) else EXIT_FAILED
        raise _fail_with(error, exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as error:  # a bug or an unreachable database: one line, no traceback
        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise _fail("internal_error", detail, EXIT_INTERNAL, {"detail": detail}) from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True))


@app.command()
def init(
    demo: Annotated[bool, typer.Option("--demo", help="Load demo plans and cards.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or upgrade the database schema; with --demo, load demo data."""
    settings = Settings()
    try:
        migrate(settings.database_url)
    except Exception as error:
        raise _fail(
            "database_unavailable",
            f"cannot migrate the database: {type(error).__name__}",
            EXIT_INTERNAL,
        ) from None
    result: dict[str, Any] = {"migrated": True, "database": settings.database_url.split("@")[-1]}
    if demo:
        result["demo"] = _run(lambda application: load_demo(application.services))
    if as_json:
        _print_json(result)
    else:
        console.print(f"database ready ({result['database']})")
        if demo:
            console.print(
                f"demo data: {result['demo']['plans']} plans, {result['demo']['cards_added']} new cards"
            )


@app.command()
def cards(
    limit: Annotated[int, typer.Option(help="How many cards to list.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many cards.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List cards with their status and balances."""
    views = _run(
        lambda application: queries.list_cards(application.services, limit=limit, offset=offset)
    )
    rows = [card_json(view) for view in views]
    if as_json:
        _print_json({"cards": rows})
        return
    table = Table("card", "ICCID", "kind", "status", "credit", "data MB", "valid until", "bill due")
    for row in rows:
        table.add_row(
            row["msisdn"],
            row["iccid"],
            row["kind"],
            row["status"],
            f"{row['credit']} {row['currency']}",
            str(row["data_quota_mb"]),
            row["validity_end"] or "-",
            f"{row['bill_due']} {row['currency']}" if row["bill_due_minor"] else "-",
        )
    console.print(table)


@app.command()
def plans(
    card: Annotated[
        str | None, typer.Option("--card", help="Only plans this card may buy.")
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Only plans sold on this channel.")] = None,
    locale: Annotated[
        str, typer.Option(help="Language of plan names (en, ms, zh_Hans, id).")
    ] = "en",
    as_json: JsonOption = False,
) -> None:
    """List plans on sale."""
    card_view, offers = _run(
        lambda application: queries.list_plans(
            application.services, card_number=card, channel=channel
        )
    )
    card_summary = None if card_view is None else card_json(card_view)
    rows = [plan_json(offer, locale) for offer in offers]
    if as_json:
        _print_json({"card": card_summary, "plans": rows})
        return
    table = Table("plan", "name", "kind", "price", "data MB", "days", "channels")
    for row in rows:
        table.add_row(
            row["code"],
            row["name"],
            row["kind"],
            f"{row['price']} {row['currency']}",
            str(row["data_quota_mb"]),
            str(row["validity_days"]),
            ",".join(row["channels"]),
        )
    console.print(table)


def _parse_expiry(text: str) -> tuple[int, int]:
    month, separator, year = text.strip().partition("/")
    if not separator or not month.isdigit() or not year.isdigit() or len(year) not in (2, 4):
        raise _fail("expiry_invalid", "expiry must look like MM/YY", EXIT_INPUT)
    full_year = int(year) + 2000 if len(year) == 2 else int(year)
    return int(month), full_year


def _render_renewal(view: RenewalView, as_json: bool) -> None:
    data = view.to_dict()
    if as_json:
        _print_json(data)
        return
    console.print(f"renewal [bold]{data['id']}[/bold]: {data['status']}")
    console.print(
        f"  card {data['card_number']}  plan {data['plan']}  amount {data['amount']} {data['currency']}"
    )
    if data.get("payment"):
        payment = data["payment"]
        console.print(
            f"  paid with {payment['brand']} ****{payment['last4']} ({payment['funding']}): {payment['status']}"
        )
    next_action = data.get("next_action")
    if next_action and next_action["type"] == "approve_in_wallet":
        console.print(f"  approve the payment in the wallet app: {next_action['url']}")
    elif next_action:
        console.print(f"  give the payment password: topup confirm {data['id']}")
    if data["estimated_activation_by"] and data["status"] == "activating":
        console.print(
            f"  expected to take effect by {data['estimated_activation_by']}; "
            f"contact customer service if not active by {data['contact_support_after']}"
        )
    for step in data["timeline"]:
        console.print(f"  {step['at']}  {step['from'] or '-'} -> {step['to']}: {step['reason']}")


@app.command(name="renew")
def renew_command(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    plan: Annotated[str, typer.Argument(help="Plan code (see `topup plans --card CARD`).")],
    card_number: Annotated[
        str | None, typer.Option("--card-number", help="Payment card number.")
    ] = None,
    expiry: Annotated[
        str | None, typer.Option("--expiry", help="Payment card expiry, MM/YY.")
    ] = None,
    cvc: Annotated[str | None, typer.Option("--cvc", help="Payment card security code.")] = None,
    wallet_account: Annotated[
        str | None,
        typer.Option("--wallet-account", help="E-wallets: the phone number of the wallet."),
    ] = None,
    channel: ChannelOption = "web",
    region: RegionOption = None,
    method: Annotated[
        str, typer.Option(help="credit_card or debit_card (see `topup methods`).")
    ] = "credit_card",
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Same key, same renewal.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Renew a card: pay for a plan; activation follows asynchronously (see `topup worker`)."""
    payment = None
    if card_number is not None or expiry is not None or cvc is not None:
        month, year = _parse_expiry(expiry or "")
        payment = CardDetails(
            number=card_number or "", expiry_month=month, expiry_year=year, cvc=cvc or ""
        )
    request = RenewalRequest(
        card_number=card,
        plan_code=plan,
        channel=channel,
        region=region,
        method=method,
        idempotency_key=idempotency_key,
        payment=payment,
        wallet_account=wallet_account,
    )
    view = _run(lambda application: renew(application.services, request))
    _render_renewal(view, as_json)
    _fail_if_declined(view)


def _fail_if_declined(view: RenewalView) -> None:
    if view.status == "declined":
        code = view.renewal.decline_code or "payment_failed"
        raise _fail(code, "the payment was declined", EXIT_FAILED)


@app.command()
def methods(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    plan: Annotated[str, typer.Argument(help="Plan code.")],
    channel: ChannelOption = "web",
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """The payment methods offered here for renewing this card with this plan, or why none."""
    offer = _run(
        lambda application: offered_methods(
            application.services,
            card_number=card,
            plan_code=plan,
            channel=channel,
            region=region,
        )
    )
    locale = _language()
    data = offer.to_dict(locale)
    if as_json:
        _print_json(data)
        return
    where = f"{channel} in {region}" if region else channel
    console.print(f"{data['amount']} {data['currency']} on {where}:")
    for method in data["methods"]:
        console.print(f"  {method['code']:<20} {method['name']}")
    if data["reason"]:
        console.print(f"  {data['reason']}")


@app.command()
def confirm(
    renewal_id: Annotated[str, typer.Argument(help="Renewal id waiting for a payment password.")],
    answer: Annotated[
        str,
        typer.Option(
            prompt="Payment password",
            hide_input=True,
            help="The payment password or 3-D Secure code (asked for when not given).",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Give the payment password / 3-D Secure code a renewal is waiting for."""
    view = _run(lambda application: confirm_payment(application.services, renewal_id, answer))
    _render_renewal(view, as_json)
    _fail_if_declined(view)


@app.command(name="payer-returned")
def payer_returned_command(
    renewal_id: Annotated[str, typer.Argument(help="A renewal paid by e-wallet.")],
    as_json: JsonOption = False,
) -> None:
    """The payer is back from the wallet app: ask the wallet how it went and record it."""
    view = _run(lambda application: payer_returned(application.services, renewal_id))
    _render_renewal(view, as_json)
    _fail_if_declined(view)


@app.command()
def refund(
    renewal_id: Annotated[str, typer.Argument(help="A paid renewal not yet applied.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the renewal's job).")],
    as_json: JsonOption = False,
) -> None:
    """Staff: stop a paid renewal's activation and refund its payment in full (the worker sends
    the refund). Asking again changes nothing."""
    outcome = _run(
        lambda application: request_refund(application.services, renewal_id, reason=reason)
    )
    if as_json:
        _print_json({"renewal_id": renewal_id, "refund": outcome})
    else:
        console.print(f"refund of {renewal_id}: {outcome.replace('_', ' ')}")


@app.command()
def reconcile(as_json: JsonOption = False) -> None:
    """Ask the gateway once about every payment whose outcome is due to be checked (the worker
    also does this on its own)."""
    checked = _run(lambda application: reconcile_payments(application.services))
    if as_json:
        _print_json({"checked": checked})
    else:
        console.print(f"{checked} payments checked with the gateway")


@app.command()
def status(
    renewal_id: Annotated[str, typer.Argument(help="Renewal id.")], as_json: JsonOption = False
) -> None:
    """Where a renewal stands, with its timeline and expected activation time."""
    view = _run(lambda application: get_renewal(application.services, renewal_id))
    _render_renewal(view, as_json)


@app.command()
def balance(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    as_json: JsonOption = False,
) -> None:
    """Credit, data left, validity and status of a card, as of now."""
    row = card_json(_run(lambda application: queries.balance(application.services, card)))
    if as_json:
        _print_json(row)
        return
    console.print(f"card {row['msisdn']} ({row['kind']}): {row['status']}")
    if row["kind"] == "prepaid":
        console.print(f"  credit {row['credit']} {row['currency']}, data {row['data_quota_mb']} MB")
        console.print(
            f"  valid until {row['validity_end'] or '-'}; grace until {row['grace_end'] or '-'}"
        )
    else:
        console.print(
            f"  bill due {row['bill_due']} {row['currency']} by {row['bill_due_date'] or '-'}"
        )


@app.command()
def history(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    limit: Annotated[int, typer.Option(help="How many items of each kind.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Renewals and card events, newest first."""
    data = history_json(
        _run(lambda application: queries.history(application.services, card, limit=limit))
    )
    if as_json:
        _print_json(data)
        return
    table = Table("when", "renewal", "plan", "amount", "status")
    for row in data["renewals"]:
        table.add_row(
            row["created_at"],
            row["id"],
            row["plan"],
            f"{row['amount']} {row['currency']}",
            row["status"],
        )
    console.print(table)
    for event in data["card_events"]:
        console.print(f"{event['at']}  {event['kind']}  {json.dumps(event['detail'])}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (each with its own pool).", min=1, max=64)
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = False,
) -> None:
    """Serve the HTTP API v1 (docs at /api/docs) until stopped."""
    import uvicorn

    uvicorn.run(
        "topup.entrypoints.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info",
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Do what is due now, then exit.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run activations, refunds, payment checks and card lifecycle changes."""
    from topup.entrypoints.worker import run_forever, work_once

    events: list[dict[str, str]] = []

    def on_event(kind: str, data: dict[str, str]) -> None:
        if as_json and once:
            events.append({"event": kind, **data})  # printed with the summary: one JSON object
            return
        if as_json:
            _print_json({"event": kind, **data})  # a worker that runs on: one object per line
        else:
            console.print(f"{kind}: " + " ".join(f"{key}={value}" for key, value in data.items()))
        sys.stdout.flush()

    async def work(application: Application) -> int:
        if once:
            return await work_once(application.services)
        await run_forever(application.services)
        return 0

    done = _run(work, on_event=on_event)
    if once and as_json:
        _print_json({"done": done, "events": events})


@app.command()
def audit(as_json: JsonOption = False) -> None:
    """Recompute balances from ledger entries and check every invariant. Exit 1 on any violation."""
    report = _run(lambda application: audit_service.audit(application.services))
    if as_json:
        _print_json(
            {"clean": report.clean, "checked": report.checked, "violations": report.violations}
        )
    else:
        for violation in report.violations:
            console.print(f"[red]violation[/red]: {violation}")
        console.print(f"audit {'clean' if report.clean else 'FAILED'}: {report.checked}")
    if not report.clean:
        raise typer.Exit(EXIT_FAILED)


api_keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys of stores, kiosks, partners and staff (X-API-Key header).",
)
app.add_typer(api_keys_app, name="api-keys")


@api_keys_app.command(name="create")
def api_keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. 'Kiosk 3, KL Sentral'.")],
    role: Annotated[str, typer.Option(help="staff, store, kiosk or partner.")],
    outlet: Annotated[
        str | None, typer.Option(help="The store or kiosk the key belongs to (store, kiosk).")
    ] = None,
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key. The full key is printed this once: store it now; only a hash is kept."""
    from topup.services.api_keys import create_api_key

    summary, key = _run(
        lambda application: create_api_key(
            application.services, name=name, role=role, outlet=outlet, region=region
        )
    )
    if as_json:
        _print_json({"api_key": summary, "key": key})
        return
    console.print(
        f"API key {summary['id']} ({summary['role']}, channel {summary['channel']}, "
        f"prefix {summary['prefix']}) created:"
    )
    print(key)
    console.print("[yellow]Store it now: it is shown this once and cannot be recovered.[/yellow]")


@api_keys_app.command(name="list")
def api_keys_list(
    limit: Annotated[int, typer.Option(help="How many keys to list.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many keys.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List keys, oldest first, revoked ones included (never their secrets)."""
    from topup.services.api_keys import list_api_keys

    rows = _run(lambda application: list_api_keys(application.services, limit=limit, offset=offset))
    if as_json:
        _print_json({"api_keys": rows})
        return
    table = Table("id", "prefix", "name", "role", "outlet", "region", "created", "status")
    for row in rows:
        table.add_row(
            row["id"],
            row["prefix"],
            row["name"],
            row["role"],
            row["outlet"] or "-",
            row["region"] or "-",
            row["created_at"],
            row["status"],
        )
    console.print(table)


@api_keys_app.command(name="revoke")
def api_keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `topup api-keys list`).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: every server refuses it from the next request on."""
    from topup.services.api_keys import revoke_api_key

    summary = _run(lambda application: revoke_api_key(application.services, key_id))
    if as_json:
        _print_json({"api_key": summary})
        return
    console.print(f"API key {summary['id']} ({summary['name']}) revoked at {summary['revoked_at']}")


def main() -> None:
    app()


@app.command(name="errors")
def errors_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the table as docs/error-codes.md.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Every error code: what it means, whether retrying can help, what to suggest."""
    entries = messages.catalogue()
    if as_json:
        _print_json({"errors": [entry.to_dict() for entry in entries]})
    elif markdown:
        sys.stdout.write(messages.markdown_table())
    else:
        table = Table("code", "retry can help", "meaning", "suggestion")
        for entry in entries:
            table.add_row(
                entry.code, "yes" if entry.retryable else "no", entry.meaning, entry.suggestion
            )
        console.print(table)


@app.command(name="sandbox-sms")
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
        raise _fail("sms_outbox_off", "TOPUP_SANDBOX_SMS_OUTBOX is empty", EXIT_INPUT, {})
    sent = read_outbox(Path(outbox), last=last)
    if as_json:
        _print_json({"messages": [asdict(message) for message in sent]})
        return
    table = Table("sent at", "to", "text")
    for message in sent:
        table.add_row(message.sent_at, message.msisdn, message.text)
    console.print(table)


def _settlement_day(text: str | None) -> Any:
    """A --date option as a date (None when not given), or one error line."""
    from topup.services.settlement import parse_settlement_day

    if text is None:
        return None
    try:
        return parse_settlement_day(text)
    except TopupError as error:
        raise _fail_with(error, EXIT_INPUT) from None


@app.command(name="sandbox-settlement")
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

    day = _settlement_day(date)
    path = journal or DEFAULT_JOURNAL_PATH
    try:
        text = settlement_csv(path, day, load_profile(Settings().profile).time_zone)
    except TopupError as error:
        raise _fail_with(error, EXIT_INPUT) from None
    if as_json:
        lines = text.count("\n") - 1  # the header is not a settlement line
        _print_json({"date": day.isoformat(), "journal": path, "lines": lines, "csv": text})
    else:
        sys.stdout.write(text)


@app.command(name="settle")
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

    day = _settlement_day(date)
    try:
        with open(file, "rb") as handle:
            data = handle.read(SETTLEMENT_FILE_BYTES_MAX + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise _fail(
            "settlement_file_unreadable",
            f"cannot read {file}: {reason}",
            EXIT_INPUT,
            {"path": file, "reason": reason},
        ) from None
    report = _run(lambda application: settle(application.services, settlement_text(data), day=day))
    if as_json:
        _print_json(report.to_dict())
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
