"""Commands about plans: what is on sale."""

from __future__ import annotations

from typing import Annotated

import typer

from topup.entrypoints.cli.output import JsonOption, console, print_json, run, table


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
    from topup.entrypoints.views_json import card_json, plan_json
    from topup.services import queries

    card_view, offers = run(
        lambda application: queries.list_plans(
            application.services, card_number=card, channel=channel
        )
    )
    card_summary = None if card_view is None else card_json(card_view)
    rows = [plan_json(offer, locale) for offer in offers]
    if as_json:
        print_json({"card": card_summary, "plans": rows})
        return
    shown = table(
        "plan",
        "name",
        "kind",
        "price",
        "data MB",
        "days",
        "channels",
        whole=("plan", "kind", "price"),
    )
    for row in rows:
        shown.add_row(
            row["code"],
            row["name"],
            row["kind"],
            f"{row['price']} {row['currency']}",
            str(row["data_quota_mb"]),
            str(row["validity_days"]),
            ", ".join(row["channels"]),
        )
    console().print(shown)
