"""Usage records from the network debit cards' data quotas (issue 11, part 1).

``import_usage`` reads a file's lines (CSV or JSON lines), applies the good ones in batches of
``usage_batch_size`` (one transaction each: cards locked in id order, new records inserted once
by their id, one debit per card, threshold events, usage states) and reports the bad lines by
number. ``receive_signed_usage`` does the same for a signed delivery of the mediation system.
``tell_network`` bars the data of exhausted prepaid cards on the network and lifts the bar once a
renewal gave them data again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from topup.domain.card_events import validity_period
from topup.domain.cards import Card, CardStatus, status_at
from topup.domain.errors import ConflictError, InputError
from topup.domain.usage import (
    InsertedUsage,
    NetworkChange,
    RecordOutcome,
    UsageRecord,
    UsageState,
    card_outcome,
    counted_from,
    debit,
)
from topup.domain.usage_files import LineProblem, UsageFormat, UsageLine, UsageReader
from topup.domain.usage_signatures import verify
from topup.ports import DataAccessRequest, ProvisionStatus, UnitOfWork
from topup.services.context import Services

DEBITED = RecordOutcome.DEBITED
PROBED_RECORDS = 16  # record ids of a batch looked up first (any known: all are looked up)


@dataclass
class UsageSummary:
    """What an import did. ``problems`` keeps the first ``usage_problems_kept_max`` bad lines;
    ``problem_count`` counts them all."""

    records: int = 0  # lines that read as records (bad lines not included)
    applied: int = 0  # records new to us (each applied once)
    duplicates: int = 0  # records already applied (a re-sent file), or twice in this one
    earlier_period: int = 0  # new records used before their card's current period began
    postpaid: int = 0  # new records of postpaid cards: kept, not debited (billed by the network)
    card_expired: int = 0  # new records of prepaid cards past their grace: kept, not debited
    debited_mb: int = 0  # what the quotas actually lost (never below zero)
    cards: int = 0  # cards whose quota changed
    events: int = 0  # threshold events raised (debited cards only)
    problem_count: int = 0
    problems: list[LineProblem] = field(default_factory=list)

    def add_problem(self, problem: LineProblem, kept_max: int) -> None:
        self.problem_count += 1
        if len(self.problems) < kept_max:
            self.problems.append(problem)


async def import_usage(
    services: Services, lines: Iterable[str], *, kind: UsageFormat, pause_collector: bool = False
) -> UsageSummary:
    """Apply every good line, a batch per transaction; InputError only for a CSV file without
    its header (nothing applied). ``pause_collector``: for a process that does nothing else
    meanwhile (``topup usage import``), Python's cyclic garbage collector is paused while the
    file goes in (``collector_paused``); a server taking a signed delivery does not pause it,
    since its other requests would run without it."""
    limits = services.limits.usage
    reader = UsageReader(
        services.profile,
        now=services.clock.now(),
        future_skew_s=limits.usage_future_skew_s,
        data_used_mb_max=limits.usage_data_used_mb_max,
    )
    summary = UsageSummary()
    known_cards: dict[str, str | None] = {}
    items = reader.read(lines, kind)

    def next_batch() -> tuple[list[UsageLine], list[LineProblem]]:
        batch: list[UsageLine] = []
        problems: list[LineProblem] = []
        for item in items:
            if isinstance(item, LineProblem):
                problems.append(item)
                continue
            batch.append(item)
            if len(batch) >= limits.usage_batch_size:
                break
        return batch, problems

    # The next batch is read in a thread while this one is written: PostgreSQL works on one
    # while Python reads the other (reading never runs twice at once: one batch ahead at most).
    with collector_paused() if pause_collector else contextlib.nullcontext():
        batch, problems = await asyncio.to_thread(next_batch)
        while True:
            for problem in problems:
                summary.add_problem(problem, limits.usage_problems_kept_max)
            if not batch:
                break
            reading = asyncio.ensure_future(asyncio.to_thread(next_batch))
            try:
                await _apply(services, batch, summary, known_cards)
            finally:
                batch, problems = await reading
    summary.problems.sort(key=lambda problem: problem.line)
    return summary


@dataclass
class _CollectorPauses:
    imports: int = 0  # imports under way in this process
    was_enabled: bool = False  # the collector was on when the first of them began


_PAUSES = _CollectorPauses()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a file is imported (and on again when
    the last import under way in the process ends, however it ends). An import makes millions
    of tuples and a few objects per card of each batch, none of them in a cycle, all freed by
    reference counting as always; looking through them again and again for cycles took a
    quarter to a third of an import's time."""
    if _PAUSES.imports == 0:
        _PAUSES.was_enabled = gc.isenabled()
        gc.disable()
    _PAUSES.imports += 1
    try:
        yield
    finally:
        _PAUSES.imports -= 1
        if _PAUSES.imports == 0 and _PAUSES.was_enabled:
            gc.enable()


async def receive_signed_usage(
    services: Services, body: bytes, headers: Mapping[str, str], *, content_type: str
) -> UsageSummary:
    """A delivery of the mediation system: its signature checked (missing, wrong, old, or seen
    before: refused with a ``usage_signature_*`` code and nothing applied), then imported."""
    limits = services.limits.usage
    now = services.clock.now()
    signature = verify(
        services.usage_secret,
        body,
        headers,
        now=now,
        tolerance_s=limits.usage_signature_tolerance_s,
    )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(
            "usage records are UTF-8 text", code="usage_line_malformed", field="body"
        ) from None
    lines = text.splitlines()
    kind = (
        UsageFormat.CSV
        if "csv" in content_type.lower()
        else UsageFormat.JSON_LINES
        if "json" in content_type.lower()
        else None
    )
    if kind is None:
        first_line = next((line for line in lines if line.strip()), "")
        kind = UsageFormat.JSON_LINES if first_line.lstrip().startswith("{") else UsageFormat.CSV
    # Each line that is not blank is a record (or a bad line), but a CSV file's header.
    records = sum(1 for line in lines if line.strip()) - (1 if kind is UsageFormat.CSV else 0)
    if records > limits.usage_records_per_request_max:
        raise InputError(
            f"at most {limits.usage_records_per_request_max} records per request",
            code="usage_request_too_large",
            params={"maximum": str(limits.usage_records_per_request_max)},
        )
    async with services.unit_of_work() as uow:
        first = await uow.usage.first_delivery(signature, at=now)
        await uow.commit()
    if not first:
        raise ConflictError(
            "these records were delivered with this signature already; sign a new delivery",
            code="usage_signature_replayed",
        )
    return await import_usage(services, lines, kind=kind)


async def _apply(
    services: Services,
    batch: list[UsageLine],
    summary: UsageSummary,
    known_cards: dict[str, str | None],
) -> None:
    """One transaction: the records applied before left out (``_not_applied``), the cards of
    the others locked (in id order: concurrent imports cannot deadlock, and the second of two
    imports of the same records finds them all known), the new records inserted (a record id
    twice in the batch: once), then one debit per card. ``known_cards``: card ids by number,
    kept from batch to batch (None: no such card)."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        batch = await _not_applied(uow, batch, summary)
        # The hot loops of an import (millions of lines): one tuple per record, nothing else.
        numbers = {card for _, _, card, _, _ in batch}
        await _find_cards(uow, numbers, known_cards)
        card_ids = {known_cards[number] for number in numbers}
        if None in card_ids:
            card_ids.discard(None)
            _unknown_cards(services, batch, summary, known_cards)
        cards = await uow.usage.lock_cards(sorted(card_id for card_id in card_ids if card_id))
        grace_days = services.profile.grace_period_days
        statuses = {card_id: status_at(card, now, grace_days) for card_id, card in cards.items()}
        outcomes = {
            card_id: card_outcome(card, statuses[card_id]) for card_id, card in cards.items()
        }
        debited = sorted(card_id for card_id, kind in outcomes.items() if kind is DEBITED)
        starts = await uow.usage.period_starts(debited)
        since = {
            card_id: counted_from(kind, starts.get(card_id)) for card_id, kind in outcomes.items()
        }
        records: list[UsageRecord] = [
            (record_id, card_id, used_at, data_used_mb, used_at >= since[card_id], now)
            for _, record_id, card, used_at, data_used_mb in batch
            if (card_id := known_cards[card]) is not None
        ]
        summary.records += len(records)
        inserted = await uow.usage.insert_records(records)
        _count_new(summary, inserted, outcomes, sent=len(records))
        used = {figures.card_id: figures.counted_mb for figures in inserted if figures.counted_mb}
        await _debit_cards(services, uow, cards, statuses, used, summary, now)
        await uow.commit()


async def _not_applied(
    work: UnitOfWork, batch: list[UsageLine], summary: UsageSummary
) -> list[UsageLine]:
    """The lines whose records were not applied before (those that were: counted as records
    and duplicates). A few ids are looked up (a new file: none known, nothing more is asked);
    if one is known (a file re-sent), every id is, and the known ones are left out before any
    card is found or locked. ``insert_records`` still decides of the others (one applied
    meanwhile by a concurrent import is left out there)."""
    step = max(1, len(batch) // PROBED_RECORDS)
    probed = [record_id for _, record_id, _, _, _ in batch[::step]]
    known = await work.usage.known_record_ids(probed) if probed else set()
    if not known:
        return batch
    if step > 1:
        known = await work.usage.known_record_ids([record_id for _, record_id, _, _, _ in batch])
    left = [line for line in batch if line[1] not in known]
    summary.records += len(batch) - len(left)
    summary.duplicates += len(batch) - len(left)
    return left


async def _find_cards(
    work: UnitOfWork, numbers: set[str], known_cards: dict[str, str | None]
) -> None:
    """The ids of the card numbers not known yet, into ``known_cards``."""
    wanted = numbers - known_cards.keys()
    if not wanted:
        return
    found = await work.usage.card_ids(
        msisdns=sorted(number for number in wanted if _is_msisdn(number)),
        iccids=sorted(number for number in wanted if not _is_msisdn(number)),
    )
    for value in wanted:
        known_cards[value] = found.get(value)


def _unknown_cards(
    services: Services,
    batch: list[UsageLine],
    summary: UsageSummary,
    known_cards: dict[str, str | None],
) -> None:
    for line, _, card, _, _ in batch:
        if known_cards[card] is None:
            summary.add_problem(
                LineProblem(line, "usage_card_unknown", "no card has this number"),
                services.limits.usage.usage_problems_kept_max,
            )


def _count_new(
    summary: UsageSummary,
    inserted: list[InsertedUsage],
    outcomes: dict[str, RecordOutcome],
    *,
    sent: int,
) -> None:
    """The batch's new records in the summary, by what became of them (of ``sent`` distinct
    records, the others were applied before)."""
    new_records = sum(figures.records for figures in inserted)
    summary.duplicates += sent - new_records
    summary.applied += new_records
    for figures in inserted:
        outcome = outcomes[figures.card_id]
        if outcome is RecordOutcome.POSTPAID:
            summary.postpaid += figures.records
        elif outcome is RecordOutcome.CARD_EXPIRED:
            summary.card_expired += figures.records
        else:
            summary.earlier_period += figures.earlier_period


async def _debit_cards(
    services: Services,
    work: UnitOfWork,
    cards: dict[str, Card],
    statuses: dict[str, CardStatus],
    used: dict[str, int],
    summary: UsageSummary,
    now: dt.datetime,
) -> None:
    """One debit per card of what its new records of the current period used (only cards
    usage debits have such records)."""
    states = await work.usage.states(sorted(used))
    debits: list[tuple[str, int, int]] = []
    new_states: list[UsageState] = []
    events: list[tuple[str, str, dt.datetime, dict[str, str | int]]] = []
    low_percent = services.limits.usage.data_low_percent
    for card_id in sorted(used):
        card = cards[card_id]
        result = debit(
            card,
            states.get(card_id),
            period=validity_period(card),
            used_mb=used[card_id],
            low_percent=low_percent,
            status=statuses[card_id],
        )
        if result.data_quota_mb != card.data_quota_mb:
            debits.append((card_id, result.data_quota_mb, card.version))
            summary.debited_mb += card.data_quota_mb - result.data_quota_mb
        if result.state is not None:
            new_states.append(result.state)
        events += [(card_id, event.kind.value, now, event.detail) for event in result.events]
    await work.usage.debit_quotas(debits, at=now)
    await work.usage.save_states(new_states, at=now)
    await work.cards.add_events(events)
    summary.cards += len(debits)
    summary.events += len(events)


def _is_msisdn(number: str) -> bool:
    """A card number in canonical form is an MSISDN in E.164 (else an ICCID's digits)."""
    return number.startswith("+")


async def tell_network(services: Services) -> int:
    """Lift the bar of barred cards that have data again, then tell the network of every bar
    not yet confirmed (a batch, calls bounded by the worker's concurrency); a refusal is tried
    again after ``data_access_retry_s``. Also forgets signatures older than they may be. Returns
    how many cards it dealt with."""
    network = services.network_data
    limits = services.limits
    now = services.clock.now()
    batch_size = limits.usage.data_access_batch_size
    async with services.unit_of_work() as uow:
        lifted = await uow.usage.lift_bars(limit=batch_size)
        changes: list[NetworkChange] = (
            []
            if network is None
            else await uow.usage.claim_network_changes(
                now=now,
                lease_until=now + dt.timedelta(seconds=limits.worker.job_lease_s),
                limit=batch_size,
            )
        )
        await uow.usage.forget_deliveries(
            received_before=now
            - dt.timedelta(seconds=2 * limits.usage.usage_signature_tolerance_s),
            limit=batch_size,
        )
        await uow.commit()
    if network is None or not changes:
        return lifted
    gate = asyncio.Semaphore(limits.worker.worker_concurrency)

    async def tell(change: NetworkChange) -> tuple[NetworkChange, bool]:
        async with gate:
            result = await network.set_data_access(
                DataAccessRequest(
                    request_id=change.request_id,
                    msisdn=change.msisdn,
                    iccid=change.iccid,
                    data_barred=change.state.data_barred,
                    attempt=change.attempt,
                )
            )
        return change, result.status is ProvisionStatus.APPLIED

    outcomes = await asyncio.gather(*(tell(change) for change in changes))
    retry_at = services.clock.now() + dt.timedelta(seconds=limits.usage.data_access_retry_s)
    async with services.unit_of_work() as uow:
        for change, applied in outcomes:
            if applied:
                await uow.usage.network_told(
                    change.state.card_id, data_barred=change.state.data_barred
                )
            else:
                await uow.usage.network_failed(change.state.card_id, next_at=retry_at)
        await uow.commit()
    return lifted + len(changes)
