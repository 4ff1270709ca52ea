"""Commands about cards: list them, a card's balance, a card's history."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from topup.entrypoints.cli.output import (
    JsonOption,
    console,
    moment,
    print_json,
    run,
    table,
    times_caption,
)

CardArgument = Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")]


def cards(
    limit: Annotated[int, typer.Option(help="How many cards to list.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many cards.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List cards with their status and balances."""
    from topup.entrypoints.views_json import card_json
    from topup.services import queries

    views = run(
        lambda application: queries.list_cards(application.services, limit=limit, offset=offset)
    )
    rows = [card_json(view) for view in views]
    if as_json:
        print_json({"cards": rows})
        return
    _print_cards(rows)


WIDE_COLUMNS_MIN = 110  # narrower terminals get the ICCID under the number, times under dates


def _wide() -> bool:
    return console().width >= WIDE_COLUMNS_MIN


def _when(text: str | None) -> str:
    """A time for a table: on one line on a wide terminal, else the time under the date."""
    shown = moment(text)
    return shown if _wide() else shown.replace(" ", "\n")


def _print_cards(rows: list[dict[str, Any]]) -> None:
    """Card numbers and ICCIDs are shown whole at any width (never cut to "+60123…"): on a
    narrow terminal the ICCID goes under the number and the time under the date."""
    wide = _wide()
    identity = ("card", "ICCID") if wide else ("card / ICCID",)
    headers = (*identity, "kind", "status", "credit", "data MB", "valid until", "bill due")
    shown = table(*headers, whole=(*identity, "kind", "status", "valid until"))
    for row in rows:
        numbers = (row["msisdn"], row["iccid"]) if wide else (f"{row['msisdn']}\n{row['iccid']}",)
        valid_until = _when(row["validity_end"])
        shown.add_row(
            *numbers,
            row["kind"],
            row["status"],
            f"{row['credit']} {row['currency']}",
            str(row["data_quota_mb"]),
            valid_until,
            f"{row['bill_due']} {row['currency']}" if row["bill_due_minor"] else "-",
        )
    shown.caption = times_caption()
    console().print(shown)


def balance(card: CardArgument, as_json: JsonOption = False) -> None:
    """Credit, data left, validity and status of a card, as of now."""
    from topup.entrypoints.views_json import card_json
    from topup.services import queries

    row = card_json(run(lambda application: queries.balance(application.services, card)))
    if as_json:
        print_json(row)
        return
    out = console()
    out.print(f"card {row['msisdn']} ({row['kind']}): {row['status']}")
    if row["kind"] == "prepaid":
        out.print(f"  credit {row['credit']} {row['currency']}, data {row['data_quota_mb']} MB")
        if row["data_exhausted"] and row["status"] != "expired":
            out.print("  no data left: no internet until the card is renewed")
        out.print(
            f"  valid until {row['validity_end'] or '-'}; grace until {row['grace_end'] or '-'}"
        )
    else:
        out.print(
            f"  bill due {row['bill_due']} {row['currency']} by {row['bill_due_date'] or '-'}"
        )


def history(
    card: CardArgument,
    limit: Annotated[int, typer.Option(help="How many items of each kind.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Renewals, card events and ledger entries of a card, newest first."""
    from topup.entrypoints.views_json import history_json
    from topup.services import queries

    data = history_json(
        run(lambda application: queries.history(application.services, card, limit=limit))
    )
    if as_json:
        print_json(data)
        return
    out = console()
    out.print(f"card {data['card']['msisdn']} ({data['card']['kind']}): {data['card']['status']}")
    _print_section("renewals", _renewal_rows(data["renewals"]))
    _print_section("card events", _card_event_rows(data["card_events"]))
    _print_section("ledger entries", _ledger_rows(data["ledger_entries"]))


Section = tuple[tuple[str, ...], tuple[str, ...], list[tuple[str, ...]]]  # headers, whole, rows


def _renewal_rows(renewals: list[dict[str, Any]]) -> Section:
    """On a narrow terminal the plan goes under the renewal id, so that neither is cut."""
    wide = _wide()
    rows: list[tuple[str, ...]] = []
    for row in renewals:
        renewal = (row["id"], row["plan"]) if wide else (f"{row['id']}\n{row['plan']}",)
        amount = f"{row['amount']} {row['currency']}"
        rows.append((_when(row["created_at"]), *renewal, amount, row["status"]))
    renewal_headers = ("renewal", "plan") if wide else ("renewal / plan",)
    headers = ("when", *renewal_headers, "amount", "status")
    return headers, ("when", *renewal_headers, "amount", "status"), rows


def _card_event_rows(events: list[dict[str, Any]]) -> Section:
    rows: list[tuple[str, ...]] = [
        (_when(event["at"]), event["kind"], json.dumps(event["detail"], ensure_ascii=False))
        for event in events
    ]
    return ("when", "event", "detail"), ("when", "event"), rows


def _ledger_rows(entries: list[dict[str, Any]]) -> Section:
    rows: list[tuple[str, ...]] = [
        (_when(entry["at"]), str(entry["id"]), entry["kind"], entry["memo"]) for entry in entries
    ]
    return ("when", "entry", "kind", "memo"), ("when", "entry", "kind"), rows


def _print_section(title: str, section: Section) -> None:
    """A titled table, or "none" when there is nothing of that kind."""
    headers, whole, rows = section
    out = console()
    if not rows:
        out.print(f"{title}: none")
        return
    shown = table(*headers, whole=whole)
    shown.title = title
    shown.title_justify = "left"
    shown.caption = times_caption()
    for row in rows:
        shown.add_row(*row)
    out.print(shown)
