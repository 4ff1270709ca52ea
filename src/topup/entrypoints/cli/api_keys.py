"""`topup api-keys`: create, list and revoke the API keys of stores, kiosks, partners and staff."""

from __future__ import annotations

from typing import Annotated

import typer

from topup.entrypoints.cli.output import (
    JsonOption,
    RegionOption,
    console,
    moment,
    print_json,
    run,
    table,
    times_caption,
)

WHOLE = ("id / prefix", "role / status")  # never wrapped or cut

api_keys_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="API keys of stores, kiosks, partners and staff (X-API-Key header).",
)


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
    from topup.entrypoints.views_json import api_key_json
    from topup.services.api_keys import create_api_key

    view, key = run(
        lambda application: create_api_key(
            application.services, name=name, role=role, outlet=outlet, region=region
        )
    )
    summary = api_key_json(view)
    if as_json:
        print_json({"api_key": summary, "key": key})
        return
    console().print(
        f"API key {summary['id']} ({summary['role']}, channel {summary['channel']}, "
        f"prefix {summary['prefix']}) created:"
    )
    print(key)
    console().print("[yellow]Store it now: it is shown this once and cannot be recovered.[/yellow]")


@api_keys_app.command(name="list")
def api_keys_list(
    limit: Annotated[int, typer.Option(help="How many keys to list.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many keys.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List keys, oldest first, revoked ones included (never their secrets)."""
    from topup.entrypoints.views_json import api_key_json
    from topup.services.api_keys import list_api_keys

    views = run(lambda application: list_api_keys(application.services, limit=limit, offset=offset))
    rows = [api_key_json(view) for view in views]
    if as_json:
        print_json({"api_keys": rows})
        return
    # Two facts a cell, so that the id (what `api-keys revoke` takes) is never cut at 80 columns.
    shown = table("id / prefix", "role / status", "name / outlet", "region", "created", whole=WHOLE)
    shown.caption = times_caption()
    for row in rows:
        shown.add_row(
            f"{row['id']}\n{row['prefix']}",
            f"{row['role']}\n{row['status']}",
            f"{row['name']}\n{row['outlet'] or '-'}",
            row["region"] or "-",
            moment(row["created_at"]),
        )
    console().print(shown)


@api_keys_app.command(name="revoke")
def api_keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `topup api-keys list`).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: every server refuses it from the next request on."""
    from topup.entrypoints.views_json import api_key_json
    from topup.services.api_keys import revoke_api_key

    summary = api_key_json(run(lambda application: revoke_api_key(application.services, key_id)))
    if as_json:
        print_json({"api_key": summary})
        return
    console().print(
        f"API key {summary['id']} ({summary['name']}) revoked at {summary['revoked_at']}"
    )
