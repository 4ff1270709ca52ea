"""The fleet pages over HTTP, without JavaScript (plain form posts), on SQLite and PostgreSQL:
the fleet with its counts, filters and CSV; a CSV upload -> the dry run (each line's message,
the total) -> Start (twice: one run) -> the run's page -> the worker's pass -> the result file;
retry the failed lines; roles (a viewer sees, cannot start; the services refuse it anyway);
forged organisation and run ids are not found; invoices as PDF; the fleet-wide policy."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import AppFactory
from tests.e2e.web.conftest import site_client
from tests.fleets import DECLINED_PAYMENT_CARD, PAYMENT_CARD, PLAN, Fleet, make_fleet, work_bulk
from topup.adapters.clock import FixedClock
from topup.bootstrap import Application
from topup.domain.money import Money
from topup.entrypoints.web.portal import fleet_bulk, fleet_events
from topup.ports import PaymentCardDetails
from topup.services.accounts import hash_password
from topup.services.demo import load_demo
from topup.services.fleets import bulk, organisations, policy
from topup.settings import LimitSettings

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
START_KEY = re.compile(r'name="start_key" value="([^"]+)"')
HIDDEN_LINES = re.compile(
    r'<textarea name="lines" class="fleet-hidden" hidden[^>]*>(.*?)</textarea>', re.S
)
START_FORM = re.compile(r'<form method="post" action="[^"]+/bulk-renewals/start".*?</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
RUN_PATH = re.compile(r"^/organisations/[^/]+/bulk-renewals/([0-9a-f-]{36})$")


@dataclass
class FleetSite:
    application: Application
    client: httpx.AsyncClient
    fleet: Fleet

    @property
    def org(self) -> str:
        return f"/organisations/{self.fleet.organisation_id}"

    async def sign_in(self, email: str) -> None:
        self.client.cookies.clear()
        page = await self.client.get("/accounts/sign-in")
        token = CSRF.search(page.text)
        assert token is not None
        answer = await self.client.post(
            "/accounts/sign-in",
            data={
                "email": email,
                "password": PASSWORD,
                "next": "/accounts/cards",
                "csrf_token": token.group(1),
            },
        )
        assert answer.status_code == 303, answer.text

    async def csrf(self, path: str) -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found is not None, page.text
        return found.group(1)

    async def upload(self, text: str, *, organisation: str | None = None) -> httpx.Response:
        path = organisation or self.org
        token = await self.csrf(f"{self.org}/bulk-renewals")
        return await self.client.post(
            f"{path}/bulk-renewals/check",
            data={"csrf_token": token},
            files={"file": ("lines.csv", text.encode(), "text/csv")},
        )

    async def start(self, dry_run: httpx.Response) -> httpx.Response:
        """Press the dry run's Start: its form's fields, as the browser would send them."""
        form = START_FORM.search(dry_run.text)
        assert form is not None, dry_run.text
        lines = HIDDEN_LINES.search(form.group(0))
        assert START_KEY.search(form.group(0)) and lines, dry_run.text
        text = lines.group(1).replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
        fields = {name: (None, value) for name, value in HIDDEN.findall(form.group(0))}
        return await self.client.post(
            f"{self.org}/bulk-renewals/start", files={**fields, "lines": (None, text)}
        )


@pytest.fixture
async def site(make_app: AppFactory) -> AsyncIterator[FleetSite]:
    application = make_app(limits=LimitSettings(login_slowdown_s=0, login_per_minute_max=1000))
    services = application.services
    await load_demo(services)
    fleet = await make_fleet(services, cards=4, password_hash=await hash_password(PASSWORD))
    async with site_client(application) as client:
        yield FleetSite(application, client, fleet)


def _lines(msisdns: list[str], plan: str = PLAN) -> str:
    return "number,plan\n" + "".join(f"{msisdn},{plan}\n" for msisdn in msisdns)


def _later(site: FleetSite) -> None:
    """Move the site's clock past a waiting line's next look (a renewal being applied)."""
    clock = site.application.services.clock
    assert isinstance(clock, FixedClock)
    clock.advance(site.application.services.limits.fleets.bulk_waiting_recheck_s + 1)


async def _drain(site: FleetSite) -> None:
    for _ in range(20):
        if not await work_bulk(site.application.services):
            return
        _later(site)


async def test_the_fleet_page_shows_counts_filters_and_exports_csv(site: FleetSite) -> None:
    await site.sign_in("viewer@fleet.example")
    cards = await site.client.get("/accounts/cards")
    assert f"{site.org}/fleet" in cards.text  # the account's page links its organisation's fleet
    page = await site.client.get(f"{site.org}/fleet")
    assert page.status_code == 200, page.text
    assert "Fleet Sdn Bhd" in page.text and "spent this month" in page.text
    assert page.text.count("<tr>") == 1 + 4  # the header and the four cards
    assert site.fleet.other_msisdns[0][-4:] not in page.text
    found = await site.client.get(f"{site.org}/fleet", params={"q": site.fleet.msisdns[2][-7:]})
    assert found.text.count("<tr>") == 1 + 1
    export = await site.client.get(f"{site.org}/fleet.csv", params={"status": "active"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text.lstrip("\ufeff"))))
    assert rows[0][0] == "Number" and len(rows) == 1 + 4


async def test_an_admin_uploads_checks_starts_once_and_downloads_the_result(
    site: FleetSite,
) -> None:
    await site.sign_in("admin@fleet.example")
    text = _lines(site.fleet.msisdns[:3]) + "0123,nothing\n" + f"{site.fleet.msisdns[0]},{PLAN}\n"
    dry_run = await site.upload(text)
    assert dry_run.status_code == 200, dry_run.text
    assert "3</span> to renew" in dry_run.text and "2</span> with a problem" in dry_run.text
    assert "already on an earlier line" in dry_run.text  # each line's message, in English
    assert "Start: renew 3 cards for" in dry_run.text
    started = await site.start(dry_run)
    assert started.status_code == 303, started.text
    run_path = started.headers["location"]
    run_id = RUN_PATH.match(run_path)
    assert run_id is not None
    again = await site.start(dry_run)  # a double click: the same run
    assert again.headers["location"] == run_path
    services = site.application.services
    runs = await bulk.recent_runs(services, site.fleet.admin_id, site.fleet.organisation_id)
    assert len(runs) == 1
    running = await site.client.get(run_path)
    assert running.status_code == 200 and "Running" in running.text
    assert 'http-equiv="refresh"' in running.text and "/events?since=" in running.text
    await _drain(site)
    finished = await site.client.get(run_path)
    assert "Finished" in finished.text and 'http-equiv="refresh"' not in finished.text
    result = await site.client.get(run_path + "/result.csv")
    rows = list(csv.DictReader(io.StringIO(result.text.lstrip("\ufeff"))))
    assert [row["outcome"] for row in rows] == ["succeeded"] * 3 + ["rejected"] * 2
    assert all(row["renewal_id"] for row in rows[:3]) and rows[4]["error_code"] == (
        "bulk_line_duplicate"
    )
    # The same file again renews nothing twice: its cards were renewed recently, left out...
    upload_again = await site.upload(text)
    assert "3</span> renewed recently, left out" in upload_again.text
    assert "already renewed by a bulk renewal started at 2026-11-25 16:00" in upload_again.text
    assert "Start: renew" not in upload_again.text and 'name="renew_again"' in upload_again.text
    # ... unless the admin asks to renew them again: a new dry run, then a new run.
    asked = await site.client.post(
        f"{site.org}/bulk-renewals/check",
        files={
            "csrf_token": (None, await site.csrf(f"{site.org}/bulk-renewals")),
            "lines": (None, text),
            "renew_again": (None, "1"),
        },
    )
    assert "Start: renew 3 cards for" in asked.text, asked.text
    second = await site.start(asked)
    assert second.status_code == 303, second.text
    await _drain(site)
    again_rows = list(
        csv.DictReader(
            io.StringIO(
                (await site.client.get(second.headers["location"] + "/result.csv")).text.lstrip(
                    "\ufeff"
                )
            )
        )
    )
    assert [row["outcome"] for row in again_rows[:3]] == ["succeeded"] * 3
    assert {row["renewal_id"] for row in again_rows[:3]}.isdisjoint(
        row["renewal_id"] for row in rows[:3]
    )


async def test_the_dry_run_speaks_the_visitors_language(site: FleetSite) -> None:
    await site.sign_in("admin@fleet.example")
    site.client.headers["accept-language"] = "zh-CN"
    dry_run = await site.upload(f"{site.fleet.other_msisdns[0]},{PLAN}\n")
    assert "此号码不是您机构的上网卡" in dry_run.text
    site.client.headers["accept-language"] = "en"


async def test_a_viewer_sees_runs_but_cannot_start_or_retry(site: FleetSite) -> None:
    services = site.application.services
    run = await bulk.start_run(
        services, site.fleet.admin_id, site.fleet.organisation_id, _lines(site.fleet.msisdns)
    )
    await site.sign_in("viewer@fleet.example")
    page = await site.client.get(f"{site.org}/bulk-renewals")
    assert page.status_code == 200 and "As a viewer" in page.text
    assert run.id in page.text
    dry_run = await site.upload(_lines(site.fleet.msisdns))  # looking is allowed
    assert dry_run.status_code == 200 and "start_key" not in dry_run.text
    token = await site.csrf(f"{site.org}/bulk-renewals")
    forged = await site.client.post(
        f"{site.org}/bulk-renewals/start",
        files={
            "csrf_token": (None, token),
            "lines": (None, _lines(site.fleet.msisdns)),
            "start_key": (None, "forged"),
        },
    )
    assert forged.status_code == 403 and "but not change it (viewer)" in forged.text
    shown = await site.client.get(f"{site.org}/bulk-renewals/{run.id}")
    assert shown.status_code == 200 and "/retry" not in shown.text
    retried = await site.client.post(
        f"{site.org}/bulk-renewals/{run.id}/retry", data={"csrf_token": token}
    )
    assert retried.status_code == 403
    policy = await site.client.get(f"{site.org}/auto-renewal")
    assert policy.status_code == 200 and 'name="plan_one"' not in policy.text
    refused = await site.client.post(
        f"{site.org}/auto-renewal", data={"csrf_token": token, "plan_one": PLAN}
    )
    assert refused.status_code == 403 and "but not change it (viewer)" in refused.text


async def test_forged_organisation_and_run_ids_are_not_found(site: FleetSite) -> None:
    services = site.application.services
    theirs = await bulk.start_run(
        services,
        site.fleet.outsider_id,
        site.fleet.other_organisation_id,
        _lines(site.fleet.other_msisdns),
    )
    await site.sign_in("admin@fleet.example")
    other = f"/organisations/{site.fleet.other_organisation_id}"
    for path in (
        f"{other}/fleet",
        f"{other}/fleet.csv",
        f"{other}/bulk-renewals",
        f"{other}/bulk-renewals/{theirs.id}",
        f"{other}/bulk-renewals/{theirs.id}/result.csv",
        f"{other}/bulk-renewals/{theirs.id}/events",
        f"{other}/invoices",
        f"{other}/auto-renewal",
        "/organisations/no-such-organisation/fleet",
        f"{site.org}/bulk-renewals/{theirs.id}",  # their run through my organisation
        f"{site.org}/bulk-renewals/{theirs.id}/result.csv",
    ):
        answer = await site.client.get(path)
        assert answer.status_code == 404, path
    assert (await site.upload(_lines(site.fleet.msisdns), organisation=other)).status_code == 404
    token = await site.csrf(f"{site.org}/bulk-renewals")
    retry = await site.client.post(
        f"{site.org}/bulk-renewals/{theirs.id}/retry", data={"csrf_token": token}
    )
    assert retry.status_code == 404


async def test_an_upload_over_the_size_limit_is_refused(make_app: AppFactory) -> None:
    limits = LimitSettings(login_slowdown_s=0, bulk_upload_bytes_max=1024)
    application = make_app(limits=limits)
    await load_demo(application.services)
    fleet = await make_fleet(
        application.services, cards=1, password_hash=await hash_password(PASSWORD)
    )
    async with site_client(application) as client:
        site = FleetSite(application, client, fleet)
        await site.sign_in("admin@fleet.example")
        answer = await site.upload(_lines(fleet.msisdns) + "x" * 2000)
        assert answer.status_code == 422 and "at most 1 KB" in answer.text
        huge = await site.upload("x" * 200_000)  # over the door's bound: refused unread
        assert huge.status_code == 413


async def test_the_fleet_policy_and_invoices(site: FleetSite) -> None:
    services = site.application.services
    run = await bulk.start_run(
        services, site.fleet.admin_id, site.fleet.organisation_id, _lines(site.fleet.msisdns)
    )
    await _drain(site)
    assert (await bulk.run_progress(services, None, site.fleet.organisation_id, run.id)).finished
    await site.sign_in("admin@fleet.example")
    token = await site.csrf(f"{site.org}/auto-renewal")
    asked = await site.client.post(
        f"{site.org}/auto-renewal", data={"csrf_token": token, "mode": "one", "plan_one": PLAN}
    )
    # Asked for, not done inside the request: the worker applies it, the page follows.
    assert asked.status_code == 303, asked.text
    assert asked.headers["location"] == f"{site.org}/auto-renewal?notice=policy_started"
    running = await site.client.get(asked.headers["location"])
    assert "The policy is being applied: 0 of 4 cards (0%)." in running.text
    assert 'http-equiv="refresh"' in running.text and "/auto-renewal/events?since=" in running.text
    again = await site.client.post(
        f"{site.org}/auto-renewal",
        data={"csrf_token": CSRF.search(running.text).group(1), "plan_one": PLAN},  # type: ignore[union-attr]
    )
    assert again.status_code == 409 and "is being applied now" in again.text
    while await policy.process_policy_requests(services):
        pass
    applied = await site.client.get(f"{site.org}/auto-renewal")
    assert "Auto-renewal was turned on for 4 cards." in applied.text
    assert 'http-equiv="refresh"' not in applied.text
    ended = await site.client.get(f"{site.org}/auto-renewal/events", params={"since": "old"})
    assert ended.text.rstrip().endswith("event: end\ndata:")
    fleet = await site.client.get(f"{site.org}/fleet")
    assert fleet.text.count("fleet policy") == 4
    invoices = await site.client.get(f"{site.org}/invoices")
    assert invoices.status_code == 200
    month = re.search(r'/invoices/(\d{4}-\d{2})"', invoices.text)
    assert month is not None
    pdf = await site.client.post(
        f"{site.org}/invoices/{month.group(1)}",
        data={"csrf_token": CSRF.search(invoices.text).group(1)},  # type: ignore[union-attr]
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


async def _pay_with(site: FleetSite, details: PaymentCardDetails) -> None:
    services = site.application.services
    token = (await services.gateway.tokenize(details)).token
    await organisations.set_payment_token_as_operator(services, site.fleet.organisation_id, token)


@pytest.fixture
async def one_line_a_batch(make_app: AppFactory) -> AsyncIterator[FleetSite]:
    """A site whose worker takes one line a pass (what pays can change between two lines)."""
    limits = LimitSettings(login_slowdown_s=0, login_per_minute_max=1000, bulk_batch_size=1)
    application = make_app(limits=limits)
    await load_demo(application.services)
    fleet = await make_fleet(
        application.services, cards=3, password_hash=await hash_password(PASSWORD)
    )
    async with site_client(application) as client:
        yield FleetSite(application, client, fleet)


SINCE = re.compile(r'data-live="([^"?]+)\?since=([0-9a-f]+)"')
EVENT = re.compile(r"^event: (\w+)\ndata: ?(.*)$", re.M)


async def test_the_runs_events_follow_its_progress_line_by_line_then_end(
    one_line_a_batch: FleetSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event stream, read while a worker renews the run's lines one at a time: a ``change``
    for each step the counts moved (at least two), then ``end`` once the run is finished."""
    monkeypatch.setattr(fleet_events, "EVENTS_POLL_S", 0.02)
    monkeypatch.setattr(fleet_events, "EVENTS_STREAM_S", 60.0)  # a broken test fails, not hangs
    site = one_line_a_batch
    services = site.application.services
    await site.sign_in("admin@fleet.example")
    started = await site.start(await site.upload(_lines(site.fleet.msisdns)))
    run_path = started.headers["location"]
    run_id = run_path.rsplit("/", 1)[1]
    page = await site.client.get(run_path)
    live = SINCE.search(page.text)
    assert live is not None, page.text
    assert live.group(1) == run_path + "/events"

    async def worker() -> list[str]:
        """Renew one line, wait for the stream to see it, again (then see each renewal applied,
        once its look is due); the versions after each step."""
        seen = []
        await asyncio.sleep(0.3)  # the stream is open and has looked once
        for _ in range(20):
            if not await work_bulk(services):
                _later(site)
                if not await work_bulk(services):
                    break
            progress = await bulk.run_progress(services, None, site.fleet.organisation_id, run_id)
            seen.append(fleet_bulk._version(progress))
            await asyncio.sleep(0.3)
        return seen

    stepping = asyncio.create_task(worker())
    stream = await site.client.get(f"{run_path}/events", params={"since": live.group(2)})
    after_each_line = await stepping
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = EVENT.findall(stream.text)
    # Three lines paid one by one, then each found applied: six steps, each its own counts.
    assert len(after_each_line) == 6 and len(set(after_each_line)) == 6
    changes = [data for name, data in events if name == "change"]
    assert live.group(2) not in changes  # only what moved after the page was drawn
    # Each line's progress reached the page as its own event, in order, then the end.
    positions = [changes.index(version) for version in after_each_line]
    assert positions == sorted(positions) and len(changes) >= 3
    assert events[-1] == ("end", "") and [name for name, _ in events].count("end") == 1
    assert changes[-1] == after_each_line[-1]  # the finished run's counts, then the end
    finished = await site.client.get(run_path, headers={"X-Topup-Partial": "progress"})
    assert "<html" not in finished.text and "result.csv" in finished.text


async def test_an_admin_retries_the_failed_lines_and_only_they_are_renewed_again(
    one_line_a_batch: FleetSite,
) -> None:
    site = one_line_a_batch
    renewed, declined = site.fleet.msisdns[:2]
    await site.sign_in("admin@fleet.example")
    site.client.headers["accept-language"] = "zh-CN"  # the visitor reads Chinese
    started = await site.start(await site.upload(_lines([renewed, declined]) + "junk\n"))
    run_path = started.headers["location"]
    services = site.application.services
    assert await bulk.process_bulk_lines(services) == 1  # the first line, paid
    await _pay_with(site, DECLINED_PAYMENT_CARD)  # then the organisation's card declines
    await _drain(site)
    page = await site.client.get(run_path)
    assert page.status_code == 200 and "部分行失败" in page.text  # finished, some lines failed
    assert "您的银行卡被拒绝" in page.text  # the decline told in the visitor's language
    assert "无法读取此行" in page.text  # and the line the check left out, too
    retry_form = re.search(r'<form method="post" action="([^"]+/retry)"', page.text)
    assert retry_form is not None and "重试 1 个失败的行" in page.text
    result = await site.client.get(run_path + "/result.csv")
    rows = list(csv.DictReader(io.StringIO(result.text.lstrip("\ufeff"))))
    assert [row["outcome"] for row in rows] == ["succeeded", "failed", "rejected"]
    assert rows[1]["error_code"] == "card_declined"  # the code in its column, and the message
    assert rows[1]["message"].startswith("Your payment card was declined.")  # in English, the
    # organisation's language, whoever downloads it

    # A viewer sees the failed run but no retry, and is refused one.
    await site.sign_in("viewer@fleet.example")
    shown = await site.client.get(run_path)
    assert shown.status_code == 200 and "/retry" not in shown.text
    token = await site.csrf(f"{site.org}/bulk-renewals")
    refused = await site.client.post(retry_form.group(1), data={"csrf_token": token})
    assert refused.status_code == 403
    organisation = site.fleet.organisation_id
    assert len(await bulk.recent_runs(services, site.fleet.admin_id, organisation)) == 1

    # The admin pays with a good card again and retries: a new run of the failed line only.
    await _pay_with(site, PAYMENT_CARD)
    await site.sign_in("admin@fleet.example")
    token = await site.csrf(run_path)
    retried = await site.client.post(retry_form.group(1), data={"csrf_token": token})
    assert retried.status_code == 303
    retry_path = retried.headers["location"]
    assert RUN_PATH.match(retry_path) and retry_path != run_path
    again = await site.client.post(retry_form.group(1), data={"csrf_token": token})
    assert again.headers["location"] == retry_path  # pressed twice: the same retry
    await _drain(site)
    retry_page = await site.client.get(retry_path)
    assert "已完成" in retry_page.text and "/retry" not in retry_page.text
    retry_rows = list(
        csv.DictReader(
            io.StringIO((await site.client.get(retry_path + "/result.csv")).text.lstrip("\ufeff"))
        )
    )
    # (a number starting with "+" is written so a spreadsheet does not take it for a formula)
    assert [(row["number"], row["outcome"]) for row in retry_rows] == [
        ("'" + declined, "succeeded")
    ]
    assert len(await bulk.recent_runs(services, site.fleet.admin_id, organisation)) == 2
    site.client.headers["accept-language"] = "en"


async def test_an_invoice_for_a_month_out_of_range_or_malformed_is_a_precise_error_page(
    site: FleetSite,
) -> None:
    await site.sign_in("viewer@fleet.example")
    token = await site.csrf(f"{site.org}/invoices")
    answers = {
        month: await site.client.post(f"{site.org}/invoices/{month}", data={"csrf_token": token})
        for month in ("9999-12", "0000-01", "1999-12", "2026-13", "2026-123", "2026-1", "x")
    }
    for month, answer in answers.items():
        # No such invoice (a month out of range), or not a month (the project's 422).
        expected = 404 if month in ("9999-12", "0000-01", "1999-12") else 422
        assert answer.status_code == expected, (month, answer.status_code)
        assert "<html" in answer.text and "%PDF" not in answer.text
    assert "There is no invoice for 9999-12: choose a month from 2000-01 to 2026-11." in (
        answers["9999-12"].text
    )
    assert "2026-123 is not a month" in answers["2026-123"].text  # not read as 2026-12
    # A non-member learns nothing: not found, whatever the month.
    other = f"/organisations/{site.fleet.other_organisation_id}"
    for month in ("9999-12", "x", "2026-11"):
        answer = await site.client.post(f"{other}/invoices/{month}", data={"csrf_token": token})
        assert answer.status_code == 404, month


async def test_start_refuses_a_total_that_changed_and_shows_the_new_check(site: FleetSite) -> None:
    services = site.application.services
    await site.sign_in("admin@fleet.example")
    dry_run = await site.upload(_lines(site.fleet.msisdns[:2]))
    assert "Start: renew 2 cards for MYR20.00" in dry_run.text
    async with services.unit_of_work() as uow:  # the price changes before Start is pressed
        plan = await uow.plans.get(PLAN)
        assert plan is not None
        await uow.plans.upsert(dataclasses.replace(plan, price=Money(1500, "MYR")))
        await uow.commit()

    refused = await site.start(dry_run)

    assert refused.status_code == 409, refused.text
    assert "The total changed from MYR 20.00 to MYR 30.00" in refused.text
    assert "Start: renew 2 cards for MYR30.00" in refused.text  # the new check, to start from
    assert not await bulk.recent_runs(services, site.fleet.admin_id, site.fleet.organisation_id)
    started = await site.start(refused)
    assert started.status_code == 303 and RUN_PATH.match(started.headers["location"])
    # A Start that carries no total (not from the check's page) starts nothing either.
    token = await site.csrf(f"{site.org}/bulk-renewals")
    bare = await site.client.post(
        f"{site.org}/bulk-renewals/start",
        files={"csrf_token": (None, token), "lines": (None, _lines(site.fleet.msisdns[2:]))},
    )
    assert bare.status_code == 422 and "Check the lines first" in bare.text
    runs = await bulk.recent_runs(services, site.fleet.admin_id, site.fleet.organisation_id)
    assert len(runs) == 1
