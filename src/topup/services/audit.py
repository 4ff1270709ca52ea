"""`topup audit`: recompute what the ledger says and compare it with everything stored."""

from __future__ import annotations

from dataclasses import dataclass, field

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
        for entry_id, currency, total in await queries.unbalanced_entries():
            report.violations.append(
                f"ledger entry {entry_id} does not balance in {currency}: {total}"
            )
        for entry_id in await queries.entries_with_too_few_postings():
            report.violations.append(f"ledger entry {entry_id} has fewer than two postings")
        for account, currency, stored, recomputed in await queries.balance_mismatches():
            report.violations.append(
                f"balance of {account} ({currency}) is {stored} but its entries sum to {recomputed}"
            )
        renewals = await queries.renewal_entry_counts()
        report.checked["renewals"] = len(renewals)
        for row in renewals:
            _check_renewal(row, report.violations)
        cards = await queries.card_balances()
        report.checked["cards"] = len(cards)
        for card in cards:
            _check_card(card, report.violations)
        for renewal_id, job_id in await queries.refunded_although_applied():
            report.violations.append(
                f"renewal {renewal_id} was refunded but the network applied it "
                f"(activation job {job_id}): the subscriber has the data and the money"
            )
        for job_id, renewal_id in await queries.jobs_about_missing_renewals():
            report.violations.append(
                f"job {job_id} is about renewal {renewal_id}, which does not exist"
            )
        for stalled in await queries.stalled_renewals():
            report.violations.append(
                f"renewal {stalled['id']} is {stalled['status']} with nothing scheduled to move it on"
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


def _check_renewal(row: dict[str, object], violations: list[str]) -> None:
    expected = _EXPECTED.get(str(row["status"]))
    actual = (row["capture"], row["activation"], row["refund"])
    if expected is None:
        violations.append(f"renewal {row['id']} has unknown status {row['status']}")
    elif actual != expected:
        violations.append(
            f"renewal {row['id']} is {row['status']} with {actual[0]} capture(s), "
            f"{actual[1]} activation(s), {actual[2]} refund(s); expected {expected}"
        )


def _check_card(card: dict[str, object], violations: list[str]) -> None:
    credit = int(str(card["credit_minor"]))
    credit_account = int(str(card["credit_account"]))
    if credit < 0 or credit_account > 0:
        violations.append(f"card {card['id']} has a negative credit balance")
    if credit != -credit_account:
        violations.append(
            f"card {card['id']} shows credit {credit} but its ledger account holds {-credit_account}"
        )
    bill_due = int(str(card["bill_due_minor"]))
    if bill_due != int(str(card["receivable_account"])):
        violations.append(
            f"card {card['id']} shows bill due {bill_due} but its ledger receivable is {card['receivable_account']}"
        )
