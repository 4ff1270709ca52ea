"""`topup`: the command line. Thin: parse, call a service, render. Errors are one line, never a
traceback. Each noun has its module; this one builds the Typer application from them."""

from __future__ import annotations

import typer

from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.entrypoints.cli import (
    admin,
    api_keys,
    auto_renewal,
    cards,
    organisations,
    payments,
    plans,
    renewals,
    settlement,
    usage,
    worker_serve,
)
from topup.entrypoints.cli.output import EXIT_FAILED, EXIT_INPUT, fail_with

# Help is Click's plain layout: Typer's rich layout shows a type after flags that take no value
# ("--help <bool>", "--json <bool>"), and plain help needs no rich at start-up.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Renew mobile-data cards.",
)
app.command()(admin.init)
app.command()(cards.cards)
app.command()(plans.plans)
app.command(name="renew")(renewals.renew_command)
app.command()(payments.methods)
app.command()(payments.confirm)
app.command(name="payer-returned")(payments.payer_returned_command)
app.command()(renewals.refund)
app.command()(payments.reconcile)
app.command()(renewals.status)
app.command()(cards.balance)
app.command()(cards.history)
app.command()(worker_serve.serve)
app.command()(worker_serve.worker)
app.command()(admin.audit)
app.add_typer(api_keys.api_keys_app, name="api-keys")
app.command(name="errors")(admin.errors_command)
app.command(name="sandbox-sms")(admin.sandbox_sms_command)
app.command(name="sandbox-settlement")(settlement.sandbox_settlement_command)
app.command(name="settle")(settlement.settle_command)
app.add_typer(organisations.organisations_app, name="organisations")
app.command(name="bulk-renew")(organisations.bulk_renew)
app.add_typer(usage.usage_app, name="usage")
app.command(name="auto-renew")(auto_renewal.auto_renew)
app.command(name="auto-renewals")(auto_renewal.auto_renewals)
app.command(name="sandbox-revoke-token")(auto_renewal.sandbox_revoke_token)


def main() -> None:
    """Run the command; a TopupError that escapes it (a bad setting read before the command's
    own error handling) is one error line too."""
    try:
        app()
    except TopupError as error:
        exit_code = EXIT_INPUT if isinstance(error, InputError | NotFoundError) else EXIT_FAILED
        raise SystemExit(fail_with(error, exit_code).exit_code) from None
