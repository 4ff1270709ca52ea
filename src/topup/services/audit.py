"""`topup audit`: recompute what the ledger says and compare it with everything stored."""

from __future__ import annotations

from dataclasses import dataclass, field

from topup.domain.records import CardLedgerBalances, RenewalEntryCounts
from topup.services.context import Services


@dataclass
class AuditReport:
    checked: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations


async def audit(services: Services) -> AuditReport:
    report = AuditReport()
    async with services.unit_of_work() as uow:
        queries = uow.audit
        for entry in await queries.unbalanced_entries():
            report.violations.append(
                f"ledger entry {entry.entry_id} does not balance in {entry.currency}: "
                f"{entry.total_minor}"
            )
        for entry_id in await queries.entries_with_too_few_postings():
            report.violations.append(f"ledger entry {entry_id} has fewer than two postings")
        for balance in await queries.balance_mismatches():
            report.violations.append(
                f"balance of {balance.account} ({balance.currency}) is {balance.stored_minor} "
                f"but its entries sum to {balance.recomputed_minor}"
            )
        renewals = await queries.renewal_entry_counts()
        report.checked["renewals"] = len(renewals)
        for row in renewals:
            _check_renewal(row, report.violations)
        cards = await queries.card_balances()
        report.checked["cards"] = len(cards)
        for card in cards:
            _check_card(card, report.violations)
        for refunded in await queries.refunded_although_applied():
            report.violations.append(
                f"renewal {refunded.renewal_id} was refunded but the network applied it "
                f"(activation job {refunded.job_id}): the subscriber has the data and the money"
            )
        for job in await queries.jobs_about_missing_renewals():
            report.violations.append(
                f"job {job.job_id} is about renewal {job.renewal_id}, which does not exist"
            )
        for stalled in await queries.stalled_renewals():
            report.violations.append(
                f"renewal {stalled.renewal_id} is {stalled.status} "
                "with nothing scheduled to move it on"
            )
    return report


_EXPECTED = {
    "completed": (1, 1, 0),
    "refunded": (1, 0, 1),
    "activating": (1, 0, 0),
    "declined": (0, 0, 0),
    "cancelled": (0, 0, 0),
    "pending_payment": (0, 0, 0),
    "requires_action": (0, 0, 0),
    "payment_pending": (0, 0, 0),
}


def _check_renewal(row: RenewalEntryCounts, violations: list[str]) -> None:
    expected = _EXPECTED.get(row.status)
    actual = (row.captures, row.activations, row.refunds)
    if expected is None:
        violations.append(f"renewal {row.renewal_id} has unknown status {row.status}")
    elif actual != expected:
        violations.append(
            f"renewal {row.renewal_id} is {row.status} with {actual[0]} capture(s), "
            f"{actual[1]} activation(s), {actual[2]} refund(s); expected {expected}"
        )


def _check_card(card: CardLedgerBalances, violations: list[str]) -> None:
    credit = card.credit_minor
    credit_account = card.credit_account_minor
    if credit < 0 or credit_account > 0:
        violations.append(f"card {card.card_id} has a negative credit balance")
    if credit != -credit_account:
        violations.append(
            f"card {card.card_id} shows credit {credit} but its ledger account holds "
            f"{-credit_account}"
        )
    if card.bill_due_minor != card.receivable_account_minor:
        violations.append(
            f"card {card.card_id} shows bill due {card.bill_due_minor} but its ledger "
            f"receivable is {card.receivable_account_minor}"
        )
