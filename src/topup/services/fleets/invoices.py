"""Monthly consolidated invoices: all the renewals an organisation paid for in a month (the
operator's time zone): its bulk renewals' and the auto-renewals charged to it (its fleet policy's,
or paid with its payment card), with the tax the operator profile defines (``[tax]``), as a PDF
in the organisation's language (drawn by the ``ReceiptDrawer`` port, as receipts are).

Numbers are sequential per organisation and month (``invoice_number``) and unique in the
database: two requests at once either find the same invoice or take the next number, never the
same one. Asking again gives the same invoice while the month's renewals are unchanged; if more
renewals were paid since (the month is not over), a new invoice with the next number replaces it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from topup.domain.errors import InvariantError, NotFoundError
from topup.domain.fleets import (
    Invoice,
    InvoicedRenewal,
    invoice_month,
    invoice_number,
    month_bounds,
)
from topup.domain.money import Money
from topup.domain.tax import TaxedAmount, apply_tax
from topup.i18n import translations
from topup.services.context import Services
from topup.services.fleets.organisations import membership, organisation_unknown

INVOICE_NUMBER_TRIES_MAX = 8  # two issuers racing for one number: the loser takes the next


@dataclass(frozen=True)
class InvoiceDocument:
    invoice: Invoice
    organisation_name: str
    language: str
    renewals: list[InvoicedRenewal]
    taxed: TaxedAmount
    pdf: bytes


def month_range(services: Services, month: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of ``YYYY-MM`` in the operator's time zone, in UTC: a month from
    ``INVOICE_FIRST_MONTH`` to the current one (else InputError, never an overflow)."""
    zone = ZoneInfo(services.profile.time_zone)
    today = services.clock.now().astimezone(zone)
    year, number = invoice_month(month, latest=(today.year, today.month))
    start = dt.datetime(year, number, 1, tzinfo=zone)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


async def issue_invoice(
    services: Services, account_id: str | None, organisation_id: str, month: str
) -> InvoiceDocument:
    """The organisation's invoice for ``month`` (any member; ``account_id`` None: the
    operator), issued now if none stands for the month's renewals as they are. Membership is
    checked before the month is read: a non-member learns nothing from its answer."""
    limit = services.limits.fleets.invoice_renewals_max
    async with services.unit_of_work() as uow:
        if account_id is not None:
            await membership(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
        if organisation is None:
            raise organisation_unknown()
        start, end = month_range(services, month)
        month_text = f"{start.astimezone(ZoneInfo(services.profile.time_zone)):%Y-%m}"
        renewals = await uow.organisations.paid_renewals(
            organisation_id, since=start, until=end, limit=limit
        )
        gross = Money.zero(services.profile.currency)
        for renewal in renewals:
            gross = gross + renewal.amount
        taxed = apply_tax(gross, services.profile.tax)
        invoice = await uow.organisations.latest_invoice(organisation_id, month_text)
        tries = 0
        while invoice is None or (invoice.renewals_count, invoice.gross) != (len(renewals), gross):
            tries += 1
            if tries > INVOICE_NUMBER_TRIES_MAX:
                raise InvariantError("could not take an invoice number after several tries")
            sequence = 1 if invoice is None else invoice.sequence + 1
            year, number = month_bounds(month_text)
            candidate = Invoice(
                id=services.new_id(),
                organisation_id=organisation_id,
                month=month_text,
                sequence=sequence,
                number=invoice_number(organisation_id, year, number, sequence),
                renewals_count=len(renewals),
                gross=taxed.gross,
                net=taxed.net,
                tax=taxed.tax,
                created_at=services.clock.now(),
            )
            if await uow.organisations.add_invoice(candidate):
                await uow.commit()
                invoice = candidate
                break
            # Another issuer took the number (nothing was written): look again.
            invoice = await uow.organisations.latest_invoice(organisation_id, month_text)
    pdf = _draw(services, invoice, organisation.name, organisation.language, renewals, taxed)
    return InvoiceDocument(invoice, organisation.name, organisation.language, renewals, taxed, pdf)


def _money(amount: Money) -> str:
    return f"{amount.currency} {amount.decimal_text()}"


def invoice_lines(
    services: Services,
    invoice: Invoice,
    organisation_name: str,
    renewals: list[InvoicedRenewal],
    taxed: TaxedAmount,
    locale: str,
) -> list[tuple[str, str]]:
    """(title, hint) then (label, value) rows of the invoice in ``locale``."""
    texts = translations(locale)
    zone = ZoneInfo(services.profile.time_zone)
    rule = services.profile.tax
    if not rule.rates:
        hint = texts.gettext("No tax is charged on these renewals.")
    elif rule.prices_include_tax:
        hint = texts.gettext("Prices include tax; the tax included is shown above.")
    else:
        hint = texts.gettext("Tax is added to the prices, as shown above.")
    rows = [
        (texts.gettext("Invoice"), hint),
        (texts.gettext("Invoice number"), invoice.number),
        (texts.gettext("Organisation"), organisation_name),
        (texts.gettext("Operator"), services.profile.name),
        (texts.gettext("Month"), invoice.month),
        (texts.gettext("Issued at"), f"{invoice.created_at.astimezone(zone):%Y-%m-%d %H:%M}"),
        (texts.gettext("Renewals"), str(len(renewals))),
    ]
    for renewal in renewals:
        when = renewal.paid_at.astimezone(zone)
        rows.append(
            (
                renewal.msisdn,
                f"{when:%Y-%m-%d} · {renewal.plan_code} · {_money(renewal.amount)}"
                + (f" · {renewal.receipt_number}" if renewal.receipt_number else ""),
            )
        )
    rows.append((texts.gettext("Net amount"), _money(taxed.net)))
    for rate, amount in taxed.taxes:
        label = texts.gettext("%(tax)s at %(percent)s%%", tax=rate.name, percent=rate.percent_text)
        rows.append((label, _money(amount)))
    rows.append((texts.gettext("Total"), _money(taxed.gross)))
    return rows


def _draw(
    services: Services,
    invoice: Invoice,
    organisation_name: str,
    language: str,
    renewals: list[InvoicedRenewal],
    taxed: TaxedAmount,
) -> bytes:
    if services.receipt_drawer is None:
        raise NotFoundError(
            "receipts cannot be printed as PDF here", code="receipt_pdf_unavailable", params={}
        )
    local = invoice_lines(services, invoice, organisation_name, renewals, taxed, language)
    english = invoice_lines(services, invoice, organisation_name, renewals, taxed, "en")
    return services.receipt_drawer.draw(
        local, english, receipt_number=invoice.number, paid_at=invoice.created_at
    )


async def invoices_of(services: Services, account_id: str, organisation_id: str) -> list[Invoice]:
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        return await uow.organisations.invoices(organisation_id, limit=24)
