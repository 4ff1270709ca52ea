"""Commands about auto-renewal: turn it on or off for a card, list the charges coming, and (the
sandbox) revoke a saved payment card's token as its bank would."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from topup.entrypoints.cli.output import (
    EXIT_INPUT,
    JsonOption,
    console,
    fail,
    moment,
    print_json,
    run,
    table,
    times_caption,
)

CardArgument = Annotated[str, typer.Argument(help="Card number: phone number or ICCID.")]
OPERATOR_ID = "cli"


def _view_json(view: Any) -> dict[str, Any]:
    return {
        "card_id": view.card_id,
        "enabled": view.enabled,
        "plan": view.plan_code,
        "payment": view.payment.value,
        "method": view.method,
        "amount": None if view.amount is None else view.amount.decimal_text(),
        "currency": None if view.amount is None else view.amount.currency,
        "next_charge_at": None if view.next_charge_at is None else view.next_charge_at.isoformat(),
        "set_by": view.set_by.value,
        "problems": list(view.problems),
    }


def auto_renew(
    card: CardArgument,
    plan: Annotated[str | None, typer.Option(help="The plan to buy each period.")] = None,
    saved_card: Annotated[
        str | None, typer.Option("--saved-card", help="Saved payment card id that pays.")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="E-mail of the account whose saved payment card pays.")
    ] = None,
    credit: Annotated[bool, typer.Option("--credit", help="The card's credit pays.")] = False,
    off: Annotated[bool, typer.Option("--off", help="Turn auto-renewal off.")] = False,
    top_up_below_mb: Annotated[
        int | None, typer.Option(help="Also top up when data falls below this many MB.")
    ] = None,
    top_up_plan: Annotated[str | None, typer.Option(help="The top-up plan.")] = None,
    top_ups_per_month: Annotated[
        int | None, typer.Option(help="At most this many a month.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn a card's auto-renewal on (a plan, and --saved-card ID --account EMAIL or --credit)
    or --off, and show it with its next charge."""
    from topup.domain.auto_renewal import SetterKind, TopUpRule
    from topup.services import auto_renewal
    from topup.services.renewals import find_card
    from topup.services.saved_payment_cards import saved_payment_card_unknown

    if not off and plan is None:
        raise fail("auto_renewal_plan_required", "give --plan (or --off)", EXIT_INPUT)
    if not off and credit == (saved_card is not None):
        raise fail(
            "auto_renewal_payment_required",
            "give one of --saved-card (with --account) or --credit",
            EXIT_INPUT,
        )

    async def work(application: Any) -> Any:
        services = application.services
        async with services.unit_of_work() as uow:
            found = await find_card(uow, services, card)
        setter = auto_renewal.SetBy(SetterKind.OPERATOR, OPERATOR_ID)
        if off:
            await auto_renewal.turn_off(services, card_id=found.id, set_by=setter)
            return await auto_renewal.auto_renewal_of(services, found.id)
        payment = auto_renewal.PaymentChoice.credit()
        if saved_card is not None:
            async with services.unit_of_work() as uow:
                owner = await uow.accounts.by_email(account or "")
            if owner is None:  # (--account names the saved payment card's owner)
                raise saved_payment_card_unknown()
            payment = auto_renewal.PaymentChoice.saved_card(owner.id, saved_card)
        rule = None
        if top_up_below_mb is not None:
            rule = TopUpRule(top_up_plan or plan or "", top_up_below_mb, top_ups_per_month, None)
        return await auto_renewal.set_by_operator(
            services,
            OPERATOR_ID,
            card_id=found.id,
            plan_code=plan or "",
            payment=payment,
            top_up=rule,
        )

    view = run(work)
    data = None if view is None else _view_json(view)
    if as_json:
        print_json({"auto_renewal": data})
        return
    out = console()
    if data is None or not data["enabled"]:
        out.print("auto-renewal: off")
        return
    out.print(
        f"auto-renewal: {data['plan']} for {data['amount']} {data['currency']} by "
        f"{data['method']}; next charge {moment(data['next_charge_at'])}"
    )


def auto_renewals(
    days: Annotated[int, typer.Option(help="Charges due within this many days.")] = 7,
    limit: Annotated[int, typer.Option(help="How many to list.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The auto-renewal charges coming, soonest first."""
    from topup.domain.errors import InputError
    from topup.services import auto_renewal

    async def work(application: Any) -> Any:
        services = application.services
        days_max = services.limits.auto_renewal.auto_renewals_listed_days_max
        if not 0 <= days <= days_max:
            raise InputError(
                f"--days is 0 to {days_max}",
                code="auto_renewals_days_invalid",
                field="days",
                params={"maximum": str(days_max)},
            )
        due_before = services.clock.now() + dt.timedelta(days=days)
        return await auto_renewal.upcoming_auto_renewals(
            services, due_before=due_before, limit=limit
        )

    rows = [
        {
            "card_id": item.card_id,
            "msisdn": item.msisdn,
            "charge_at": item.charge_at.isoformat(),
            "plan": item.plan_code,
            "amount": None if item.amount is None else item.amount.decimal_text(),
            "currency": None if item.amount is None else item.amount.currency,
            "method": item.method,
        }
        for item in run(work)
    ]
    if as_json:
        print_json({"auto_renewals": rows})
        return
    headers = ("charge at", "card", "plan", "amount", "method")
    shown = table(*headers, whole=headers)
    for row in rows:
        shown.add_row(
            moment(row["charge_at"]),
            row["msisdn"],
            row["plan"],
            f"{row['amount']} {row['currency']}",
            row["method"],
        )
    shown.caption = times_caption()
    console().print(shown)


def sandbox_revoke_token(
    saved_card: Annotated[str, typer.Argument(help="Saved payment card id.")],
    account: Annotated[str, typer.Option(help="E-mail of the account that saved it.")],
) -> None:
    """Sandbox: revoke a saved payment card's token at the sandbox PSP (as its bank would), to
    see auto-renewal's pre-check name it."""
    from pathlib import Path

    from topup.adapters.gateways.sandbox import revoke_token
    from topup.domain.errors import InputError

    async def work(application: Any) -> None:
        services = application.services
        path = application.settings.sandbox_revoked_tokens
        if not path:
            raise InputError(
                "TOPUP_SANDBOX_REVOKED_TOKENS is empty",
                code="setting_invalid",
                params={"variable": "TOPUP_SANDBOX_REVOKED_TOKENS", "detail": "empty"},
            )
        async with services.unit_of_work() as uow:
            owner = await uow.accounts.by_email(account)
            saved = (
                None if owner is None else await uow.saved_payment_cards.get(owner.id, saved_card)
            )
        if saved is None:
            raise InputError(
                "no such saved payment card", code="saved_payment_card_unknown", params={}
            )
        revoke_token(Path(path), services.tokens.open(saved.token_sealed))

    run(work)
    console().print(f"revoked the sandbox token of saved payment card {saved_card}")
