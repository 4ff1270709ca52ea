"""Commands about cards: list them, a card's balance, a card's history."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from topup.entrypoints.cli.output import JsonOption, console, print_json, run
from topup.services import queries


def cards(
    limit: Annotated[int, typer.Option(help="How many cards to list.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many cards.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List cards with their status and balances."""
    rows = run(
        lambda application: queries.list_cards(application.services, limit=limit, offset=offset)
    )
    if as_json:
        print_json({"cards": rows})
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


def balance(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    as_json: JsonOption = False,
) -> None:
    """Credit, data left, validity and status of a card, as of now."""
    row = run(lambda application: queries.balance(application.services, card))
    if as_json:
        print_json(row)
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


def history(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    limit: Annotated[int, typer.Option(help="How many items of each kind.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Renewals and card events, newest first."""
    data = run(lambda application: queries.history(application.services, card, limit=limit))
    if as_json:
        print_json(data)
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
