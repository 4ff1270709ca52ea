"""Commands about paying: the methods offered, the payment password, the payer back from a
wallet, reconciling with the gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from topup.entrypoints.cli.output import (
    ChannelOption,
    JsonOption,
    RegionOption,
    console,
    language,
    print_json,
    run,
    table,
)
from topup.entrypoints.cli.renewals import fail_if_declined, render_renewal

if TYPE_CHECKING:
    from topup.domain.money import Money
    from topup.services.payment_methods import MethodsOffer


def methods(
    card: Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")],
    plan: Annotated[str, typer.Argument(help="Plan code.")],
    channel: ChannelOption = "web",
    region: RegionOption = None,
    as_json: JsonOption = False,
) -> None:
    """The payment methods offered here for renewing this card with this plan, with their
    limits per payment and per day, or why none."""
    from topup.services.payment_methods import offered_methods

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
    from topup.entrypoints.views_json import methods_json

    data = methods_json(offer, locale)
    if as_json:
        print_json(data)
        return
    where = f"{channel} in {region}" if region else channel
    console().print(f"{data['amount']} {data['currency']} on {where}:")
    _print_methods(offer, locale)
    if data["reason"]:
        console().print(f"  {data['reason']}")


def _money(amount: Money) -> str:
    return f"{amount.decimal_text()} {amount.currency}"


def _print_methods(offer: MethodsOffer, locale: str) -> None:
    """One row a method: its code, its name, what it takes in one payment and in one day."""
    if not offer.methods:
        return
    shown = table("method", "name", "per payment", "per day", whole=("method",))
    for method in offer.methods:
        shown.add_row(
            method.code,
            method.name(locale),
            f"{_money(method.amount_min)} to {_money(method.amount_max)}",
            _money(method.daily_max) if method.daily_max is not None else "no limit",
        )
    console().print(shown)


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
    from topup.services.confirmation import confirm_payment

    view = run(lambda application: confirm_payment(application.services, renewal_id, answer))
    render_renewal(view, as_json)
    fail_if_declined(view)


def payer_returned_command(
    renewal_id: Annotated[str, typer.Argument(help="A renewal paid by e-wallet.")],
    as_json: JsonOption = False,
) -> None:
    """The payer is back from the wallet app: ask the wallet how it went and record it."""
    from topup.services.wallets import payer_returned

    view = run(lambda application: payer_returned(application.services, renewal_id))
    render_renewal(view, as_json)
    fail_if_declined(view)


def reconcile(as_json: JsonOption = False) -> None:
    """Ask the gateway once about every payment whose outcome is due to be checked (the worker
    also does this on its own)."""
    from topup.services.reconcile import reconcile_payments

    checked = run(lambda application: reconcile_payments(application.services))
    if as_json:
        print_json({"checked": checked})
    else:
        console().print(f"{checked} payments checked with the gateway")
