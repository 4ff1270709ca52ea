"""Bulk renewal: an organisation renews many of its cards from a CSV upload or pasted lines
(``number,plan``).

1. A dry run checks every line (the number is valid and names one of the organisation's cards,
   the plan is on sale for that card, the card can be renewed, the card is not on an earlier
   line, the organisation did not renew the card by bulk renewal in the last
   ``bulk_renewed_recently_s`` unless asked to renew such cards again) and adds up the price;
   nothing is written.
2. Starting it checks again and writes a durable run and its lines, each with its own
   idempotency key (``bulk_line_key``: organisation, card, plan, the card's validity period): a
   key names at most one renewal, so two runs of one file started at once renew nothing twice;
   once a run's renewals are applied (the periods moved on), the same file again finds its cards
   on that recent run (``bulk_line_renewed_recently``) and leaves them out unless asked.
3. Workers (``process_bulk_lines``, a worker pass) lease open lines in bounded batches and renew
   each through the ordinary renewal path (``renewals.renew``: its group-committed intake, the
   gateway called with no transaction open, its group-committed outcomes), at most
   ``bulk_concurrency`` at once, charged to the organisation's saved payment card. A worker
   killed mid-run leaves its lines leased; once the lease ends another worker takes them and
   their keys give back the renewals already made. A line succeeds once its renewal is
   *completed* (applied by the activation jobs, the worker's ``jobs`` pass): a paid renewal
   still activating leaves its line waiting, looked at again after ``bulk_activation_recheck_s``
   (doubling up to ``bulk_waiting_recheck_s``), and one refunded instead fails it.
4. "Retry the failed lines" is a new run of the failed lines only, a generation later (a
   declined renewal took no money, so its line gets a new key).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from topup.domain.card_events import validity_period
from topup.domain.card_number import CardNumberKind, parse_card_number
from topup.domain.cards import Card, check_renewable
from topup.domain.errors import (
    ConflictError,
    InputError,
    InvariantError,
    NotFoundError,
    TopupError,
)
from topup.domain.fleets import (
    BulkLine,
    BulkLineOutcome,
    BulkLineStatus,
    BulkRun,
    BulkRunStatus,
    ParsedLine,
    bulk_line_key,
    error_params_kept,
    parse_bulk_text,
)
from topup.domain.money import Money
from topup.domain.plans import Plan
from topup.domain.records import RenewalRecord
from topup.domain.renewal import RenewalStatus
from topup.domain.saved_payment_cards import SavedPaymentCard
from topup.ports import UnitOfWork
from topup.services.context import Services
from topup.services.fleets.organisations import OPERATOR, manager, membership, organisation_unknown
from topup.services.renewals import RenewalRequest, renew
from topup.services.renewals.intake import amount_due
from topup.services.saved_payment_cards import method_for

BULK_CHANNEL = "api"  # a bulk renewal is sold as the API's batch renewals are
RUNS_LISTED_MAX = 20
OUTCOMES_FLUSH_S = 0.5  # a worker writes what it has learnt at least this often (progress)
# A line succeeds once its renewal is applied to the card, not when it is paid: a paid renewal
# the network then refuses is refunded, and its line fails (``bulk_line_refunded``).
_UNPAID = (RenewalStatus.DECLINED, RenewalStatus.CANCELLED, RenewalStatus.REFUNDED)
# A renewal in one of these is read by its key on a later look, not asked for again.
_KNOWN = (RenewalStatus.ACTIVATING, RenewalStatus.COMPLETED, *_UNPAID)


@dataclass(frozen=True)
class CheckedLine:
    """A line as the dry run judged it."""

    line_no: int
    number: str  # the card's MSISDN if it names one of the organisation's, else as typed
    card_id: str | None
    plan_code: str
    amount: Money | None
    key: str | None
    problem: str | None  # an error code; None: to be renewed
    already_renewed: bool = False  # its key names a renewal already: nothing new is charged
    # What fills the problem's message (``{plan}``, ``{example}`` ...), as the error gave it.
    problem_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class DryRun:
    organisation_id: str
    lines: list[CheckedLine]
    total: Money  # what the accepted lines not yet renewed cost
    payment_card: SavedPaymentCard | None  # what pays; None: none chosen yet
    renew_again: bool = False  # cards renewed by a recent bulk renewal were checked as others

    @property
    def accepted(self) -> int:
        return sum(1 for line in self.lines if line.accepted)

    @property
    def rejected(self) -> int:
        return len(self.lines) - self.accepted

    @property
    def already_renewed(self) -> int:
        return sum(1 for line in self.lines if line.accepted and line.already_renewed)

    @property
    def renewed_recently(self) -> int:
        """Lines left out because a recent bulk renewal has their card (renewable on request)."""
        return sum(1 for line in self.lines if line.problem == RENEWED_RECENTLY)


RENEWED_RECENTLY = "bulk_line_renewed_recently"


def _problem(error: TopupError) -> tuple[str, dict[str, str]]:
    return error.code, {key: str(value) for key, value in error.params.items()}


class _Checker:
    """What checking one upload's lines needs from the database, loaded in a few statements."""

    def __init__(self, services: Services, uow: UnitOfWork, organisation_id: str) -> None:
        self.services = services
        self.uow = uow
        self.organisation_id = organisation_id
        self.now = services.clock.now()

    async def check(
        self, parsed: Sequence[ParsedLine], *, generation: int, renew_again: bool = False
    ) -> list[CheckedLine]:
        services = self.services
        numbers: dict[int, tuple[CardNumberKind, str]] = {}
        problems: dict[int, tuple[str, dict[str, str]]] = {}
        for line in parsed:
            if line.problem is not None:
                problems[line.line_no] = (line.problem, {})
                continue
            try:
                number = parse_card_number(line.number, services.profile)
            except TopupError as error:
                problems[line.line_no] = _problem(error)
                continue
            numbers[line.line_no] = (number.kind, number.value)
        cards = await self.uow.cards.by_numbers(
            msisdns=[v for kind, v in numbers.values() if kind is CardNumberKind.MSISDN],
            iccids=[v for kind, v in numbers.values() if kind is CardNumberKind.ICCID],
        )
        by_number = {card.msisdn: card for card in cards} | {card.iccid: card for card in cards}
        owners = await self.uow.organisations.owners_of_cards([card.id for card in cards])
        recently = {} if renew_again else await self._renewed_recently(cards, owners)
        plans = await self.uow.plans.get_many(sorted({line.plan_code for line in parsed}))
        seen: set[str] = set()
        checked: list[CheckedLine] = []
        for line in parsed:
            found = by_number.get(numbers[line.line_no][1]) if line.line_no in numbers else None
            # A card of another organisation (or of none) is not this line's: nothing of it is
            # shown (not its MSISDN for a typed ICCID), the line keeps what was typed.
            mine = found is not None and owners.get(found.id) == self.organisation_id
            card = found if mine else None
            problem, params = problems.get(line.line_no, (None, {}))
            if problem is None and card is None:
                problem = "card_not_in_organisation"
            if problem is None and card is not None and card.id in seen:
                problem = "bulk_line_duplicate"
            if problem is None and card is not None and card.id in recently:
                problem, params = RENEWED_RECENTLY, {"renewed_at": recently[card.id]}
                seen.add(card.id)  # a later line of the card is a duplicate, not counted twice
            amount = None
            if problem is None and card is not None:
                try:
                    amount = self._price(card, plans.get(line.plan_code), line.plan_code)
                    seen.add(card.id)  # a refused line leaves its card for a later one
                except TopupError as error:
                    problem, params = _problem(error)
            key = None
            if problem is None and card is not None:
                key = bulk_line_key(
                    organisation_id=self.organisation_id,
                    card_id=card.id,
                    plan_code=line.plan_code,
                    period=validity_period(card),
                    generation=generation,
                )
            checked.append(
                CheckedLine(
                    line_no=line.line_no,
                    number=card.msisdn if card is not None else line.number,
                    card_id=card.id if card is not None else None,
                    plan_code=line.plan_code,
                    amount=amount,
                    key=key,
                    problem=problem,
                    problem_params=params,
                )
            )
        return await self._mark_renewed(checked)

    async def _renewed_recently(
        self, cards: Sequence[Card], owners: Mapping[str, str]
    ) -> dict[str, str]:
        """This organisation's cards on a line of its recent runs (not failed), with when that
        run started (the profile's time zone)."""
        mine = [card.id for card in cards if owners.get(card.id) == self.organisation_id]
        since = self.now - dt.timedelta(seconds=self.services.limits.fleets.bulk_renewed_recently_s)
        found = await self.uow.bulk_renewals.renewed_recently(
            self.organisation_id, mine, since=since
        )
        zone = ZoneInfo(self.services.profile.time_zone)
        return {card_id: f"{at.astimezone(zone):%Y-%m-%d %H:%M}" for card_id, at in found.items()}

    def _price(self, card: Card, plan: Plan | None, plan_code: str) -> Money:
        if plan is None:
            raise NotFoundError(
                f"there is no plan {plan_code!r}",
                code="plan_unknown",
                field="plan",
                params={"plan": plan_code},
            )
        plan.check_can_buy(card_kind=card.kind, channel=BULK_CHANNEL, at=self.now)
        check_renewable(card, self.now, self.services.profile.grace_period_days)
        return amount_due(card, plan.kind, plan.price)

    async def _mark_renewed(self, checked: list[CheckedLine]) -> list[CheckedLine]:
        keys = [line.key for line in checked if line.key is not None]
        known = await self.uow.renewals.by_idempotency_keys(keys)
        return [
            CheckedLine(**{**line.__dict__, "already_renewed": True})
            if line.key is not None and line.key in known
            else line
            for line in checked
        ]


async def organisation_payment_card(
    uow: UnitOfWork, organisation_id: str
) -> SavedPaymentCard | None:
    organisation = await uow.organisations.get(organisation_id)
    if organisation is None:
        raise organisation_unknown()
    if organisation.payment_card_id is None or organisation.payment_card_account_id is None:
        return None
    return await uow.saved_payment_cards.get(
        organisation.payment_card_account_id, organisation.payment_card_id
    )


def _total(services: Services, lines: Sequence[CheckedLine]) -> Money:
    total = Money.zero(services.profile.currency)
    for line in lines:
        if line.amount is not None and line.accepted and not line.already_renewed:
            total = total + line.amount
    return total


async def _dry_run(
    services: Services,
    uow: UnitOfWork,
    organisation_id: str,
    text: str,
    generation: int,
    *,
    renew_again: bool = False,
) -> DryRun:
    parsed = parse_bulk_text(text, lines_max=services.limits.fleets.bulk_lines_max)
    lines = await _Checker(services, uow, organisation_id).check(
        parsed, generation=generation, renew_again=renew_again
    )
    payment_card = await organisation_payment_card(uow, organisation_id)
    total = _total(services, lines)
    return DryRun(organisation_id, lines, total, payment_card, renew_again=renew_again)


async def dry_run(
    services: Services,
    account_id: str,
    organisation_id: str,
    text: str,
    *,
    renew_again: bool = False,
) -> DryRun:
    """Check every line and add up the price; nothing is written. A viewer may look too.
    ``renew_again``: cards renewed by a recent bulk renewal are checked as any other."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        return await _dry_run(services, uow, organisation_id, text, 0, renew_again=renew_again)


async def dry_run_as_operator(
    services: Services, organisation_id: str, text: str, *, renew_again: bool = False
) -> DryRun:
    """The operator's command line checks an upload for an organisation."""
    async with services.unit_of_work() as uow:
        return await _dry_run(services, uow, organisation_id, text, 0, renew_again=renew_again)


def payment_card_missing() -> ConflictError:
    return ConflictError(
        "the organisation has no payment card for bulk renewals; an admin chooses one",
        code="organisation_payment_card_missing",
        field="payment_card",
        params={},
    )


def _amount_text(amount: Money) -> str:
    return f"{amount.currency} {amount.decimal_text()}"


def total_changed(shown: Money, total: Money) -> ConflictError:
    shown_text, total_text = _amount_text(shown), _amount_text(total)
    return ConflictError(
        f"the check now totals {total_text}, not the {shown_text} shown: check it, start again",
        code="bulk_total_changed",
        field="lines",
        params={"shown": shown_text, "total": total_text},
    )


def total_missing() -> InputError:
    return InputError(
        "Start renews the total the check showed; this start carries none: check the lines first",
        code="bulk_total_missing",
        field="lines",
        params={},
    )


async def _start(
    services: Services,
    uow: UnitOfWork,
    organisation_id: str,
    text: str,
    *,
    created_by: str,
    shown_total: Money | None = None,
    generation: int = 0,
    retry_of: str | None = None,
    run_id: str | None = None,
    renew_again: bool = False,
) -> BulkRun:
    """Write the run and its lines. With ``run_id`` (a start key's, or a retry's), a run of
    that id written already (a double click, a second tab) is given back and nothing is added.
    With ``shown_total`` (what the dry run the admin saw totalled), a check that now totals
    anything else (a price changed, a line now refused) is refused: ``bulk_total_changed``."""
    if run_id is not None:
        made = await uow.bulk_renewals.get_run(run_id)
        if made is not None:
            return made
    checked = await _dry_run(
        services, uow, organisation_id, text, generation, renew_again=renew_again
    )
    if checked.payment_card is None:
        raise payment_card_missing()
    if shown_total is not None and shown_total != checked.total:
        raise total_changed(shown_total, checked.total)
    if checked.accepted == 0:
        raise ConflictError(
            "no line of this bulk renewal can be renewed; correct the lines and check again",
            code="bulk_nothing_to_renew",
            field="lines",
            params={},
        )
    now = services.clock.now()
    currency = services.profile.currency
    run = BulkRun(
        id=run_id or services.new_id(),
        organisation_id=organisation_id,
        created_by=created_by,
        status=BulkRunStatus.RUNNING,
        lines_total=len(checked.lines),
        total=checked.total,
        generation=generation,
        retry_of=retry_of,
        created_at=now,
        finished_at=None,
    )
    lines = [
        BulkLine(
            run_id=run.id,
            line_no=line.line_no,
            number=line.number[:40],
            card_id=line.card_id,
            plan_code=line.plan_code[:64],
            amount=line.amount or Money.zero(currency),
            idempotency_key=line.key or f"rejected-{run.id}-{line.line_no}",
            status=BulkLineStatus.PENDING if line.accepted else BulkLineStatus.REJECTED,
            error_code=line.problem,
            error_params=error_params_kept(line.problem_params),
        )
        for line in checked.lines
    ]
    if not await uow.bulk_renewals.add_run(run, lines):
        # Another request with the same id wrote it first (it waited for that one's commit).
        made = await uow.bulk_renewals.get_run(run.id)
        if made is None:
            raise InvariantError(f"bulk run {run.id} was neither written nor found")
        return made
    return run


START_KEY_LENGTH_MAX = 64


def run_id_of(*parts: str) -> str:
    """A run's id made from what names it once (an organisation, an account and the start key
    the dry run's page gave; or the run a retry is of): the same parts, the same run."""
    digest = hashlib.sha256("\x1f".join(("bulk-run", *parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


async def start_run(
    services: Services,
    account_id: str,
    organisation_id: str,
    text: str,
    *,
    start_key: str | None = None,
    renew_again: bool = False,
    shown_total: Money | None = None,
    require_shown_total: bool = False,
) -> BulkRun:
    """Check the lines again and start the run in the background (owners and admins). With a
    ``start_key`` (issued with the dry run's form), starting again gives back the same run;
    with ``shown_total`` (the dry run's total the admin saw), a changed total is refused, and
    with ``require_shown_total`` (the page's Start) a start without one."""
    run_id = None
    if start_key:
        run_id = run_id_of(organisation_id, account_id, start_key[:START_KEY_LENGTH_MAX])
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        if require_shown_total and shown_total is None:
            raise total_missing()
        run = await _start(
            services,
            uow,
            organisation_id,
            text,
            created_by=account_id,
            run_id=run_id,
            renew_again=renew_again,
            shown_total=shown_total,
        )
        await uow.commit()
    return run


async def start_run_as_operator(
    services: Services,
    organisation_id: str,
    text: str,
    *,
    renew_again: bool = False,
    shown_total: Money | None = None,
) -> BulkRun:
    """The operator's command line starts a run for an organisation (``shown_total``: the
    total its dry run printed; another is refused)."""
    async with services.unit_of_work() as uow:
        run = await _start(
            services,
            uow,
            organisation_id,
            text,
            created_by=OPERATOR,
            renew_again=renew_again,
            shown_total=shown_total,
        )
        await uow.commit()
    return run


def run_unknown() -> NotFoundError:
    return NotFoundError(
        "there is no such bulk renewal in this organisation",
        code="bulk_run_unknown",
        field="run",
        params={},
    )


async def _run_of(uow: UnitOfWork, organisation_id: str, run_id: str) -> BulkRun:
    run = await uow.bulk_renewals.get_run(run_id[:64])
    if run is None or run.organisation_id != organisation_id:
        raise run_unknown()
    return run


async def retry_failed(
    services: Services, account_id: str | None, organisation_id: str, run_id: str
) -> BulkRun:
    """A new run of the run's failed lines only (``account_id`` None: the operator). A run
    is retried once: asking again gives back the same retry (retry the retry for more)."""
    async with services.unit_of_work() as uow:
        if account_id is not None:
            await manager(uow, organisation_id, account_id)
        run = await _run_of(uow, organisation_id, run_id)
        retry_id = run_id_of(organisation_id, "retry", run.id)
        made = await uow.bulk_renewals.get_run(retry_id)
        if made is not None:
            return made
        failed = await uow.bulk_renewals.lines(
            run.id,
            limit=services.limits.fleets.bulk_lines_max,
            statuses=[BulkLineStatus.FAILED],
        )
        if not failed:
            raise ConflictError(
                "this bulk renewal has no failed line to retry",
                code="bulk_nothing_to_retry",
                params={},
            )
        text = "\n".join(f"{line.number},{line.plan_code}" for line in failed)
        retry = await _start(
            services,
            uow,
            organisation_id,
            text,
            created_by=account_id or OPERATOR,
            generation=run.generation + 1,
            retry_of=run.id,
            run_id=retry_id,
        )
        await uow.commit()
    return retry


# --- progress and results --------------------------------------------------------------------


@dataclass(frozen=True)
class RunProgress:
    run: BulkRun
    counts: dict[BulkLineStatus, int]

    def count(self, status: str) -> int:
        return self.counts.get(BulkLineStatus(status), 0)

    @property
    def to_renew(self) -> int:
        return self.run.lines_total - self.count("rejected")

    @property
    def done(self) -> int:
        return self.count("succeeded") + self.count("failed")

    @property
    def percent(self) -> int:
        return 100 if self.to_renew == 0 else self.done * 100 // self.to_renew

    @property
    def finished(self) -> bool:
        return self.run.status is BulkRunStatus.FINISHED

    def version(self) -> str:
        parts = [self.run.status.value] + [f"{s.value}={n}" for s, n in sorted(self.counts.items())]
        return ",".join(parts)


async def run_progress(
    services: Services, account_id: str | None, organisation_id: str, run_id: str
) -> RunProgress:
    """Where a run stands (``account_id`` None: the operator)."""
    async with services.unit_of_work() as uow:
        if account_id is not None:
            await membership(uow, organisation_id, account_id)
        run = await _run_of(uow, organisation_id, run_id)
        counts = await uow.bulk_renewals.counts(run.id)
    return RunProgress(run, counts)


async def recent_runs(
    services: Services, account_id: str, organisation_id: str
) -> list[RunProgress]:
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        runs = await uow.bulk_renewals.runs_of(organisation_id, limit=RUNS_LISTED_MAX)
        return [RunProgress(run, await uow.bulk_renewals.counts(run.id)) for run in runs]


RESULT_PAGE_LINES = 2000


async def result_lines(
    services: Services, account_id: str | None, organisation_id: str, run_id: str
) -> list[BulkLine]:
    """Every line of a run with its outcome, by line number, read a page at a time."""
    lines: list[BulkLine] = []
    async with services.unit_of_work() as uow:
        if account_id is not None:
            await membership(uow, organisation_id, account_id)
        run = await _run_of(uow, organisation_id, run_id)
        after = 0
        while len(lines) < run.lines_total:
            page = await uow.bulk_renewals.lines(
                run.id, limit=RESULT_PAGE_LINES, after_line_no=after
            )
            if not page:
                break
            lines.extend(page)
            after = page[-1].line_no
    return lines


# --- the worker's pass -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Payer:
    saved: SavedPaymentCard
    token: str
    method: str


@dataclass(frozen=True)
class _Batch:
    """What renewing a leased batch needs, read in a few statements: each run's organisation,
    each organisation's payer (None: no usable payment card), the lines' cards, the
    organisation each card belongs to now, and the renewals the lines' keys made already."""

    organisation_of: dict[str, str]  # run id -> organisation id
    payers: dict[str, _Payer | None]
    cards: dict[str, Card]
    owners: dict[str, str]  # card id -> organisation id
    made: dict[str, RenewalRecord]  # idempotency key -> renewal


async def _batch(services: Services, leased: Sequence[BulkLine]) -> _Batch:
    async with services.unit_of_work() as uow:
        organisation_of: dict[str, str] = {}
        for run_id in sorted({line.run_id for line in leased}):
            run = await uow.bulk_renewals.get_run(run_id)
            if run is not None:
                organisation_of[run_id] = run.organisation_id
        payers: dict[str, _Payer | None] = {}
        for organisation_id in sorted(set(organisation_of.values())):
            saved = await organisation_payment_card(uow, organisation_id)
            payers[organisation_id] = (
                None
                if saved is None
                else _Payer(
                    saved, services.tokens.open(saved.token_sealed), method_for(saved.funding)
                )
            )
        card_ids = sorted({line.card_id for line in leased if line.card_id})
        cards = await uow.cards.get_many(card_ids)
        owners = await uow.organisations.owners_of_cards(card_ids)
        made = await uow.renewals.by_idempotency_keys([line.idempotency_key for line in leased])
    return _Batch(organisation_of, payers, cards, owners, made)


def _outcome(
    line: BulkLine,
    status: BulkLineStatus,
    *,
    renewal_id: str | None = None,
    receipt: str | None = None,
    error: str | None = None,
    params: Mapping[str, object] | None = None,
    recheck_at: dt.datetime | None = None,
) -> BulkLineOutcome:
    kept = error_params_kept(params or {})
    return BulkLineOutcome(line.id, status, renewal_id, receipt, error, recheck_at, kept)


# A renewal closed unpaid without a decline code: the code its line ends with.
UNPAID_CODES = {
    RenewalStatus.DECLINED: "payment_failed",
    RenewalStatus.CANCELLED: "bulk_line_cancelled",
    RenewalStatus.REFUNDED: "bulk_line_refunded",
}


def _recheck_at(services: Services, line: BulkLine, renewal: RenewalRecord) -> dt.datetime:
    """When a waiting line is looked at again: a renewal being applied soon (then less and less
    often), a payment whose outcome is not known yet every ``bulk_waiting_recheck_s``."""
    limits = services.limits.fleets
    wait_s = limits.bulk_waiting_recheck_s
    if renewal.status is RenewalStatus.ACTIVATING:
        looks = min(max(line.attempts - 1, 0), 16)
        wait_s = min(wait_s, limits.bulk_activation_recheck_s * 2**looks)
    return services.clock.now() + dt.timedelta(seconds=wait_s)


def _settled(services: Services, line: BulkLine, renewal: RenewalRecord) -> BulkLineOutcome:
    """What the line's renewal makes of it: succeeded once applied, failed once closed unpaid
    (or refunded), else waiting to be looked at again."""
    receipt = renewal.receipt_number
    if renewal.status is RenewalStatus.COMPLETED:
        return _outcome(line, BulkLineStatus.SUCCEEDED, renewal_id=renewal.id, receipt=receipt)
    if renewal.status in _UNPAID:
        code = renewal.decline_code or UNPAID_CODES[renewal.status]
        return _outcome(
            line, BulkLineStatus.FAILED, renewal_id=renewal.id, receipt=receipt, error=code
        )
    # Paid and being applied, or the payment's outcome not known yet (the reconciler finds
    # out): looked at again later, never charged again.
    return _outcome(
        line,
        BulkLineStatus.WAITING,
        renewal_id=renewal.id,
        receipt=receipt if renewal.status is RenewalStatus.ACTIVATING else None,
        recheck_at=_recheck_at(services, line, renewal),
    )


async def _renew_line(
    services: Services, line: BulkLine, payer: _Payer | None, card: Card | None
) -> BulkLineOutcome:
    limits = services.limits.fleets
    now = services.clock.now()
    if card is None:
        return _outcome(line, BulkLineStatus.FAILED, error="card_unknown")
    if payer is None:
        return _outcome(line, BulkLineStatus.FAILED, error="organisation_payment_card_missing")
    today = now.date()
    if payer.saved.expired(today.year, today.month):
        expiry = f"{payer.saved.expiry_month:02d}/{payer.saved.expiry_year % 100:02d}"
        return _outcome(
            line, BulkLineStatus.FAILED, error="payment_card_expired", params={"expiry": expiry}
        )
    request = RenewalRequest(
        card_number=card.msisdn,
        plan_code=line.plan_code,
        payment=None,
        channel=BULK_CHANNEL,
        idempotency_key=line.idempotency_key,
        method=payer.method,
        payment_token=payer.token,
        merchant_initiated=True,  # the organisation's saved card, charged with nobody present
    )
    try:
        view = await renew(services, request)
    except TopupError as error:
        if error.retryable and line.attempts < limits.bulk_line_attempts_max:
            return _outcome(
                line,
                BulkLineStatus.WAITING,
                error=error.code,
                params=error.params,
                recheck_at=now + dt.timedelta(seconds=limits.bulk_waiting_recheck_s),
            )
        return _outcome(line, BulkLineStatus.FAILED, error=error.code, params=error.params)
    return _settled(services, line, view.renewal)


async def _record(services: Services, outcomes: list[BulkLineOutcome], run_ids: set[str]) -> None:
    if not outcomes:
        return
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        await uow.bulk_renewals.record_outcomes(outcomes, at=now)
        await uow.bulk_renewals.finish_runs(sorted(run_ids), at=now)
        await uow.commit()


async def process_bulk_lines(services: Services) -> int:
    """Lease up to ``bulk_batch_size`` open lines and renew them, ``bulk_concurrency`` at once,
    writing their outcomes at least every ``OUTCOMES_FLUSH_S`` (the progress pages read them).
    Returns how many lines were taken."""
    limits = services.limits.fleets
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        leased = await uow.bulk_renewals.lease_lines(
            now=now,
            lease_until=now + dt.timedelta(seconds=limits.bulk_line_lease_s),
            limit=limits.bulk_batch_size,
        )
        await uow.commit()
    if not leased:
        return 0
    batch = await _batch(services, leased)
    gate = asyncio.Semaphore(limits.bulk_concurrency)

    async def one(line: BulkLine) -> BulkLineOutcome:
        made = batch.made.get(line.idempotency_key)
        if made is not None and made.status in _KNOWN:
            return _settled(services, line, made)  # paid (or closed) already: never again
        organisation_id = batch.organisation_of.get(line.run_id, "")
        if line.card_id and batch.owners.get(line.card_id) != organisation_id:
            # The card left the organisation since the check: not renewed at its expense.
            return _outcome(line, BulkLineStatus.FAILED, error="card_not_in_organisation")
        async with gate:
            card = batch.cards.get(line.card_id) if line.card_id else None
            return await _renew_line(services, line, batch.payers.get(organisation_id), card)

    tasks = [asyncio.ensure_future(one(line)) for line in leased]
    run_ids = {line.run_id for line in leased}
    try:
        pending: set[asyncio.Future[BulkLineOutcome]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=OUTCOMES_FLUSH_S, return_when=asyncio.ALL_COMPLETED
            )
            await _record(services, [task.result() for task in done], run_ids)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
    return len(leased)


async def wait_lines_of(services: Services, organisation_id: str, run_id: str) -> RunProgress:
    """The operator's view of a run (the command line polls it)."""
    return await run_progress(services, None, organisation_id, run_id)
