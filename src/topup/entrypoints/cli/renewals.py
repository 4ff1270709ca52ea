"""Commands about renewals: renew a card, where a renewal stands, refund it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from topup.entrypoints.cli import output
from topup.entrypoints.cli.output import (
    EXIT_FAILED,
    EXIT_INPUT,
    ChannelOption,
    JsonOption,
    RegionOption,
    fail,
    print_json,
    run,
)

if TYPE_CHECKING:
    from topup.services.views import RenewalView


def parse_expiry(text: str) -> tuple[int, int]:
    month, separator, year = text.strip().partition("/")
    if not separator or not month.isdigit() or not year.isdigit() or len(year) not in (2, 4):
        raise fail("expiry_invalid", "expiry must look like MM/YY", EXIT_INPUT)
    full_year = int(year) + 2000 if len(year) == 2 else int(year)
    return int(month), full_year


def render_renewal(view: RenewalView, as_json: bool) -> None:
    from topup.entrypoints.views_json import renewal_json

    data = renewal_json(view)
    if as_json:
        print_json(data)
        return
    console = output.console()
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
    from topup.ports import PaymentCardDetails
    from topup.services.renewals import RenewalRequest, renew

    payment = None
    if card_number is not None or expiry is not None or cvc is not None:
        month, year = parse_expiry(expiry or "")
        payment = PaymentCardDetails(
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
    view = run(lambda application: renew(application.services, request))
    render_renewal(view, as_json)
    fail_if_declined(view)


def fail_if_declined(view: RenewalView) -> None:
    if view.status == "declined":
        code = view.renewal.decline_code or "payment_failed"
        raise fail(code, "the payment was declined", EXIT_FAILED)


def status(
    renewal_id: Annotated[str, typer.Argument(help="Renewal id.")], as_json: JsonOption = False
) -> None:
    """Where a renewal stands, with its timeline and expected activation time."""
    from topup.services.renewals import get_renewal

    view = run(lambda application: get_renewal(application.services, renewal_id))
    render_renewal(view, as_json)


def refund(
    renewal_id: Annotated[str, typer.Argument(help="A paid renewal not yet applied.")],
    reason: Annotated[str, typer.Option(help="Why (shown in the renewal's timeline).")],
    as_json: JsonOption = False,
) -> None:
    """Staff: stop a paid renewal's activation and refund its payment in full (the worker sends
    the refund). Asking again changes nothing."""
    from topup.services.activation import request_refund

    outcome = run(
        lambda application: request_refund(application.services, renewal_id, reason=reason)
    )
    if as_json:
        print_json({"renewal_id": renewal_id, "refund": outcome})
    else:
        output.console().print(f"refund of {renewal_id}: {outcome.replace('_', ' ')}")
