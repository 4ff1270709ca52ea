"""Commands about paying: the methods offered, the payment password, the payer back from a
wallet, reconciling with the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from topup.entrypoints.cli.output import (
    ChannelOption,
    JsonOption,
    RegionOption,
    console,
    language,
    print_json,
    run,
)
from topup.entrypoints.cli.renewals import fail_if_declined, render_renewal
from topup.services.confirmation import confirm_payment
from topup.services.payment_methods import offered_methods
from topup.services.reconcile import reconcile_payments
from topup.services.wallets import payer_returned


def methods(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    plan: Annotated[str, typer.Argument(help="Plan code.")],
    channel: ChannelOption = "web",
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """The payment methods offered here for renewing this card with this plan, or why none."""
    offer = run(
        lambda application: offered_methods(
            application.services,
            card_number=card,
            plan_code=plan,
            channel=channel,
            region=region,
        )
    )
    locale = language()
    data = offer.to_dict(locale)
    if as_json:
        print_json(data)
        return
    where = f"{channel} in {region}" if region else channel
    console.print(f"{data['amount']} {data['currency']} on {where}:")
    for method in data["methods"]:
        console.print(f"  {method['code']:<20} {method['name']}")
    if data["reason"]:
        console.print(f"  {data['reason']}")


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
    view = run(lambda application: confirm_payment(application.services, renewal_id, answer))
    render_renewal(view, as_json)
    fail_if_declined(view)


def payer_returned_command(
    renewal_id: Annotated[str, typer.Argument(help="A renewal paid by e-wallet.")],
    as_json: JsonOption = False,
) -> None:
    """The payer is back from the wallet app: ask the wallet how it went and record it."""
    view = run(lambda application: payer_returned(application.services, renewal_id))
    render_renewal(view, as_json)
    fail_if_declined(view)


def reconcile(as_json: JsonOption = False) -> None:
    """Ask the gateway once about every payment whose outcome is due to be checked (the worker
    also does this on its own)."""
    checked = run(lambda application: reconcile_payments(application.services))
    if as_json:
        print_json({"checked": checked})
    else:
        console.print(f"{checked} payments checked with the gateway")
