"""Reminders on SQLite and PostgreSQL: two schedulers and two senders at once send each
(card, period, kind) once per channel, a re-run sends nothing, a renewal cancels what is still
pending; Web Push reaches a real push endpoint on 127.0.0.1 that checks the VAPID signature and
decrypts the message; e-mail goes through a real SMTP server with its one-click unsubscribe."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from sqlalchemy import func, select

from tests.conftest import AppFactory
from tests.integration.test_smtp_mailer import mailer_for, running_smtp_server
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.notify.web_push import WebPushSender, ensure_vapid_key
from topup.bootstrap import Application
from topup.domain.cards import Card, CardKind, CardStatus
from topup.domain.money import Money
from topup.entrypoints.site import create_site
from topup.ports import PushSubscription
from topup.services.reminders.scheduling import queue_due_reminders
from topup.services.reminders.sending import send_due_deliveries
from topup.settings import LimitSettings

AFTERNOON = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)  # 14:00 in Kuala Lumpur
DAY = dt.timedelta(days=1)
CARDS = 30
LIMITS = LimitSettings(reminder_batch_size=7, reminder_event_gap_wait_s=0)


@dataclass
class CountingSms:
    """An SMS provider that ignores idempotency keys: any duplicate would be seen here."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, msisdn: str, text: str, *, idempotency_key: str | None = None) -> None:
        await asyncio.sleep(0)  # let the other worker run in between
        self.sent.append((msisdn, idempotency_key or ""))


def _card(index: int, ends: dt.datetime, *, email: str = "") -> Card:
    return Card(
        id=f"card-{index:04d}",
        msisdn=f"+6012300{index:04d}",
        iccid=f"8960099{index:012d}",
        kind=CardKind.PREPAID,
        status=CardStatus.ACTIVE,
        currency="MYR",
        credit=Money(0, "MYR"),
        data_quota_mb=100,
        validity_end=ends,
        bill_due=Money.zero("MYR"),
        bill_due_date=None,
        email=email,
    )


async def _add_cards(application: Application, cards: list[Card]) -> None:
    async with application.services.unit_of_work() as uow:
        for card in cards:
            await uow.cards.add(card, at=AFTERNOON)
        await uow.commit()


async def _count(application: Application, table: Any, *where: Any) -> int:
    async with application.engine.connect() as connection:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return int((await connection.execute(query)).scalar_one())


async def test_two_schedulers_and_two_senders_at_once_send_each_reminder_once(
    make_app: AppFactory,
) -> None:
    clock = FixedClock(AFTERNOON)
    first, second = make_app(clock=clock, limits=LIMITS), make_app(clock=clock, limits=LIMITS)
    sms = CountingSms()
    for application in (first, second):
        application.services.sms = sms
        application.services.mailer = None
        application.services.push = None
    await _add_cards(first, [_card(index, AFTERNOON + 2 * DAY) for index in range(CARDS)])
    queued = await asyncio.gather(
        queue_due_reminders(first.services), queue_due_reminders(second.services)
    )
    assert sum(queued) == CARDS
    assert await _count(first, t.reminders) == CARDS
    assert await _count(first, t.reminder_deliveries) == CARDS * 3

    async def drain(application: Application) -> None:
        while await send_due_deliveries(application.services):
            pass

    await asyncio.gather(drain(first), drain(second))
    assert len(sms.sent) == CARDS
    assert len({key for _, key in sms.sent}) == CARDS
    assert sorted(number for number, _ in sms.sent) == sorted(
        f"+6012300{i:04d}" for i in range(CARDS)
    )
    # A re-run of the scheduler and the senders: nothing new.
    assert await queue_due_reminders(first.services) == 0
    assert await queue_due_reminders(second.services) == 0
    await asyncio.gather(drain(first), drain(second))
    assert len(sms.sent) == CARDS
    sent = t.reminder_deliveries.c.status == "sent"
    assert await _count(first, t.reminder_deliveries, sent) == CARDS


async def test_a_restart_after_a_claim_resends_nothing_the_provider_took_twice(
    make_app: AppFactory,
) -> None:
    """A worker that claimed a batch and died: the lease runs out, another worker claims it and
    sends with the same delivery id, which the sandbox SMS provider takes once."""
    clock = FixedClock(AFTERNOON)
    application = make_app(clock=clock, limits=LIMITS, sandbox_sms_outbox="")
    await _add_cards(application, [_card(1, AFTERNOON + 2 * DAY)])
    await queue_due_reminders(application.services)
    async with application.services.unit_of_work() as uow:
        claimed = await uow.reminders.claim_deliveries(
            now=AFTERNOON, lease_until=AFTERNOON + dt.timedelta(seconds=120), limit=10
        )
        await uow.commit()
    assert len(claimed) == 3
    assert await send_due_deliveries(application.services) == 0  # leased: nobody else takes them
    clock.advance(121)
    assert await send_due_deliveries(application.services) == 3
    assert await send_due_deliveries(application.services) == 0


async def test_a_renewal_cancels_the_reminders_not_yet_sent(make_app: AppFactory) -> None:
    night = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)  # 23:00: the SMS waits
    clock = FixedClock(night)
    application = make_app(clock=clock, limits=LIMITS)
    sms = CountingSms()
    application.services.sms = sms
    card = _card(2, night + 2 * DAY)
    await _add_cards(application, [card])
    await queue_due_reminders(application.services)
    while await send_due_deliveries(application.services):
        pass
    async with application.services.unit_of_work() as uow:
        renewed = replace(card, validity_end=night + 32 * DAY, version=1)
        await uow.cards.save(renewed, expected_version=0, at=night)
        await uow.commit()
    clock.set(dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC))
    while await send_due_deliveries(application.services):
        pass
    assert sms.sent == []
    cancelled = t.reminder_deliveries.c.status == "cancelled"
    assert await _count(application, t.reminder_deliveries, cancelled) == 2  # SMS and push
    # The new period gets its own reminders, when they are due.
    clock.set(night + 30 * DAY)
    assert await queue_due_reminders(application.services) == 1


# --- a real push endpoint ---------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class Browser:
    """What a browser holds for a push subscription: its key pair and authentication secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = b"0123456789abcdef"

    def subscription(self, endpoint: str) -> PushSubscription:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return PushSubscription(endpoint, _b64url(public), _b64url(self.auth))


@dataclass
class PushService:
    """The push endpoint's view: each request's headers and the message it decrypted."""

    browser: Browser
    vapid_public_key: str
    received: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@contextmanager
def running_push_service(service: PushService) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            authorization = self.headers.get("authorization", "")
            try:
                scheme, _, parameters = authorization.partition(" ")
                values = dict(part.split("=", 1) for part in parameters.split(","))
                assert scheme == "vapid" and values["k"] == service.vapid_public_key
                assert Vapid02.verify(authorization), "the VAPID signature does not verify"
                claims = json.loads(base64.urlsafe_b64decode(values["t"].split(".")[1] + "=="))
                port = self.server.server_address[1]
                assert claims["aud"] == f"http://127.0.0.1:{port}", claims
                assert claims["sub"].startswith("mailto:")
                assert self.headers["content-encoding"] == "aes128gcm"
                plain = http_ece.decrypt(
                    body,
                    private_key=service.browser.key,
                    auth_secret=service.browser.auth,
                    version="aes128gcm",
                )
                service.received.append(
                    {"headers": dict(self.headers), "message": json.loads(plain), "claims": claims}
                )
            except Exception as error:  # answered as a push service would: refused
                service.problems.append(repr(error))
                self.send_response(400)
                self.end_headers()
                return
            self.send_response(201)
            self.end_headers()

        def log_message(self, *arguments: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


async def _link(application: Application, card: Card, *, language: str) -> str:
    async with application.engine.begin() as connection:
        await connection.execute(
            t.accounts.insert().values(
                id="account-1",
                email="owner@example.com",
                password_hash="x",
                language=language,
                created_at=AFTERNOON,
                confirmed_at=AFTERNOON,
            )
        )
        await connection.execute(
            t.card_links.insert().values(
                account_id="account-1", card_id=card.id, linked_at=AFTERNOON
            )
        )
    return "account-1"


async def test_a_reminder_reaches_a_real_push_endpoint_signed_and_encrypted(
    make_app: AppFactory, tmp_path: Path
) -> None:
    clock = FixedClock(AFTERNOON)
    application = make_app(clock=clock, limits=LIMITS)
    key_file = ensure_vapid_key(tmp_path / "var" / "vapid.pem")
    assert key_file.stat().st_mode & 0o777 == 0o600
    sender = WebPushSender(
        key_file, subject="mailto:ops@topup.example", timeout_s=5, clock=clock.now
    )
    application.services.push = sender
    application.services.sms = CountingSms()
    application.services.mailer = None
    browser = Browser()
    service = PushService(browser, sender.public_key)
    card = _card(3, AFTERNOON + 2 * DAY)
    await _add_cards(application, [card])
    account_id = await _link(application, card, language="zh_Hans")
    try:
        with running_push_service(service) as port:
            endpoint = f"http://127.0.0.1:{port}/push/subscription-1"
            async with application.services.unit_of_work() as uow:
                await uow.reminders.save_push_subscription(
                    account_id, browser.subscription(endpoint), at=AFTERNOON
                )
                await uow.commit()
            await queue_due_reminders(application.services)
            while await send_due_deliveries(application.services):
                pass
    finally:
        await sender.aclose()
    assert service.problems == []
    [received] = service.received
    message = received["message"]
    assert "有效期" in message["title"] and message["lang"] == "zh-Hans"
    assert message["url"].endswith(f"/accounts/cards/{card.id}/renew")
    headers = {name.lower(): value for name, value in received["headers"].items()}
    assert int(headers["ttl"]) > 0 and len(headers["topic"]) <= 32
    pushed = t.reminder_deliveries.c.channel == "push"
    sent = t.reminder_deliveries.c.status == "sent"
    assert await _count(application, t.reminder_deliveries, pushed, sent) == 1


async def test_a_push_endpoint_that_is_gone_forgets_the_subscription(
    make_app: AppFactory, tmp_path: Path
) -> None:
    clock = FixedClock(AFTERNOON)
    application = make_app(clock=clock, limits=LIMITS)
    sender = WebPushSender(
        ensure_vapid_key(tmp_path / "vapid.pem"),
        subject="mailto:ops@topup.example",
        timeout_s=5,
        clock=clock.now,
    )

    def gone(request: httpx.Request) -> httpx.Response:
        return httpx.Response(410)

    sender._client = httpx.AsyncClient(transport=httpx.MockTransport(gone))
    application.services.push = sender
    card = _card(4, AFTERNOON + 2 * DAY)
    await _add_cards(application, [card])
    account_id = await _link(application, card, language="en")
    async with application.services.unit_of_work() as uow:
        await uow.reminders.save_push_subscription(
            account_id, Browser().subscription("https://push.example/gone"), at=AFTERNOON
        )
        await uow.commit()
    await queue_due_reminders(application.services)
    while await send_due_deliveries(application.services):
        pass
    await sender.aclose()
    assert await _count(application, t.push_subscriptions) == 0


# --- a real SMTP server -----------------------------------------------------------------------


async def test_a_reminder_e_mail_through_smtp_unsubscribes_in_one_click(
    make_app: AppFactory,
) -> None:
    clock = FixedClock(AFTERNOON)
    application = make_app(clock=clock, limits=LIMITS)
    application.services.sms = CountingSms()
    card = _card(5, AFTERNOON + 2 * DAY, email="aisyah@example.com")
    await _add_cards(application, [card])
    with running_smtp_server() as (sink, port):
        application.services.mailer = mailer_for(port)
        await queue_due_reminders(application.services)
        while await send_due_deliveries(application.services):
            pass
    [(recipients, message)] = sink.messages
    assert recipients == ["aisyah@example.com"]
    assert "ends in 2 days" in message["Subject"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = message["List-Unsubscribe"].strip("<>")
    assert one_click.startswith("http://127.0.0.1:8000/api/v1/reminders/unsubscribe?token=")
    assert message["Message-ID"].startswith("<reminder-")
    body = message.get_content()
    assert "/reminders/unsubscribe?token=" in body
    # The mail program's one-click POST: no cookie, no CSRF token, no page.
    transport = httpx.ASGITransport(app=create_site(application), client=("203.0.113.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        path = one_click.removeprefix("http://127.0.0.1:8000")
        answer = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"unsubscribed": True, "channel": "email"}
        opened = await client.get(path)
        assert opened.status_code == 303
        assert opened.headers["location"].startswith("/reminders/unsubscribe?token=")
        forged = await client.post(path[:-2] + "00", data={"List-Unsubscribe": "One-Click"})
        assert forged.status_code == 422  # the API answers an InputError so
    off = t.reminder_preferences.c.enabled.is_(False)
    assert await _count(application, t.reminder_preferences, off) == 1


async def test_the_due_cards_after_a_batch_are_those_past_its_last_card_in_end_then_id_order(
    make_app: AppFactory,
) -> None:
    """A pass reads the cards due for a reminder a batch at a time, each from where the one
    before stopped: cards of the same end in id order, none read twice, none skipped; a card
    that has its reminder is read (the next batch starts after it) but not returned."""
    application = make_app(clock=FixedClock(AFTERNOON), limits=LIMITS)
    ends = [AFTERNOON + 2 * DAY, AFTERNOON + 2 * DAY, AFTERNOON + 2 * DAY + dt.timedelta(hours=1)]
    await _add_cards(application, [_card(index, ends[index % 3]) for index in range(6)])
    async with application.engine.begin() as connection:
        await connection.execute(
            t.reminders.insert().values(
                id="r-3",
                card_id="card-0003",
                period=ends[0].isoformat(timespec="seconds"),
                kind="validity_ending_3d",
                period_end=ends[0],
                status="queued",
                due_at=AFTERNOON,
                detail="{}",
                created_at=AFTERNOON,
                updated_at=AFTERNOON,
            )
        )

    async def due(after: tuple[dt.datetime, str] | None) -> tuple[list[str], object]:
        async with application.services.unit_of_work() as uow:
            cards, last = await uow.reminders.due_by_date(
                kind="validity_ending_3d",
                status="active",
                ends_after=AFTERNOON + DAY,
                ends_by=AFTERNOON + 3 * DAY,
                end_offset_days=0,
                limit=3,
                after=after,
            )
        return [card.id for card in cards], last

    assert await due(None) == (["card-0000", "card-0001"], (ends[0], "card-0003"))
    second = await due((ends[0], "card-0003"))
    assert second == (["card-0004", "card-0002", "card-0005"], (ends[2], "card-0005"))
    assert await due((ends[2], "card-0005")) == ([], None)
    assert await due((ends[0], "card-0004")) == (["card-0002", "card-0005"], None)
