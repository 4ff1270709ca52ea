"""The renewal's pages over HTTP (journeys 3 and 5): who sees the status page, its refresh
without JavaScript, its live block and events, the e-wallet's waiting page and the sandbox
wallet's approval (webhook or return first, paid once), the receipt on screen, as PDF in the
visitor's language and e-mailed (the address only in the form's body)."""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

import topup
from tests.conftest import START, AppFactory
from topup.adapters.clock import FixedClock
from topup.adapters.db import tables as t
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.adapters.notify.mail_outbox import MemoryMailer
from topup.bootstrap import Application
from topup.entrypoints.site import create_site
from topup.entrypoints.web.portal.status_access import RENEWAL_COOKIE
from topup.entrypoints.web.portal.status_events import StreamSlots
from topup.entrypoints.worker import work_once
from topup.services.demo import load_demo
from topup.services.wallets import handle_webhook

CARD = "0123456789"
PLAN = "pack_5gb_7d"
WALLET_ACCOUNT = "60123456781"
WORK_ROUNDS_MAX = 20
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Site:
    application: Application
    clock: FixedClock
    client: httpx.AsyncClient

    async def renew(self, **payment: Any) -> dict[str, Any]:
        """A renewal made through the API, as the checkout makes one; this browser holds its
        client secret as the checkout leaves it."""
        if not payment:
            token = await self.client.post(
                "/sandbox/psp/v1/tokens",
                json={
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            )
            payment = {"method": "credit_card", "token": token.json()["token"]}
        answer = await self.client.post(
            "/api/v1/renewals",
            json={"card_number": CARD, "plan": PLAN, "payment": payment},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        self.client.cookies.set(
            RENEWAL_COOKIE, created["client_secret"], path=f"/renewals/{created['id']}"
        )
        return created

    async def renew_by_wallet(self, account: str = WALLET_ACCOUNT) -> dict[str, Any]:
        return await self.renew(method="ewallet:tng", wallet_account=account)

    async def work(self) -> None:
        for _ in range(WORK_ROUNDS_MAX):
            if await work_once(self.application.services) == 0:
                return
        raise AssertionError("the worker still had work")

    async def csrf(self, path: str) -> str:
        page = await self.client.get(path)
        found = _CSRF.search(page.text)
        assert found, page.text[:500]
        return found.group(1)

    async def captures(self, renewal_id: str) -> int:
        async with self.application.services.unit_of_work() as uow:
            connection = uow.connection  # type: ignore[attr-defined]
            query = (
                select(func.count())
                .select_from(t.ledger_entries)
                .where(t.ledger_entries.c.kind == "capture")
                .where(t.ledger_entries.c.renewal_id == renewal_id)
            )
            return int((await connection.execute(query)).scalar_one())


def site_client(application: Application) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_site(application), client=("203.0.113.9", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[Site]:
    clock = FixedClock(START)
    application = make_app(clock=clock, wallet_approval_delay_s=600.0)
    await load_demo(application.services)
    async with site_client(application) as client:
        yield Site(application, clock, client)


def stranger(site: Site) -> httpx.AsyncClient:
    return site_client(site.application)


# --- the status page --------------------------------------------------------------------------


async def test_the_browser_that_paid_sees_the_status_and_a_stranger_with_the_id_does_not(
    site: Site,
) -> None:
    created = await site.renew()
    page = await site.client.get(f"/renewals/{created['id']}")
    assert page.status_code == 200
    assert "being activated" in page.text
    assert created["receipt_number"] in page.text  # the reference to quote
    assert page.headers["cache-control"] == "private, no-store"
    async with stranger(site) as other:
        theirs = await other.get(f"/renewals/{created['id']}")
        nobody = await other.get(f"/renewals/{uuid.uuid4()}")
    assert theirs.status_code == nobody.status_code == 404
    assert created["receipt_number"] not in theirs.text


async def test_the_cards_signed_in_owner_sees_its_status_on_any_browser_and_others_do_not(
    make_app: AppFactory,
) -> None:
    from tests.e2e.api.test_accounts import Demo
    from topup.settings import LimitSettings

    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_per_minute_max=1000))
    await load_demo(application.services)
    async with site_client(application) as client:
        demo = Demo(application, client)
        owner = await demo.bearer("owner@example.com")
        await demo.link(owner)
        stranger_account = await demo.bearer("stranger@example.com")
        created = await Site(application, FixedClock(START), client).renew()
    path = f"/renewals/{created['id']}"
    for headers, seen in ((owner, 200), (stranger_account, 404)):
        async with site_client(application) as browser:  # no cookie of the renewal
            token = headers["Authorization"].removeprefix("Bearer ")
            browser.cookies.set("topup_session", token)
            assert (await browser.get(path)).status_code == seen
            assert (await browser.get(f"{path}/receipt")).status_code == seen


async def test_the_status_page_reloads_itself_without_javascript_until_the_renewal_is_final(
    site: Site,
) -> None:
    created = await site.renew()
    waiting = await site.client.get(f"/renewals/{created['id']}")
    assert '<noscript><meta http-equiv="refresh"' in waiting.text
    assert 'data-live="/renewals/' in waiting.text
    await site.work()
    done = await site.client.get(f"/renewals/{created['id']}")
    assert "Done: your renewal is active" in done.text
    assert 'http-equiv="refresh"' not in done.text
    assert "Activated on the network" in done.text  # the timeline's last step


async def test_the_page_says_when_it_is_expected_and_when_late_to_contact_customer_service(
    site: Site,
) -> None:
    created = await site.renew()
    page = await site.client.get(f"/renewals/{created['id']}")
    assert "Expected by" in page.text
    assert "longer than usual" not in page.text
    late_after_s = site.application.services.limits.activation.activation_late_after_s
    site.clock.advance(late_after_s + 1)
    late = await site.client.get(f"/renewals/{created['id']}")
    assert "This is taking longer than usual." in late.text
    assert "tel:+60327000000" in late.text  # how: the profile's customer service
    assert "help@topup.example" in late.text
    assert created["receipt_number"] in late.text


async def test_a_methods_own_activation_times_are_the_ones_shown_and_promised(
    make_app: AppFactory, tmp_path: Path
) -> None:
    shipped = (Path(topup.__file__).parent / "methods" / "my.toml").read_text("utf-8")
    configured = tmp_path / "methods.toml"
    configured.write_text(
        shipped.replace(
            "[methods.credit_card]\n",
            "[methods.credit_card]\nactivation_typical_delay_s = 1800\n"
            "activation_late_after_s = 14400\n",
        ),
        "utf-8",
    )
    application = make_app(methods_file=str(configured))
    await load_demo(application.services)
    async with site_client(application) as client:
        created = await Site(application, FixedClock(START), client).renew()
        page = await client.get(f"/renewals/{created['id']}")
    paid_at = dt.datetime.fromisoformat(created["paid_at"])
    expected_by = dt.datetime.fromisoformat(created["estimated_activation_by"])
    contact_after = dt.datetime.fromisoformat(created["contact_support_after"])
    assert expected_by - paid_at == dt.timedelta(minutes=30)
    assert contact_after - paid_at == dt.timedelta(hours=4)
    assert "within 30 minutes" in page.text


async def test_the_status_page_is_in_the_visitors_language(site: Site) -> None:
    created = await site.renew()
    page = await site.client.get(f"/renewals/{created['id']}", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="zh-Hans">' in page.text
    assert "预计" in page.text and "Expected by" not in page.text


async def test_the_live_block_alone_is_given_to_the_pages_script(site: Site) -> None:
    created = await site.renew()
    block = await site.client.get(f"/renewals/{created['id']}", headers={"X-Topup-Partial": "live"})
    assert block.status_code == 200
    assert "<html" not in block.text
    assert "data-live-region" in block.text


async def test_the_events_say_change_then_end_and_are_not_compressed(site: Site) -> None:
    created = await site.renew()
    await site.work()
    events = await site.client.get(
        f"/renewals/{created['id']}/events?page=status&since=old",
        headers={"Accept-Encoding": "gzip"},
    )
    assert events.status_code == 200
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in events.headers
    assert events.headers["cache-control"] == "no-store"
    assert events.text.startswith("retry: ")
    assert "event: change\n" in events.text
    assert events.text.rstrip().endswith("event: end\ndata:")


async def test_a_stream_sends_heartbeats_and_ends_at_its_time_limit_for_the_browser_to_reconnect(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from topup.entrypoints.web.portal import status_events

    monkeypatch.setattr(status_events, "EVENTS_STREAM_S", 0.5)
    monkeypatch.setattr(status_events, "EVENTS_HEARTBEAT_S", 0.1)
    monkeypatch.setattr(status_events, "EVENTS_POLL_S", 0.05)
    created = await site.renew()  # activating: not final, so only the time limit ends it
    events = await site.client.get(f"/renewals/{created['id']}/events?page=status&since=old")
    assert events.status_code == 200
    assert ": heartbeat\n\n" in events.text
    assert events.text.count("event: change") == 1  # once, then nothing changed
    assert "event: end" not in events.text  # the browser reconnects after the retry delay


async def test_a_stranger_gets_no_events_about_a_renewal(site: Site) -> None:
    created = await site.renew()
    async with stranger(site) as other:
        events = await other.get(f"/renewals/{created['id']}/events")
    assert events.status_code == 404


def _web_app(site: Site) -> Any:
    return site.client._transport.app.web  # type: ignore[attr-defined]


async def test_too_many_live_pages_are_refused_with_retry_after_and_the_page_polls_instead(
    site: Site,
) -> None:
    created = await site.renew()
    _web_app(site).state.status_stream_slots = StreamSlots(total_max=0, per_client_max=0)
    events = await site.client.get(f"/renewals/{created['id']}/events")
    assert events.status_code == 503
    assert int(events.headers["retry-after"]) > 0


def test_stream_slots_are_counted_per_client_and_in_all() -> None:
    slots = StreamSlots(total_max=3, per_client_max=2)
    assert slots.take("a") and slots.take("a")
    assert not slots.take("a")  # this client's
    assert slots.take("b")
    assert not slots.take("c")  # in all
    slots.give_back("a")
    assert slots.take("c")
    assert slots.running == 3


# --- the e-wallet -----------------------------------------------------------------------------


def _wallet_link(page: str) -> str:
    found = re.search(r'href="(http://[^"]+/sandbox/wallet/[^"]+)"', page)
    assert found, page[:2000]
    return found.group(1).replace("&amp;", "&").removeprefix("http://127.0.0.1:8000")


async def test_a_wallet_renewal_waits_on_a_page_with_a_button_and_a_qr_code(site: Site) -> None:
    created = await site.renew_by_wallet()
    assert created["status"] == "requires_action"
    status = await site.client.get(f"/renewals/{created['id']}")
    assert status.status_code == 303
    assert status.headers["location"] == f"/renewals/{created['id']}/wallet"
    waiting = await site.client.get(f"/renewals/{created['id']}/wallet")
    assert waiting.status_code == 200
    assert "<svg" in waiting.text and "<script" not in waiting.text.split("</main>")[0]
    assert 'style="' not in waiting.text  # the policy forbids inline styles
    link = _wallet_link(waiting.text)
    assert f"return_to=/renewals/{created['id']}/wallet/return" in link
    assert '<noscript><meta http-equiv="refresh"' in waiting.text


async def test_approving_in_the_wallet_sends_the_payer_back_to_a_paid_status_page_once(
    site: Site,
) -> None:
    created = await site.renew_by_wallet()
    waiting = await site.client.get(f"/renewals/{created['id']}/wallet")
    link = _wallet_link(waiting.text)
    approval = await site.client.get(link)
    assert approval.status_code == 200
    assert "Approve this payment?" in approval.text
    reference = link.split("/sandbox/wallet/")[1].split("?")[0]
    answer = await site.client.post(
        f"/sandbox/wallet/{reference}",
        data={
            "csrf_token": await site.csrf(link),
            "decision": "approve",
            "return_to": f"/renewals/{created['id']}/wallet/return",
        },
    )
    assert answer.status_code == 303
    back = await site.client.get(answer.headers["location"])  # the wallet's return
    assert back.status_code == 303 and back.headers["location"] == f"/renewals/{created['id']}"
    status = await site.client.get(back.headers["location"])
    assert "being activated" in status.text
    # The webhook was first; the return and a replay of the webhook change nothing.
    wallet = site.application.services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    payment_id = wallet.approval(reference).payment_id  # type: ignore[union-attr]
    body, headers = wallet._decision_webhook(payment_id, True)
    services = site.application.services
    assert await handle_webhook(services, "sandbox_wallet", body, headers) == "duplicate"
    await site.client.get(f"/renewals/{created['id']}/wallet/return")
    await site.work()
    assert await site.captures(created["id"]) == 1
    done = await site.client.get(f"/renewals/{created['id']}/wallet")
    assert done.status_code == 303  # nothing to wait for: the status page


async def test_when_the_return_comes_before_the_webhook_the_renewal_is_paid_once(
    site: Site,
) -> None:
    created = await site.renew_by_wallet()
    wallet = site.application.services.gateways["sandbox_wallet"]
    assert isinstance(wallet, SandboxWallet)
    deliver, wallet.deliver = wallet.deliver, None  # the provider's webhook is late
    waiting = await site.client.get(f"/renewals/{created['id']}/wallet")
    link = _wallet_link(waiting.text)
    reference = link.split("/sandbox/wallet/")[1].split("?")[0]
    await site.client.post(
        f"/sandbox/wallet/{reference}",
        data={"csrf_token": await site.csrf(link), "decision": "approve", "return_to": ""},
    )
    still = await site.client.get(f"/renewals/{created['id']}")
    assert still.status_code == 303  # no webhook yet: still waiting as far as we know
    back = await site.client.get(f"/renewals/{created['id']}/wallet/return")
    status = await site.client.get(back.headers["location"])
    assert "being activated" in status.text
    payment_id = wallet.approval(reference).payment_id  # type: ignore[union-attr]
    body, headers = wallet._decision_webhook(payment_id, True)
    assert deliver is not None
    await deliver(body, headers)  # the webhook, at last
    await site.work()
    assert await site.captures(created["id"]) == 1
    assert "Done: your renewal is active" in (await site.client.get(back.headers["location"])).text


async def test_refusing_in_the_wallet_declines_the_renewal_and_nothing_is_taken(
    site: Site,
) -> None:
    created = await site.renew_by_wallet()
    waiting = await site.client.get(f"/renewals/{created['id']}/wallet")
    link = _wallet_link(waiting.text)
    reference = link.split("/sandbox/wallet/")[1].split("?")[0]
    scanned = link.split("?")[0]  # by the QR code: no way back to this browser
    answer = await site.client.post(
        f"/sandbox/wallet/{reference}",
        data={"csrf_token": await site.csrf(scanned), "decision": "refuse"},
    )
    assert answer.status_code == 200
    assert "Payment refused" in answer.text
    assert "moves on by itself" in answer.text
    status = await site.client.get(f"/renewals/{created['id']}")
    assert "The payment was not taken" in status.text
    assert await site.captures(created["id"]) == 0


async def test_an_approval_the_wallet_did_not_issue_is_not_found(site: Site) -> None:
    for reference in ("wapp_eyJwIjoieCJ9.forged", "anything"):
        page = await site.client.get(f"/sandbox/wallet/{reference}")
        assert page.status_code == 404


async def test_an_answer_without_the_forms_token_is_refused(site: Site) -> None:
    created = await site.renew_by_wallet()
    waiting = await site.client.get(f"/renewals/{created['id']}/wallet")
    reference = _wallet_link(waiting.text).split("/sandbox/wallet/")[1].split("?")[0]
    answer = await site.client.post(f"/sandbox/wallet/{reference}", data={"decision": "approve"})
    assert answer.status_code == 403
    still = await site.client.get(f"/renewals/{created['id']}")
    assert still.status_code == 303  # still waiting for the wallet


# --- the receipt ------------------------------------------------------------------------------


async def test_the_receipt_is_shown_once_paid_and_only_to_who_may_see_the_renewal(
    site: Site,
) -> None:
    created = await site.renew()
    receipt = await site.client.get(f"/renewals/{created['id']}/receipt")
    assert receipt.status_code == 200
    assert created["receipt_number"] in receipt.text
    assert created["verification_code"] in receipt.text
    async with stranger(site) as other:
        assert (await other.get(f"/renewals/{created['id']}/receipt")).status_code == 404
        assert (await other.get(f"/renewals/{created['id']}/receipt.pdf")).status_code == 404
    unpaid = await site.renew_by_wallet()
    assert (await site.client.get(f"/renewals/{unpaid['id']}/receipt")).status_code == 404


def pdf_text(document: bytes) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)
    return text.replace("\x00", "")  # a CJK font's two-byte codes, as pypdf reads them


async def test_the_receipt_pdf_is_in_the_visitors_language(site: Site) -> None:
    created = await site.renew()
    pdf = await site.client.get(
        f"/renewals/{created['id']}/receipt.pdf", headers={"Accept-Language": "ms"}
    )
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-language"] == "ms"
    text = pdf_text(pdf.content)
    assert created["receipt_number"] in text
    assert "Nombor resit" in text or "Resit" in text


async def test_the_receipt_is_emailed_to_the_address_typed_which_never_reaches_an_address_bar(
    site: Site,
) -> None:
    created = await site.renew()
    path = f"/renewals/{created['id']}/receipt"
    sent = await site.client.post(
        f"{path}/email",
        data={"csrf_token": await site.csrf(path), "email": "payer@example.com"},
        headers={"Accept-Language": "id"},
    )
    assert sent.status_code == 303
    assert "@" not in sent.headers["location"] and "payer" not in sent.headers["location"]
    shown = await site.client.get(sent.headers["location"])
    assert "payer@example.com" not in shown.text
    mailer = site.application.services.mailer
    assert isinstance(mailer, MemoryMailer)
    [mail] = mailer.sent
    assert mail.recipient == "payer@example.com"
    assert created["receipt_number"] in mail.subject and created["receipt_number"] in mail.body
    assert "Terima kasih" in mail.body  # in the visitor's language (Indonesian)


async def test_a_mistyped_email_address_is_shown_beside_its_field(site: Site) -> None:
    created = await site.renew()
    path = f"/renewals/{created['id']}/receipt"
    answer = await site.client.post(
        f"{path}/email", data={"csrf_token": await site.csrf(path), "email": "not an address"}
    )
    assert answer.status_code == 422
    assert "data-error-summary" in answer.text
    assert 'href="#email"' in answer.text
    assert 'aria-invalid="true"' in answer.text


async def test_receipt_emails_are_rate_limited(make_app: AppFactory) -> None:
    from topup.settings import LimitSettings

    application = make_app(limits=LimitSettings(recovery_per_hour_max=1))
    await load_demo(application.services)
    async with site_client(application) as client:
        created = await Site(application, FixedClock(START), client).renew()
        path = f"/renewals/{created['id']}/receipt"
        token = _CSRF.search((await client.get(path)).text).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": token, "email": "payer@example.com"}
        assert (await client.post(f"{path}/email", data=form)).status_code == 303
        again = await client.post(f"{path}/email", data=form)
    assert again.status_code == 429
