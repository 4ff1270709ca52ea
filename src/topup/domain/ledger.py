"""Double-entry ledger.

An entry is a set of postings whose amounts sum to zero per currency. Amounts are signed minor
units from the platform's point of view: positive = debit, negative = credit.

Accounts (``kind:qualifier``):
    gateway:<gateway>:<shard>     asset: money the payment gateway holds for us (sharded: no hot row)
    activation_pending:<shard>    liability: paid, not yet applied to the network
    card_credit:<card id>         liability: a prepaid card's credit (its balance is negative when the
                                  card has credit; ``subscriber_amount`` flips the sign for people)
    card_receivable:<card id>     asset: what a postpaid card owes
    revenue:<shard>               income: plans sold and bills issued
    forfeited:<shard>             income: credit taken by expiry

Movements:
    capture       gateway +X,              activation_pending -X
    activation    activation_pending +X,   card_credit -X (reload) | revenue -X (pack) | card_receivable -X (bill)
    refund        activation_pending +X,   gateway -X
                  (paid from the card's credit: activation_pending +X, card_credit -X)
    bill          card_receivable +X,      revenue -X
    forfeit       card_credit +X,          forfeited -X
    opening       opening_balance +X,      card_credit -X   (credit a card brought from an older system)
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from topup.domain.errors import InvariantError
from topup.domain.money import Money

ACCOUNT_SHARDS = 16
# The "gateway" of a renewal paid from the card's own prepaid credit (``payment.gateway``): no PSP
# holds that money; its capture and refund move it between the card's credit and pending.
CARD_CREDIT_GATEWAY = "card_credit"


class EntryKind(StrEnum):
    CAPTURE = "capture"
    ACTIVATION = "activation"
    REFUND = "refund"
    BILL = "bill"
    FORFEIT = "forfeit"
    OPENING = "opening"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Entry:
    kind: EntryKind
    postings: tuple[Posting, ...]
    memo: str
    renewal_id: str | None = None
    card_id: str | None = None

    def __post_init__(self) -> None:
        check_balanced(self.postings)


def check_balanced(postings: tuple[Posting, ...] | list[Posting]) -> None:
    """Raise InvariantError unless the postings sum to zero in each currency."""
    if len(postings) < 2:
        raise InvariantError("a ledger entry needs at least two postings")
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.amount.currency] += posting.amount.minor
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise InvariantError(f"unbalanced ledger entry: {unbalanced}")


def shard_of(key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=2).digest()
    return int.from_bytes(digest, "big") % ACCOUNT_SHARDS


def gateway_account(gateway: str, key: str) -> str:
    return f"gateway:{gateway}:{shard_of(key)}"


def activation_pending_account(key: str) -> str:
    return f"activation_pending:{shard_of(key)}"


def revenue_account(key: str) -> str:
    return f"revenue:{shard_of(key)}"


def forfeited_account(key: str) -> str:
    return f"forfeited:{shard_of(key)}"


def card_credit_account(card_id: str) -> str:
    return f"card_credit:{card_id}"


def card_receivable_account(card_id: str) -> str:
    return f"card_receivable:{card_id}"


def _pair(debit: str, credit: str, amount: Money) -> tuple[Posting, ...]:
    if amount.minor <= 0:
        raise InvariantError(f"ledger movements are positive amounts, got {amount}")
    return (Posting(debit, amount), Posting(credit, -amount))


def capture(*, renewal_id: str, card_id: str, gateway: str, amount: Money) -> Entry:
    return Entry(
        EntryKind.CAPTURE,
        _pair(gateway_account(gateway, renewal_id), activation_pending_account(renewal_id), amount),
        memo=f"payment captured for renewal {renewal_id}",
        renewal_id=renewal_id,
        card_id=card_id,
    )


def activation(*, renewal_id: str, card_id: str, destination: str, amount: Money) -> Entry:
    """Paid renewal applied: move the money from pending to where the plan puts it."""
    return Entry(
        EntryKind.ACTIVATION,
        _pair(activation_pending_account(renewal_id), destination, amount),
        memo=f"renewal {renewal_id} activated",
        renewal_id=renewal_id,
        card_id=card_id,
    )


def refund(
    *, renewal_id: str, card_id: str, gateway: str, amount: Money, reason: str | None = None
) -> Entry:
    """``reason``: why, as the renewal's timeline gives it (staff request, activation failed)."""
    memo = f"payment refunded for renewal {renewal_id}"
    return Entry(
        EntryKind.REFUND,
        _pair(activation_pending_account(renewal_id), gateway_account(gateway, renewal_id), amount),
        memo=memo if reason is None else f"{memo}: {reason}",
        renewal_id=renewal_id,
        card_id=card_id,
    )


def credit_refund(
    *, renewal_id: str, card_id: str, amount: Money, reason: str | None = None
) -> Entry:
    """A renewal paid from the card's credit, refunded: the pending money is the subscriber's
    credit again (the reverse of its capture). ``reason`` as for ``refund``."""
    memo = f"credit given back to the card for renewal {renewal_id}"
    return Entry(
        EntryKind.REFUND,
        _pair(activation_pending_account(renewal_id), card_credit_account(card_id), amount),
        memo=memo if reason is None else f"{memo}: {reason}",
        renewal_id=renewal_id,
        card_id=card_id,
    )


def bill(*, card_id: str, bill_id: str, amount: Money) -> Entry:
    return Entry(
        EntryKind.BILL,
        _pair(card_receivable_account(card_id), revenue_account(bill_id), amount),
        memo=f"bill {bill_id} issued",
        card_id=card_id,
    )


def forfeit(*, card_id: str, amount: Money, data_quota_mb: int) -> Entry:
    """Expiry takes credit and quota. Written even when the credit is zero, so the quota lost is
    on record too (the memo names it; data is not money and has no postings of its own)."""
    if amount.minor < 0:
        raise InvariantError(f"cannot forfeit a negative amount {amount}")
    return Entry(
        EntryKind.FORFEIT,
        (
            Posting(card_credit_account(card_id), amount),
            Posting(forfeited_account(card_id), -amount),
        ),
        memo=f"card expired: credit {amount} and {data_quota_mb} MB data forfeited",
        card_id=card_id,
    )


def subscriber_amount(account_balance_minor: int) -> int:
    """A liability held for a subscriber, as the subscriber sees it (positive = theirs)."""
    return -account_balance_minor


def opening_credit(*, card_id: str, amount: Money) -> Entry:
    return Entry(
        EntryKind.OPENING,
        _pair(f"opening_balance:{shard_of(card_id)}", card_credit_account(card_id), amount),
        memo="opening credit brought over",
        card_id=card_id,
    )
