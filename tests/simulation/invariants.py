"""The invariants the staying-connected simulation checks at the end of a run. Each is a small
function that returns what is wrong (one line per card, period or renewal, naming it); ``check``
fails the test with the run's seed and the first few lines."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Row, func, select

from tests.simulation.connected import TERMINAL, Run, rows
from topup.adapters.db import tables as t
from topup.bootstrap import Application
from topup.domain.auto_renewal import TRY_KEY_PREFIX
from topup.domain.card_events import CardEventKind
from topup.domain.ledger import card_credit_account
from topup.domain.plans import PlanKind
from topup.domain.reminders import (
    CANCELLED_BY_RENEWAL,
    CHANNELS,
    DeliveryStatus,
    ReminderChannel,
    ReminderKind,
    ReminderStatus,
    parse_kind_name,
)
from topup.services.audit import audit

SHOWN_MAX = 10


def check(run: Run, name: str, wrong: list[str]) -> None:
    assert not wrong, f"{run.hint()}: {name}: {len(wrong)} wrong, e.g.\n  " + "\n  ".join(
        wrong[:SHOWN_MAX]
    )


async def audit_violations(app: Application) -> list[str]:
    """`topup audit`: every ledger entry balanced, every balance its entries' sum, every
    renewal with the entries its status needs, every card's credit and bill on the ledger."""
    report = await audit(app.services)
    return list(report.violations)


async def unsettled_renewals(app: Application) -> list[str]:
    """Every renewal reached a final status once the workers had drained what was due."""
    r, j, p = t.renewals, t.jobs, t.payments
    found = await rows(
        app,
        select(r.c.id, r.c.card_id, r.c.status, p.c.status.label("payment"), p.c.next_check_at)
        .select_from(r.outerjoin(p, p.c.renewal_id == r.c.id))
        .where(r.c.status.not_in(TERMINAL)),
    )
    wrong: list[str] = []
    for row in found:
        jobs = await rows(
            app,
            select(
                j.c.kind, j.c.status, j.c.attempts, j.c.claims, j.c.next_attempt_at, j.c.last_error
            ).where(j.c.subject_id == row.id),
        )
        wrong.append(
            f"renewal {row.id} of card {row.card_id} is still {row.status} (payment "
            f"{row.payment}, next check {row.next_check_at}; jobs {[tuple(x) for x in jobs]})"
        )
    return wrong


async def _completed_by_card(app: Application) -> dict[str, list[Any]]:
    r = t.renewals
    found = await rows(
        app,
        select(
            r.c.id,
            r.c.card_id,
            r.c.kind,
            r.c.amount_minor,
            r.c.data_quota_mb,
            r.c.validity_days,
            r.c.completed_at,
        )
        .where(r.c.status == "completed")
        .order_by(r.c.completed_at, r.c.id),
    )
    by_card: dict[str, list[Any]] = defaultdict(list)
    for row in found:
        by_card[row.card_id].append(row)
    return by_card


async def forfeits_not_in_the_ledger(app: Application, run: Run) -> list[str]:
    """Every expired card has exactly one forfeit entry, taking the credit the card held (what
    it started with plus every reload completed on it) off its credit account, and a forfeit
    event saying the same; a card that did not expire has no forfeit."""
    e, p, c, ev = t.ledger_entries, t.ledger_postings, t.cards, t.card_events
    taken = await rows(
        app,
        select(e.c.card_id, e.c.id, func.coalesce(func.sum(p.c.amount_minor), 0).label("minor"))
        .select_from(e.outerjoin(p, (p.c.entry_id == e.c.id) & (p.c.account.like("card_credit:%"))))
        .where(e.c.kind == "forfeit")
        .group_by(e.c.card_id, e.c.id),
    )
    entries: dict[str, list[int]] = defaultdict(list)
    for row in taken:
        entries[row.card_id].append(int(row.minor))
    events: dict[str, list[int]] = defaultdict(list)
    for row in await rows(app, select(ev.c.card_id, ev.c.detail).where(ev.c.kind == "forfeit")):
        events[row.card_id].append(int(json.loads(row.detail)["credit_minor"]))
    status = {row.id: row.status for row in await rows(app, select(c.c.id, c.c.status))}
    completed = await _completed_by_card(app)
    wrong: list[str] = []
    for sub in run.fleet:
        card = sub.card
        if status[card.id] != "expired":
            if entries.get(card.id) or events.get(card.id):
                wrong.append(
                    f"card {card.msisdn} is {status[card.id]} but has forfeits {entries.get(card.id)}"
                )
            continue
        reloads = sum(
            int(r.amount_minor)
            for r in completed.get(card.id, [])
            if r.kind == PlanKind.RELOAD.value
        )
        held = card.credit.minor + reloads
        if entries.get(card.id) != [held]:
            wrong.append(
                f"card {card.msisdn} expired holding {held} credit; its forfeit entries take "
                f"{entries.get(card.id, [])} off {card_credit_account(card.id)}"
            )
        if events.get(card.id) != [held]:
            wrong.append(
                f"card {card.msisdn} expired holding {held}; forfeit events say {events.get(card.id, [])}"
            )
    return wrong


async def renewals_paid_twice(app: Application) -> list[str]:
    """No renewal captured or activated twice, none refunded without a capture; no idempotency
    key with two renewals; each payment of a renewal taken at most once."""
    e, r, p = t.ledger_entries, t.renewals, t.payments
    wrong: list[str] = []
    counted = await rows(
        app,
        select(e.c.renewal_id, e.c.kind, func.count().label("n"))
        .where(e.c.renewal_id.is_not(None))
        .group_by(e.c.renewal_id, e.c.kind)
        .having(func.count() > 1),
    )
    wrong += [f"renewal {row.renewal_id} has {row.n} {row.kind} entries" for row in counted]
    keys = await rows(
        app, select(r.c.idempotency_key).group_by(r.c.idempotency_key).having(func.count() > 1)
    )
    wrong += [f"idempotency key {row[0]} has two renewals" for row in keys]
    paid = await rows(
        app,
        select(p.c.renewal_id, func.count().label("n"))
        .where(p.c.status == "succeeded")
        .group_by(p.c.renewal_id)
        .having(func.count() > 1),
    )
    wrong += [f"renewal {row.renewal_id} has {row.n} succeeded payments" for row in paid]
    statuses = Counter(row[0] for row in await rows(app, select(r.c.status)))
    captures = (await rows(app, select(func.count()).where(e.c.kind == "capture")))[0][0]
    should = statuses["completed"] + statuses["refunded"] + statuses["activating"]
    if captures != should:
        wrong.append(f"{captures} captures for {should} paid renewals ({dict(statuses)})")
    return wrong


async def _usage_by_card(app: Application) -> dict[str, list[Any]]:
    u = t.usage_records
    found = await rows(
        app,
        select(
            u.c.record_id, u.c.card_id, u.c.used_at, u.c.received_at, u.c.data_used_mb, u.c.counted
        ),
    )
    by_card: dict[str, list[Any]] = defaultdict(list)
    for row in found:
        by_card[row.card_id].append(row)
    return by_card


def _timeline(renewals: list[Any], usage: list[Any]) -> list[tuple[dt.datetime, int, Any]]:
    """A card's renewals and usage imports in the order they happened (a renewal completed at
    the time of an import came first: the workers' pass ran before the import)."""
    timeline = [(r.completed_at, 0, r) for r in renewals]
    timeline += [(u.received_at, 1, u) for u in usage]
    return sorted(timeline, key=lambda item: (item[0], item[1]))


async def cards_not_following_their_renewals(app: Application, run: Run) -> list[str]:
    """Each card's validity, quota, credit and bill recomputed from how it started, its
    completed renewals (applied once each, in order) and the usage records it was sent (each
    applied once, counted only if used in the period it arrived in, never below zero): a
    renewal or a record applied twice, or lost, shows here."""
    completed = await _completed_by_card(app)
    usage = await _usage_by_card(app)
    stored = {row.id: row for row in await rows(app, select(t.cards))}
    wrong: list[str] = []
    for sub in run.fleet:
        card, row = sub.card, stored[sub.card.id]
        validity, quota, credit = card.validity_end, card.data_quota_mb, card.credit.minor
        bill = sum(sub.bills)
        period_start: dt.datetime | None = None
        for at, _, item in _timeline(completed.get(card.id, []), usage.get(card.id, [])):
            if hasattr(item, "record_id"):  # a usage record
                counts = period_start is None or item.used_at >= period_start
                if bool(item.counted) != counts:
                    wrong.append(
                        f"card {card.msisdn}: record {item.record_id} used {item.used_at}, "
                        f"period began {period_start}: counted {item.counted}, should be {counts}"
                    )
                if counts:
                    quota = max(0, quota - int(item.data_used_mb))
                continue
            if item.kind == PlanKind.POSTPAID_BILL.value:
                bill -= int(item.amount_minor)
                continue
            assert validity is not None
            validity = max(at, validity) + dt.timedelta(days=int(item.validity_days))
            quota += int(item.data_quota_mb)
            period_start = at
            if item.kind == PlanKind.RELOAD.value:
                credit += int(item.amount_minor)
        if row.status == "expired":
            credit, quota = 0, 0
        expected = {
            "validity_end": validity,
            "data_quota_mb": quota,
            "credit_minor": credit,
            "bill_due_minor": bill,
        }
        actual = {name: row._mapping[name] for name in expected}
        if actual != expected:
            differs = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
            wrong.append(f"card {card.msisdn} (stored, recomputed): {differs}")
    return wrong


async def usage_not_applied_once(app: Application, run: Run) -> list[str]:
    """Every record sent is stored once; a re-sent record was a duplicate; every malformed
    line was reported at its line number; no threshold event twice in a card's period."""
    wrong: list[str] = []
    stored = {row[0] for row in await rows(app, select(t.usage_records.c.record_id))}
    if stored != run.usage_sent:
        wrong.append(
            f"{len(run.usage_sent - stored)} records sent were not stored, e.g. "
            f"{sorted(run.usage_sent - stored)[:3]}; {len(stored - run.usage_sent)} stored unsent"
        )
    if run.usage_applied != len(run.usage_sent):
        wrong.append(f"imports applied {run.usage_applied} records of {len(run.usage_sent)} sent")
    if run.usage_duplicates != run.usage_resent:
        wrong.append(f"{run.usage_resent} lines re-sent, imports counted {run.usage_duplicates}")
    if run.usage_reported != run.usage_malformed:
        wrong.append(
            f"{run.usage_malformed} bad lines, {run.usage_reported} reported at their line"
        )
    ev = t.card_events
    thresholds = await rows(
        app,
        select(ev.c.card_id, ev.c.kind, ev.c.detail).where(
            ev.c.kind.in_(("data_low", "data_exhausted"))
        ),
    )
    seen = Counter((row.card_id, row.kind, json.loads(row.detail)["period"]) for row in thresholds)
    wrong += [
        f"card {card} period {period}: {kind} {n} times"
        for (card, kind, period), n in seen.items()
        if n > 1
    ]
    return wrong


async def auto_renewals_charged_twice(app: Application) -> list[str]:
    """No card charged twice for a period: among the auto-renewal tries of a (card, period)
    (renewals keyed ``auto:<card>:<period>:<try>``) at most one holds money that stands (paid:
    activating or completed). A try paid then refunded (its money went back) does not count,
    but the next try started only after that refund: at no moment did two captured charges of
    one period stand together. Every try is on the card's timeline as an attempt event of that
    period."""
    r, a, ev = t.renewals, t.auto_renewal_attempts, t.card_events
    tries = await rows(
        app,
        select(r.c.idempotency_key, r.c.status, r.c.created_at, r.c.updated_at).where(
            r.c.idempotency_key.like(f"{TRY_KEY_PREFIX}%")
        ),
    )
    standing: Counter[tuple[str, str]] = Counter()
    by_period: dict[tuple[str, str], dict[int, Row[Any]]] = defaultdict(dict)
    for row in tries:
        card_id, period, number = row.idempotency_key.removeprefix(TRY_KEY_PREFIX).rsplit(":", 2)
        by_period[(card_id, period)][int(number)] = row
        if row.status in ("completed", "activating"):
            standing[(card_id, period)] += 1
    wrong = [
        f"card {card} was charged {n} times for period {period}"
        for (card, period), n in standing.items()
        if n > 1
    ]
    for (card, period), numbered in by_period.items():
        for number, row in numbered.items():
            before = numbered.get(number - 1)
            if before is None:
                continue
            if before.status not in ("declined", "cancelled", "refunded"):
                wrong.append(
                    f"card {card} period {period}: try {number} started while try "
                    f"{number - 1} is {before.status}"
                )
            elif before.status == "refunded" and before.updated_at > row.created_at:
                wrong.append(
                    f"card {card} period {period}: try {number} started before try "
                    f"{number - 1}'s refund"
                )
    attempts = await rows(app, select(a.c.card_id, a.c.period, a.c.tries))
    events = await rows(
        app, select(ev.c.card_id, ev.c.detail).where(ev.c.kind == "auto_renewal_attempt")
    )
    on_timeline = Counter((row.card_id, json.loads(row.detail)["period"]) for row in events)
    for row in attempts:
        if on_timeline[(row.card_id, row.period)] != row.tries:
            wrong.append(
                f"card {row.card_id} period {row.period}: {row.tries} tries, "
                f"{on_timeline[(row.card_id, row.period)]} attempt events on its timeline"
            )
    return wrong


async def auto_renewal_attempts_left_open(app: Application) -> list[str]:
    """Once drained, no period's attempt is still charging or paid while its try's renewal is
    final: an applied one made the period succeeded, a refunded or declined one a retry or a
    failure (the pass follows a paid try to its end)."""
    r, a = t.renewals, t.auto_renewal_attempts
    status = {
        row.idempotency_key: row.status
        for row in await rows(
            app,
            select(r.c.idempotency_key, r.c.status).where(
                r.c.idempotency_key.like(f"{TRY_KEY_PREFIX}%")
            ),
        )
    }
    open_attempts = await rows(
        app,
        select(a.c.card_id, a.c.period, a.c.status, a.c.try_key).where(
            a.c.status.in_(("charging", "paid"))
        ),
    )
    return [
        f"card {row.card_id} period {row.period}: attempt {row.status}, its try "
        f"{status.get(row.try_key, 'never made')}"
        for row in open_attempts
        if status.get(row.try_key) in (*TERMINAL, None)
    ]


async def bulk_lines_renewed_twice(app: Application) -> list[str]:
    """Uploading the same file twice renews nothing twice: all the lines that share a key (the
    same organisation, card, plan and period) name one renewal at most; every line is settled."""
    b = t.bulk_lines
    lines = await rows(app, select(b.c.idempotency_key, b.c.card_id, b.c.status, b.c.renewal_id))
    renewals: dict[str, set[str]] = defaultdict(set)
    wrong: list[str] = []
    for line in lines:
        if line.renewal_id is not None:
            renewals[line.idempotency_key].add(line.renewal_id)
        if line.status in ("pending", "leased", "waiting"):
            wrong.append(f"bulk line of card {line.card_id} is still {line.status}")
    card_of = {line.idempotency_key: line.card_id for line in lines}
    wrong += [
        f"card {card_of[key]}: one bulk line key, renewals {sorted(ids)}"
        for key, ids in renewals.items()
        if len(ids) > 1
    ]
    return wrong


async def auto_renewals_told_but_not_renewed(app: Application) -> list[str]:
    """Every auto-renewal the subscriber was told succeeded renewed the card: the renewal its
    event names completed (not refunded because the network refused it)."""
    ev, r = t.card_events, t.renewals
    status = {row.id: row.status for row in await rows(app, select(r.c.id, r.c.status))}
    told = await rows(
        app, select(ev.c.card_id, ev.c.detail).where(ev.c.kind == "auto_renewal_succeeded")
    )
    wrong: list[str] = []
    for event in told:
        detail = json.loads(event.detail)
        renewal = detail.get("renewal_id")
        if status.get(renewal) != "completed":
            wrong.append(
                f"card {event.card_id} period {detail.get('period')}: told its auto-renewal "
                f"succeeded, but renewal {renewal} is {status.get(renewal)}"
            )
    return wrong


async def states_not_matching_dates(app: Application) -> list[str]:
    """After the last lifecycle pass every card's status is the one its dates give now."""
    now = app.services.clock.now()
    grace = dt.timedelta(days=app.services.profile.grace_period_days)
    wrong: list[str] = []
    for row in await rows(app, select(t.cards)):
        if row.kind == "prepaid":
            end = row.validity_end
            should = "active" if now < end else "grace" if now < end + grace else "expired"
        else:
            overdue = (
                row.bill_due_minor > 0
                and row.bill_due_date is not None
                and now >= row.bill_due_date
            )
            should = "suspended" if overdue else "active"
        if row.status != should:
            wrong.append(
                f"card {row.msisdn} is {row.status} at {now:%Y-%m-%d %H:%M}, its dates say {should} "
                f"(validity end {row.validity_end}, bill {row.bill_due_minor} due {row.bill_due_date})"
            )
    return wrong


async def killed_work_not_finished_once(app: Application, run: Run) -> list[str]:
    """The activations the killed worker had applied at the network but not recorded: each was
    taken again by a live worker and credited exactly once."""
    wrong: list[str] = []
    if run.kills != 1 or not run.killed_activations:
        return [
            f"{run.kills} kills with {run.killed_activations} in flight; expected one kill mid-activation"
        ]
    j, r, e = t.jobs, t.renewals, t.ledger_entries
    for renewal_id in run.killed_activations:
        job = await rows(
            app,
            select(j.c.status, j.c.claims).where(
                j.c.subject_id == renewal_id, j.c.kind == "activate"
            ),
        )
        status = await rows(app, select(r.c.status).where(r.c.id == renewal_id))
        activations = await rows(
            app, select(func.count()).where(e.c.renewal_id == renewal_id, e.c.kind == "activation")
        )
        if not job or job[0].claims < 2 or status[0][0] != "completed" or activations[0][0] != 1:
            wrong.append(
                f"renewal {renewal_id} in flight at the kill: job {[tuple(x) for x in job]}, "
                f"status {status[0][0]}, {activations[0][0]} activation entries"
            )
    return wrong


async def what_happened(app: Application, run: Run) -> dict[str, int]:
    """What the run exercised, counted in the database: a run that met no fault proves nothing."""
    r, e, c, j = t.renewals, t.ledger_entries, t.cards, t.jobs

    async def count(*conditions: Any) -> int:
        table = conditions[0].left.table
        return int(
            (await rows(app, select(func.count()).select_from(table).where(*conditions)))[0][0]
        )

    happened = {
        f"completed via {channel}": await count(r.c.channel == channel, r.c.status == "completed")
        for channel in sorted(run.submitted)
    }
    happened |= {
        "completed by e-wallet": int(
            (
                await rows(
                    app,
                    select(func.count())
                    .select_from(r.join(t.payments, t.payments.c.renewal_id == r.c.id))
                    .where(r.c.status == "completed", t.payments.c.gateway == "sandbox_wallet"),
                )
            )[0][0]
        ),
        "bills paid": await count(r.c.kind == "postpaid_bill", r.c.status == "completed"),
        "declined": await count(r.c.status == "declined"),
        "cancelled (wallet never answered)": await count(r.c.status == "cancelled"),
        "refunded": await count(r.c.status == "refunded"),
        "activations retried": await count(j.c.kind == "activate", j.c.attempts > 0),
        "forfeits": await count(e.c.kind == "forfeit"),
        "cards expired": await count(c.c.status == "expired"),
        "cards suspended": await count(t.card_events.c.kind == "status_suspended"),
        "webhooks recorded": run.webhooks["recorded"],
        "usage records": len(run.usage_sent),
        "usage records re-sent": run.usage_resent,
        "usage records not counted (late)": await count(t.usage_records.c.counted.is_(False)),
        "data exhausted": await count(t.card_events.c.kind == "data_exhausted"),
        "workers killed mid-pass": run.kills,
        "bulk lines renewed": await count(t.bulk_lines.c.status == "succeeded"),
        "bulk lines uploaded": run.bulk_lines,
        "auto-renewals paid": await count(
            r.c.idempotency_key.like(f"{TRY_KEY_PREFIX}%"), r.c.status == "completed"
        ),
        "auto-renewals failed": await count(t.card_events.c.kind == "auto_renewal_failed"),
        "auto-renewals paid, then refunded (a failed try)": await count(
            t.card_events.c.kind.in_(("auto_renewal_failed", "auto_renewal_retrying")),
            t.card_events.c.detail.like('%"refunded": 1%'),
        ),
        "auto-renewal problems found ahead": await count(
            t.card_events.c.kind == "auto_renewal_problem"
        ),
        "reminder texts sent": await count(
            t.reminder_deliveries.c.channel == "sms", t.reminder_deliveries.c.status == "sent"
        ),
        "reminder deliveries cancelled (renewed)": await count(
            t.reminder_deliveries.c.status == "cancelled"
        ),
    }
    return happened


# A card renewed this soon after entering grace may have no grace reminder: the scheduler reads
# the grace event (its cursor waits out gaps left by transactions still writing, a step of the
# simulated clock) and finds the card renewed, so telling of the grace would be moot.
GRACE_REMINDER_MOOT_WITHIN = dt.timedelta(hours=24)


async def reminders_not_once(app: Application, run: Run) -> list[str]:
    """Exactly one reminder per (card, period, kind); every card that entered grace in a
    period has that period's one ``grace_entered`` reminder (unless the card turned every
    channel off); at most one delivery per reminder and channel; no text sent twice by the
    SMS providers' shared count (by idempotency key: the delivery's id), every SMS delivery
    recorded as sent texted once, and no text sent for a delivery not recorded as sent."""
    rm, d, ev, pref = t.reminders, t.reminder_deliveries, t.card_events, t.reminder_preferences
    wrong: list[str] = []
    twice = await rows(
        app,
        select(rm.c.card_id, rm.c.period, rm.c.kind, func.count().label("n"))
        .group_by(rm.c.card_id, rm.c.period, rm.c.kind)
        .having(func.count() > 1),
    )
    wrong += [f"card {r.card_id} period {r.period}: {r.n} {r.kind} reminders" for r in twice]
    made = Counter(
        (r.card_id, r.period)
        for r in await rows(
            app, select(rm.c.card_id, rm.c.period).where(rm.c.kind == ReminderKind.GRACE_ENTERED)
        )
    )
    turned_off = Counter(
        r.card_id for r in await rows(app, select(pref.c.card_id).where(pref.c.enabled.is_(False)))
    )
    silenced = {card for card, n in turned_off.items() if n >= len(CHANNELS)}
    graces = await rows(
        app,
        select(ev.c.card_id, ev.c.at, ev.c.detail).where(ev.c.kind == CardEventKind.STATUS_GRACE),
    )
    renewed_at = defaultdict(list)
    for row in await rows(
        app,
        select(t.renewals.c.card_id, t.renewals.c.completed_at).where(
            t.renewals.c.completed_at.is_not(None)
        ),
    ):
        renewed_at[row.card_id].append(row.completed_at)
    for event in graces:
        period = json.loads(event.detail)["period"]
        moot = any(
            event.at <= at <= event.at + GRACE_REMINDER_MOOT_WITHIN
            for at in renewed_at[event.card_id]
        )
        if made[(event.card_id, period)] > 1 or (
            event.card_id not in silenced and not moot and made[(event.card_id, period)] != 1
        ):
            wrong.append(
                f"card {event.card_id} entered grace in period {period}: "
                f"{made[(event.card_id, period)]} grace_entered reminders"
            )
    deliveries = await rows(
        app,
        select(d.c.reminder_id, d.c.channel, func.count().label("n"))
        .group_by(d.c.reminder_id, d.c.channel)
        .having(func.count() > 1),
    )
    wrong += [f"reminder {r.reminder_id}: {r.n} {r.channel} deliveries" for r in deliveries]
    texted = await rows(
        app,
        select(d.c.id, d.c.status, rm.c.card_id, rm.c.period, rm.c.kind)
        .select_from(d.join(rm, rm.c.id == d.c.reminder_id))
        .where(d.c.channel == ReminderChannel.SMS),
    )
    sms = {r.id: r for r in texted}
    for key, n in sorted(run.texts.items()):
        about = sms.get(key)
        named = (
            f"card {about.card_id} period {about.period} {about.kind} (delivery {key})"
            if about is not None
            else f"idempotency key {key}"
        )
        if n > 1:
            wrong.append(f"{named}: texted {n} times")
        if about is not None and about.status != DeliveryStatus.SENT:
            wrong.append(f"{named}: texted but its delivery is {about.status}")
    for key, about in sms.items():
        if about.status == DeliveryStatus.SENT and run.texts[key] == 0:
            wrong.append(
                f"card {about.card_id} period {about.period} {about.kind} (delivery {key}): "
                "recorded sent but no text went out"
            )
    return wrong


async def reminders_sent_after_renewal(app: Application) -> list[str]:
    """No reminder a renewal makes moot was sent for a period after the card was renewed past
    it (a prepaid card leaves a period at its first renewal completed after the reminder was
    made), and no delivery of a cancelled reminder was sent."""
    rm, d, r, c = t.reminders, t.reminder_deliveries, t.renewals, t.cards
    renewed: dict[str, list[dt.datetime]] = defaultdict(list)
    for row in await rows(
        app,
        select(r.c.card_id, r.c.completed_at)
        .where(r.c.status == "completed", r.c.kind != PlanKind.POSTPAID_BILL.value)
        .order_by(r.c.completed_at),
    ):
        renewed[row.card_id].append(row.completed_at)
    moot = [kind.value for kind in CANCELLED_BY_RENEWAL]
    sent = await rows(
        app,
        select(
            rm.c.card_id,
            rm.c.period,
            rm.c.kind,
            rm.c.status,
            rm.c.created_at,
            d.c.channel,
            d.c.sent_at,
        )
        .select_from(d.join(rm, rm.c.id == d.c.reminder_id).join(c, c.c.id == rm.c.card_id))
        .where(d.c.status == DeliveryStatus.SENT, c.c.kind == "prepaid"),
    )
    wrong: list[str] = []
    for row in sent:
        named = f"card {row.card_id} period {row.period} {row.kind} ({row.channel})"
        if row.status == ReminderStatus.CANCELLED:
            wrong.append(f"{named}: the reminder is cancelled but was sent")
        if parse_kind_name(row.kind)[0].value not in moot:
            continue
        left = next((at for at in renewed[row.card_id] if at > row.created_at), None)
        if left is not None and row.sent_at > left:
            wrong.append(f"{named}: sent {row.sent_at}, after the card was renewed {left}")
    return wrong
