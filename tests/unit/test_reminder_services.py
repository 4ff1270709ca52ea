"""Reminders on fakes: what is queued from dates and events, what each channel is sent, once;
quiet hours, preferences, renewal cancelling, rate bounds, retries, unsubscribe tokens."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest

from tests.unit.fakes import settings
from topup.adapters.clock import FixedClock
from topup.adapters.memory.unit_of_work import MemoryDatabase
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.adapters.notify.web_push import MemoryPush
from topup.bootstrap import build_in_memory
from topup.domain.accounts import Account
from topup.domain.card_events import CardEventKind, validity_period
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.errors import InputError
from topup.domain.money import Money
from topup.domain.reminders import DeliveryStatus, ReminderChannel, ReminderStatus
from topup.ports import PushSubscription
from topup.services.auto_renewal import UpcomingAutoRenewal
from topup.services.context import Services
from topup.services.reminders import choices, scheduling
from topup.services.reminders.scheduling import queue_due_reminders
from topup.services.reminders.sending import send_due_deliveries
from topup.settings import LimitSettings

# 14:00 in Kuala Lumpur: not quiet.
AFTERNOON = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class World:
    def __init__(self, *, limits: LimitSettings | None = None, at: dt.datetime = AFTERNOON) -> None:
        self.clock = FixedClock(at)
        services, database = build_in_memory(
            settings(),
            limits=limits or LimitSettings(reminder_event_gap_wait_s=0),
            clock=self.clock,
            seed=7,
        )
        self.services: Services = services
        self.database: MemoryDatabase = database
        self.sms = SandboxSms(clock=self.clock.now)
        self.mailer = MemoryMailer()
        self.push = MemoryPush()
        services.sms, services.mailer, services.push = self.sms, self.mailer, self.push

    async def card(
        self,
        *,
        ends_in: dt.timedelta,
        email: str = "aisyah@example.com",
        status: CardStatus = CardStatus.ACTIVE,
        number: str = "+60123456789",
    ) -> Card:
        now = self.clock.now()
        card = Card(
            id=f"card-{number[-4:]}",
            msisdn=number,
            iccid="89600" + number[-10:].rjust(14, "0"),
            kind=CardKind.PREPAID,
            status=status,
            currency="MYR",
            credit=Money(250, "MYR"),
            data_quota_mb=300,
            validity_end=now + ends_in,
            bill_due=Money.zero("MYR"),
            bill_due_date=None,
            holder_name="Aisyah",
            email=email,
        )
        async with self.services.unit_of_work() as uow:
            await uow.cards.add(card, at=now)
            await uow.commit()
        return card

    async def link(self, card: Card, *, language: str = "zh_Hans", push: bool = True) -> str:
        account = Account("account-1", "owner@example.com", "hash", language, AFTERNOON, AFTERNOON)
        tables = self.database.tables
        tables.accounts[account.id] = account
        tables.card_links[(account.id, card.id)] = AFTERNOON
        if push:
            tables.push_subscriptions[account.id] = ("https://push.example/abc", "key", "auth")
        return account.id

    async def event(self, card: Card, kind: CardEventKind, **detail: str | int) -> None:
        async with self.services.unit_of_work() as uow:
            stored = await uow.cards.get(card.id)
            assert stored is not None
            await uow.cards.add_event(
                card_id=card.id,
                kind=kind.value,
                at=self.clock.now(),
                detail={"period": validity_period(stored), **detail},
            )
            await uow.commit()

    async def run(self) -> tuple[int, int]:
        queued = await queue_due_reminders(self.services)
        sent = 0
        while (done := await send_due_deliveries(self.services)) > 0:
            sent += done
        return queued, sent

    def deliveries(self, status: DeliveryStatus | None = None) -> list[tuple[str, str]]:
        tables = self.database.tables
        return sorted(
            (tables.reminders[d.reminder_id].kind, d.channel.value)
            for d in tables.reminder_deliveries.values()
            if status is None or d.status is status
        )


async def test_a_card_ending_in_two_days_is_reminded_once_on_each_channel() -> None:
    world = World()
    card = await world.card(ends_in=2 * DAY)
    await world.link(card, language="zh_Hans")
    queued, _ = await world.run()
    assert queued == 1
    assert world.deliveries(DeliveryStatus.SENT) == [
        ("validity_ending_3d", "email"),
        ("validity_ending_3d", "push"),
        ("validity_ending_3d", "sms"),
    ]
    [sms] = world.sms.sent()
    assert sms.msisdn == card.msisdn and "有效期" in sms.text and "2 天" in sms.text
    [mail] = world.mailer.sent
    assert mail.recipient == "owner@example.com"
    assert "/accounts/cards/card-6789/renew" in mail.body
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.headers["List-Unsubscribe"].startswith(
        "<http://127.0.0.1:8000/api/v1/reminders/unsubscribe?token="
    )
    [(subscription, payload, key)] = world.push.sent
    assert subscription.endpoint == "https://push.example/abc"
    assert json.loads(payload)["title"] == mail.subject
    assert key in world.database.tables.reminder_deliveries
    # A second pass, and a third: nothing new is queued or sent.
    assert await world.run() == (0, 0)
    assert await world.run() == (0, 0)
    assert len(world.sms.sent()) == 1 and len(world.mailer.sent) == 1 and len(world.push.sent) == 1
    [reminder] = world.database.tables.reminders.values()
    assert reminder.status is ReminderStatus.DONE


async def test_the_one_day_reminder_is_its_own_and_a_card_without_account_gets_sms_and_its_email() -> (
    None
):
    world = World()
    card = await world.card(ends_in=2 * DAY)
    await world.run()
    world.clock.advance((DAY + dt.timedelta(hours=6)).total_seconds())  # 20:00 local
    queued, _ = await world.run()
    assert queued == 1
    assert world.deliveries(DeliveryStatus.SENT) == [
        ("validity_ending_1d", "email"),
        ("validity_ending_1d", "sms"),
        ("validity_ending_3d", "email"),
        ("validity_ending_3d", "sms"),
    ]
    assert world.deliveries(DeliveryStatus.SKIPPED) == [
        ("validity_ending_1d", "push"),
        ("validity_ending_3d", "push"),
    ]
    assert [mail.recipient for mail in world.mailer.sent] == [card.email] * 2
    assert "ends in 1 day" in world.mailer.sent[1].subject  # the profile's language: English


async def test_a_card_ending_in_twelve_hours_gets_only_the_one_day_reminder() -> None:
    world = World()
    await world.card(ends_in=dt.timedelta(hours=12))
    await world.run()
    assert {kind for kind, _ in world.deliveries()} == {"validity_ending_1d"}


async def test_an_sms_due_at_night_waits_for_the_morning_and_the_email_goes_at_once() -> None:
    night = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)  # 23:00 in Kuala Lumpur
    world = World(at=night)
    await world.card(ends_in=2 * DAY)
    await world.run()
    assert world.deliveries(DeliveryStatus.SENT) == [("validity_ending_3d", "email")]
    assert world.sms.sent() == []
    world.clock.set(dt.datetime(2026, 12, 1, 23, 59, tzinfo=dt.UTC))  # 07:59
    assert await world.run() == (0, 0)
    world.clock.set(dt.datetime(2026, 12, 2, 0, 0, tzinfo=dt.UTC))  # 08:00
    await world.run()
    assert len(world.sms.sent()) == 1


async def test_a_channel_turned_off_for_a_card_is_skipped() -> None:
    world = World()
    card = await world.card(ends_in=2 * DAY)
    account_id = await world.link(card)
    await choices.save_card_channels(world.services, account_id, [(card.id, "email")])
    listed = await choices.card_channels(world.services, account_id)
    assert listed[0].enabled == {"sms": False, "email": True, "push": False}
    await world.run()
    assert world.deliveries(DeliveryStatus.SENT) == [("validity_ending_3d", "email")]
    assert world.sms.sent() == [] and world.push.sent == []


async def test_a_card_renewed_before_its_reminder_went_is_not_reminded() -> None:
    night = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
    world = World(at=night)
    card = await world.card(ends_in=2 * DAY)
    await world.run()  # the e-mail went; the SMS waits for the morning
    async with world.services.unit_of_work() as uow:
        stored = await uow.cards.get(card.id)
        assert stored is not None
        renewed = replace(stored, validity_end=stored.validity_end + 30 * DAY, version=1)  # type: ignore[operator]
        await uow.cards.save(renewed, expected_version=0, at=night)
        await uow.commit()
    world.clock.set(dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC))
    await world.run()
    assert world.sms.sent() == []
    assert world.deliveries(DeliveryStatus.CANCELLED) == [
        ("validity_ending_3d", "push"),
        ("validity_ending_3d", "sms"),
    ]


async def test_events_become_reminders_once_through_the_cursor() -> None:
    world = World()
    card = await world.card(ends_in=20 * DAY)
    await world.link(card, language="ms", push=False)
    await world.event(card, CardEventKind.DATA_LOW, data_quota_mb=300, percent=15)
    await world.event(card, CardEventKind.DATA_LOW, data_quota_mb=100, percent=5)  # same period
    await world.event(card, CardEventKind.RENEWED)  # no reminder of its own
    queued, _ = await world.run()
    assert queued == 1
    assert world.database.tables.reminder_cursors["card_events"] == 3
    [mail] = world.mailer.sent
    assert "300 MB" in mail.body
    await world.event(card, CardEventKind.CREDIT_LOW, credit_minor=250, currency="MYR")
    assert (await world.run())[0] == 1
    assert world.database.tables.reminder_cursors["card_events"] == 4
    assert await world.run() == (0, 0)


PROBLEM = {
    "plan_code": "monthly-10gb",
    "amount_minor": 3000,
    "currency": "MYR",
    "method": "card visa 4242",
    "charge_at": "2026-12-04T16:00:00+00:00",
}


@pytest.mark.parametrize(
    ("problem", "says", "fix"),
    [
        ("payment_card_expired", "card visa 4242 has expired", "/accounts/payment-cards"),
        (
            "payment_token_revoked",
            "no longer accepts the saved payment card",
            "/accounts/payment-cards",
        ),
        (
            "amount_above_method_limit",
            "MYR30.00 is more than card visa 4242 allows",
            "/accounts/cards/card-6789/auto-renewal",
        ),
        (
            "plan_withdrawn",
            "monthly-10gb is no longer sold",
            "/accounts/cards/card-6789/auto-renewal",
        ),
        ("payment_card_removed", "was removed", "/accounts/cards/card-6789/auto-renewal"),
        (
            "amount_below_method_limit",
            "MYR30.00 is less than card visa 4242 accepts",
            "/accounts/cards/card-6789/auto-renewal",
        ),
        (
            "credit_too_low",
            "credit is less than MYR30.00",
            "/accounts/cards/card-6789/auto-renewal",
        ),
        ("declined", "The bank declined", "/accounts/payment-cards"),
    ],
)
async def test_an_auto_renewal_problem_names_the_problem_and_its_fix(
    problem: str, says: str, fix: str
) -> None:
    world = World()
    card = await world.card(ends_in=5 * DAY, email="")
    await world.link(card, language="en", push=False)
    await world.event(card, CardEventKind.AUTO_RENEWAL_PROBLEM, problem=problem, **PROBLEM)
    await world.run()
    [mail] = world.mailer.sent
    assert says in mail.body, mail.body
    assert f"Fix it now: http://127.0.0.1:8000{fix}" in mail.body
    assert "will fail" in mail.subject and "December 5, 2026" in mail.subject
    [sms] = world.sms.sent()
    assert says in sms.text


async def test_the_same_problem_twice_is_one_reminder_and_another_problem_is_another() -> None:
    world = World()
    card = await world.card(ends_in=5 * DAY)
    for problem in ("payment_card_expired", "payment_card_expired", "plan_withdrawn"):
        await world.event(card, CardEventKind.AUTO_RENEWAL_PROBLEM, problem=problem, **PROBLEM)
    assert (await world.run())[0] == 2


async def test_auto_renewal_coming_and_failed_say_amount_method_date_and_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    card = await world.card(ends_in=3 * DAY)
    await world.link(card, language="en", push=False)
    fix = f"/accounts/cards/{card.id}/auto-renewal"
    coming = UpcomingAutoRenewal(
        card_id=card.id,
        msisdn=card.msisdn,
        period=validity_period(card),
        charge_at=dt.datetime(2026, 12, 4, 16, 0, tzinfo=dt.UTC),
        plan_code="monthly-10gb",
        amount=Money(3000, "MYR"),
        method="card visa 4242",
        fix_path=fix,
    )
    asked: list[object] = []

    async def upcoming(
        services: Services, *, due_before: dt.datetime, limit: int, after: object = None
    ) -> list[UpcomingAutoRenewal]:
        asked.append(due_before)
        return [coming]

    monkeypatch.setattr(scheduling, "upcoming_auto_renewals", upcoming)
    await world.event(
        card,
        CardEventKind.AUTO_RENEWAL_FAILED,
        problem="declined",
        final=1,
        fix_path=fix,
        **PROBLEM,
    )
    assert (await world.run())[0] == 3  # coming, failed, and the card's validity ending
    assert asked == [AFTERNOON + 3 * DAY]  # the profile's auto_renewal_coming_days
    assert (await world.run())[0] == 0  # found again: queued once
    coming_mail = next(mail for mail in world.mailer.sent if "automatically on" in mail.subject)
    assert "renews automatically on December 5, 2026" in coming_mail.subject
    assert "MYR30.00" in coming_mail.body and "card visa 4242" in coming_mail.body
    failed = next(mail for mail in world.mailer.sent if "failed" in mail.subject)
    assert "grace period as usual" in failed.body and "The bank declined" in failed.body
    assert f"Fix it now: http://127.0.0.1:8000{fix}" in failed.body


async def test_a_passed_pre_check_event_and_the_schedule_make_one_coming_reminder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = World()
    card = await world.card(ends_in=10 * DAY)
    await world.event(card, CardEventKind.AUTO_RENEWAL_COMING, **PROBLEM)
    assert (await world.run())[0] == 1
    coming = UpcomingAutoRenewal(
        card_id=card.id,
        msisdn=card.msisdn,
        period=validity_period(card),
        charge_at=dt.datetime(2026, 12, 4, 16, 0, tzinfo=dt.UTC),
        plan_code="monthly-10gb",
        amount=Money(3000, "MYR"),
        method="card visa 4242",
        fix_path="/accounts/cards/x/auto-renewal",
    )

    async def upcoming(services: Services, **_: object) -> list[UpcomingAutoRenewal]:
        return [coming]

    monkeypatch.setattr(scheduling, "upcoming_auto_renewals", upcoming)
    assert (await world.run())[0] == 0
    assert len([m for m in world.mailer.sent if "automatically on" in m.subject]) == 1


async def test_a_success_is_told_even_though_the_card_moved_to_its_new_period() -> None:
    world = World()
    card = await world.card(ends_in=DAY * 5)
    old_period = validity_period(card)
    async with world.services.unit_of_work() as uow:
        renewed = replace(card, validity_end=card.validity_end + 30 * DAY, version=1)  # type: ignore[operator]
        await uow.cards.save(renewed, expected_version=0, at=AFTERNOON)
        await uow.cards.add_event(
            card_id=card.id,
            kind=CardEventKind.AUTO_RENEWAL_SUCCEEDED.value,
            at=AFTERNOON,
            detail={"period": old_period, **PROBLEM},
        )
        await uow.cards.add_event(
            card_id=card.id,
            kind=CardEventKind.DATA_LOW.value,
            at=AFTERNOON,
            detail={"period": old_period, "data_quota_mb": 10, "percent": 1},
        )
        await uow.commit()
    await world.run()
    assert [mail.subject for mail in world.mailer.sent] == [
        "+60 12-345 6789 was renewed automatically"
    ]


async def test_over_the_providers_rate_a_message_waits_and_is_not_dropped() -> None:
    world = World(limits=LimitSettings(reminder_sms_per_minute_max=1, reminder_event_gap_wait_s=0))
    await world.card(ends_in=2 * DAY, number="+60123450001")
    await world.card(ends_in=2 * DAY, number="+60123450002")
    await world.run()
    assert len(world.sms.sent()) == 1
    assert len(world.mailer.sent) == 2
    world.clock.advance(61)
    await world.run()
    assert sorted(message.msisdn for message in world.sms.sent()) == [
        "+60123450001",
        "+60123450002",
    ]


async def test_a_failing_mail_server_is_tried_again_with_backoff_then_given_up() -> None:
    world = World(limits=LimitSettings(reminder_send_attempts_max=3, reminder_event_gap_wait_s=0))
    world.mailer.failing = True
    await world.card(ends_in=2 * DAY)
    await world.run()
    [email] = [
        d
        for d in world.database.tables.reminder_deliveries.values()
        if d.channel is ReminderChannel.EMAIL
    ]
    assert email.status is DeliveryStatus.QUEUED and email.attempts == 1
    assert email.last_error == "mail_unavailable"
    world.clock.advance(31)
    await world.run()
    world.clock.advance(61)
    await world.run()
    [email] = [
        d
        for d in world.database.tables.reminder_deliveries.values()
        if d.channel is ReminderChannel.EMAIL
    ]
    assert email.status is DeliveryStatus.FAILED


async def test_a_gone_push_subscription_is_forgotten() -> None:
    world = World()
    card = await world.card(ends_in=2 * DAY)
    account_id = await world.link(card)
    world.push.gone.add("https://push.example/abc")
    await world.run()
    assert world.deliveries(DeliveryStatus.SKIPPED) == [("validity_ending_3d", "push")]
    assert account_id not in world.database.tables.push_subscriptions


async def test_a_retried_sms_with_the_same_delivery_id_is_sent_once() -> None:
    sms = SandboxSms()
    await sms.send("+60123456789", "hello", idempotency_key="delivery-1")
    await sms.send("+60123456789", "hello", idempotency_key="delivery-1")
    assert len(sms.sent()) == 1 and sms.duplicates == 1


async def test_the_sandbox_sms_keys_hold_across_providers_sharing_an_outbox(
    tmp_path: object,
) -> None:
    from pathlib import Path

    outbox = Path(str(tmp_path)) / "sms.jsonl"
    first, second = SandboxSms(outbox=outbox), SandboxSms(outbox=outbox)
    await first.send("+60123456789", "hello", idempotency_key="delivery-2")
    await second.send("+60123456789", "hello", idempotency_key="delivery-2")
    assert len(outbox.read_text().splitlines()) == 1


async def test_an_unsubscribe_token_turns_off_its_card_and_channel_only() -> None:
    world = World()
    card = await world.card(ends_in=20 * DAY)
    token = choices.unsubscribe_token(world.services, card.id, ReminderChannel.EMAIL)
    shown, channel, enabled = await choices.unsubscribed_card(world.services, token)
    assert (shown.id, channel, enabled) == (card.id, ReminderChannel.EMAIL, True)
    await choices.unsubscribe(world.services, token)
    await choices.unsubscribe(world.services, token)  # again: nothing changes
    assert world.database.tables.reminder_preferences == {(card.id, "email"): False}
    for forged in (
        token[:-1] + ("0" if token[-1] != "0" else "1"),
        token.replace(".email.", ".sms."),
        "x",
        "",
    ):
        with pytest.raises(InputError) as raised:
            await choices.unsubscribe(world.services, forged)
        assert raised.value.code == "reminder_unsubscribe_invalid"


def test_a_push_subscription_is_checked() -> None:
    good = choices.check_subscription("https://fcm.example/send/abc", "BNc-x_1", "c2VjcmV0")
    assert good == PushSubscription("https://fcm.example/send/abc", "BNc-x_1", "c2VjcmV0")
    choices.check_subscription("http://127.0.0.1:9999/push", "a", "b")
    for endpoint, key in (("http://push.example/x", "a"), ("ftp://x", "a"), ("https://x", "a b")):
        with pytest.raises(InputError):
            choices.check_subscription(endpoint, key, "b")


def test_the_unsubscribe_headers_are_written_as_the_mail_program_reads_them() -> None:
    from topup.adapters.notify.smtp import compose

    link = "https://topup.example/api/v1/reminders/unsubscribe?token=" + "a" * 90
    raw = compose(
        sender="topup <no-reply@topup.example>",
        recipient="aisyah@example.com",
        subject="Reminder",
        body="Hello\n",
        at=AFTERNOON,
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    ).as_bytes()
    assert f"List-Unsubscribe: <{link}>\r\n".encode() in raw.replace(b"\r\n", b"\n").replace(
        b"\n", b"\r\n"
    )
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    with pytest.raises(InputError):
        compose(
            sender="a@b.c",
            recipient="d@e.f",
            subject="s",
            body="b",
            at=AFTERNOON,
            headers={"Bcc": "x@y.z"},
        )
