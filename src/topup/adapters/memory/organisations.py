"""Organisations (fleets), in memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from topup.adapters.memory.tables import Tables, unique_violation
from topup.domain.cards import Card
from topup.domain.fleets import (
    BulkLineStatus,
    FleetFilter,
    Invoice,
    InvoicedRenewal,
    Member,
    Organisation,
)
from topup.domain.renewal import RenewalStatus

_UNPAID_OR_REFUNDED = (RenewalStatus.REFUNDED, RenewalStatus.DECLINED, RenewalStatus.CANCELLED)


def _passes(card: Card, fleet_filter: FleetFilter) -> bool:
    if fleet_filter.statuses and card.status.value not in fleet_filter.statuses:
        return False
    before = fleet_filter.validity_before
    if before is not None and (card.validity_end is None or card.validity_end >= before):
        return False
    digits = "".join(character for character in fleet_filter.number_contains if character.isdigit())
    return not digits or digits in card.msisdn or digits in card.iccid


class MemoryOrganisationRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, organisation: Organisation) -> None:
        if organisation.id in self._tables.organisations:
            raise unique_violation("organisations", organisation.id)
        self._tables.organisations[organisation.id] = organisation

    async def get(self, organisation_id: str) -> Organisation | None:
        return self._tables.organisations.get(organisation_id)

    async def set_payment_card(
        self, organisation_id: str, *, saved_id: str | None, account_id: str | None
    ) -> None:
        found = self._tables.organisations.get(organisation_id)
        if found is not None:
            self._tables.organisations[organisation_id] = dataclasses.replace(
                found, payment_card_id=saved_id, payment_card_account_id=account_id
            )

    async def put_member(self, member: Member) -> None:
        if member.account_id not in self._tables.accounts:
            raise unique_violation(
                "organisation_members.account_id (foreign key)", member.account_id
            )
        key = (member.organisation_id, member.account_id)
        found = self._tables.organisation_members.get(key)
        kept = member if found is None else dataclasses.replace(found, role=member.role)
        self._tables.organisation_members[key] = kept

    def _with_email(self, member: Member) -> Member:
        account = self._tables.accounts.get(member.account_id)
        return dataclasses.replace(member, email=account.email if account else "")

    async def member(self, organisation_id: str, account_id: str) -> Member | None:
        found = self._tables.organisation_members.get((organisation_id, account_id))
        return None if found is None else self._with_email(found)

    async def members(self, organisation_id: str, *, limit: int) -> list[Member]:
        found = [
            self._with_email(member)
            for (organisation, _), member in self._tables.organisation_members.items()
            if organisation == organisation_id
        ]
        found.sort(key=lambda member: (member.added_at, member.account_id))
        return found[:limit]

    async def memberships(
        self, account_id: str, *, limit: int
    ) -> list[tuple[Organisation, Member]]:
        found = [
            (self._tables.organisations[organisation_id], member)
            for (organisation_id, account), member in self._tables.organisation_members.items()
            if account == account_id
        ]
        found.sort(key=lambda pair: (pair[0].created_at, pair[0].id))
        return found[:limit]

    async def owners_of_cards(self, card_ids: Sequence[str]) -> dict[str, str]:
        owned = self._tables.organisation_cards
        return {card_id: owned[card_id] for card_id in card_ids if card_id in owned}

    async def add_cards(
        self, organisation_id: str, card_ids: Sequence[str], *, at: dt.datetime
    ) -> int:
        added = 0
        for card_id in sorted(set(card_ids)):
            self._tables.require_card(card_id)
            if card_id not in self._tables.organisation_cards:
                self._tables.organisation_cards[card_id] = organisation_id
                added += 1
        return added

    async def remove_card(self, organisation_id: str, card_id: str) -> bool:
        if self._tables.organisation_cards.get(card_id) != organisation_id:
            return False
        del self._tables.organisation_cards[card_id]
        return True

    def _fleet(self, organisation_id: str, fleet_filter: FleetFilter) -> list[Card]:
        cards = [
            self._tables.cards[card_id]
            for card_id, owner in self._tables.organisation_cards.items()
            if owner == organisation_id
        ]
        found = [card for card in cards if _passes(card, fleet_filter)]
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        found.sort(
            key=lambda card: (card.validity_end is None, card.validity_end or far, card.msisdn)
        )
        return found

    async def fleet_cards(
        self, organisation_id: str, fleet_filter: FleetFilter, *, limit: int, offset: int
    ) -> list[Card]:
        return self._fleet(organisation_id, fleet_filter)[offset : offset + limit]

    async def fleet_cards_after(
        self, organisation_id: str, *, after_card_id: str | None, limit: int
    ) -> list[Card]:
        mine = sorted(self._fleet(organisation_id, FleetFilter()), key=lambda card: card.id)
        return [card for card in mine if after_card_id is None or card.id > after_card_id][:limit]

    async def count_cards(self, organisation_id: str, fleet_filter: FleetFilter) -> int:
        return len(self._fleet(organisation_id, fleet_filter))

    async def card_counts_by_status(self, organisation_id: str) -> dict[str, int]:
        return dict(
            Counter(card.status.value for card in self._fleet(organisation_id, FleetFilter()))
        )

    def _paid(
        self, organisation_id: str, since: dt.datetime, until: dt.datetime
    ) -> list[InvoicedRenewal]:
        runs = self._tables.bulk_runs
        renewal_ids = {
            line.renewal_id
            for line, _ in self._tables.bulk_lines.values()
            if line.renewal_id is not None
            and runs[line.run_id].organisation_id == organisation_id
            and line.status is not BulkLineStatus.REJECTED
        }
        made = {renewal.idempotency_key: renewal.id for renewal in self._tables.renewals.values()}
        renewal_ids |= {
            made[attempt.try_key]
            for attempt in self._tables.auto_renewal_attempts.values()
            if attempt.paid_by_organisation_id == organisation_id and attempt.try_key in made
        }
        renewal_ids |= {
            top_up.renewal_id
            for top_up in self._tables.auto_top_ups.values()
            if top_up.paid_by_organisation_id == organisation_id and top_up.renewal_id is not None
        }
        found = []
        for renewal_id in renewal_ids:
            renewal = self._tables.renewals.get(renewal_id)
            if (
                renewal is None
                or renewal.paid_at is None
                or not since <= renewal.paid_at < until
                or renewal.status in _UNPAID_OR_REFUNDED
            ):
                continue
            card = self._tables.cards[renewal.card_id]
            found.append(
                InvoicedRenewal(
                    renewal_id=renewal.id,
                    msisdn=card.msisdn,
                    plan_code=renewal.plan_code,
                    amount=renewal.amount,
                    paid_at=renewal.paid_at,
                    receipt_number=renewal.receipt_number,
                )
            )
        found.sort(key=lambda renewal: (renewal.paid_at, renewal.renewal_id))
        return found

    async def paid_renewals(
        self, organisation_id: str, *, since: dt.datetime, until: dt.datetime, limit: int
    ) -> list[InvoicedRenewal]:
        return self._paid(organisation_id, since, until)[:limit]

    async def spend(self, organisation_id: str, *, since: dt.datetime, until: dt.datetime) -> int:
        return sum(renewal.amount.minor for renewal in self._paid(organisation_id, since, until))

    async def latest_invoice(self, organisation_id: str, month: str) -> Invoice | None:
        found = [
            invoice
            for invoice in self._tables.invoices.values()
            if invoice.organisation_id == organisation_id and invoice.month == month
        ]
        return max(found, key=lambda invoice: invoice.sequence, default=None)

    async def add_invoice(self, invoice: Invoice) -> bool:
        taken = any(
            (other.organisation_id, other.month, other.sequence)
            == (invoice.organisation_id, invoice.month, invoice.sequence)
            for other in self._tables.invoices.values()
        )
        if taken or invoice.number in self._tables.invoices:
            return False
        self._tables.invoices[invoice.number] = invoice
        return True

    async def invoices(self, organisation_id: str, *, limit: int) -> list[Invoice]:
        found = [i for i in self._tables.invoices.values() if i.organisation_id == organisation_id]
        found.sort(key=lambda invoice: (invoice.month, invoice.sequence), reverse=True)
        return found[:limit]
