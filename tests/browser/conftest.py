"""The browser tests' harness: one real site and one real browser for the whole run.

- ``live_site`` (session): ``topup init --demo`` then ``topup serve --with-worker`` in a
  subprocess on a free port of 127.0.0.1, on a SQLite file of its own, e-mailing through a real
  SMTP server (aiosmtpd, in this process) and texting through the sandbox SMS outbox.
- ``browser`` (session): Debian's Chromium (``/usr/bin/chromium``) driven by Playwright. Without
  it these tests are skipped with a reason, except under CI, where that is a failure.
- ``new_page(locale=..., phone=..., javascript=...)``: a page in a fresh browser context (its
  own cookies), closed after the test.
- ``screenshots(page, name)``: the page at phone and desktop sizes, saved as PNGs under
  ``var/screenshots/<test>/`` (git-ignored) for a person to look at.
- ``axe_check(page)``: axe-core (from the axe-playwright-python package) finds no serious or
  critical violation on the page.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = Path(os.environ.get("TOPUP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGUMENTS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PHONE = {"width": 360, "height": 740}
LARGE_PHONE = {"width": 390, "height": 844}  # a common larger phone (iPhone 12 to 14)
DESKTOP = {"width": 1280, "height": 800}
SITE_START_S = 60.0
# Generous limits for the site under test: journeys from one address, one after the other.
SITE_ENVIRONMENT = {
    "TOPUP_CARD_LOOKUP_PER_MINUTE_MAX": "10000",
    "TOPUP_RECOVERY_PER_HOUR_MAX": "1000",
    "TOPUP_LOGIN_PER_MINUTE_MAX": "1000",
    "TOPUP_CONFIRM_PER_MINUTE_MAX": "1000",
    "TOPUP_SMS_CODES_PER_HOUR_MAX": "1000",
    "TOPUP_LOGIN_SLOWDOWN_S": "0",
    "TOPUP_NETWORK_DELAY_S": "1.0",
    "TOPUP_NETWORK_LATENCY_S": "0.01",
    "TOPUP_GATEWAY_LATENCY_S": "0.01",
    "TOPUP_WALLET_APPROVAL_DELAY_S": "1.0",
    "TOPUP_SMS_LATENCY_S": "0.01",
    "TOPUP_WORKER_IDLE_SLEEP_S": "0.1",
    "TOPUP_REMINDER_INTERVAL_S": "1",  # reminders queued within a second (test_reminders.py)
    "TOPUP_BULK_WAITING_RECHECK_S": "2",  # a bulk line whose payment is not known yet
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _SmtpSink:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@dataclass
class LiveSite:
    url: str
    folder: Path
    environment: dict[str, str]
    sink: _SmtpSink
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        """The e-mails the SMTP server received, oldest first (to ``to`` only, if given)."""
        return [
            message
            for recipients, message in list(self.sink.messages)
            if to is None or to.lower() in (item.lower() for item in recipients)
        ]

    def wait_for_mail(self, to: str, *, count: int = 1, timeout_s: float = 15.0) -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.mails(to)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.1)
        raise AssertionError(f"no e-mail number {count} to {to} within {timeout_s} s")

    def sms(self) -> list[dict[str, Any]]:
        """The text messages the sandbox SMS gateway sent, oldest first."""
        outbox = self.folder / "var" / "sandbox-sms.jsonl"
        if not outbox.exists():
            return []
        return [json.loads(line) for line in outbox.read_text("utf-8").splitlines() if line]

    def wait_for_sms(self, to_digits: str, *, timeout_s: float = 15.0) -> dict[str, Any]:
        """The newest text to a number whose digits end with ``to_digits``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [
                item
                for item in self.sms()
                if re.sub(r"\D", "", json.dumps(item.get("to", ""))).endswith(to_digits)
            ]
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no text message to ...{to_digits} within {timeout_s} s")

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """``topup <arguments>`` on the site's database (its output as text)."""
        return subprocess.run(
            [_topup(), *arguments],
            cwd=self.folder,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def _topup() -> str:
    found = Path(sys.executable).parent / "topup"
    return str(found) if found.exists() else (shutil.which("topup") or "topup")


def _wait_until_serving(site: LiveSite) -> None:
    deadline = time.monotonic() + SITE_START_S
    while time.monotonic() < deadline:
        if site.process is not None and site.process.poll() is not None:
            raise RuntimeError("the site stopped at start-up:\n" + site.log.read_text()[-4000:])
        try:
            if httpx.get(f"{site.url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the site did not start:\n" + site.log.read_text()[-4000:])


@pytest.fixture(scope="session")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    from aiosmtpd.controller import Controller

    folder = tmp_path_factory.mktemp("live-site")
    sink = _SmtpSink()
    smtp_port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")},
        **SITE_ENVIRONMENT,
        "TOPUP_DATABASE_URL": f"sqlite:///{folder / 'topup.sqlite3'}",
        "TOPUP_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "TOPUP_PUBLIC_URL": url,
        "TOPUP_SANDBOX_WEBHOOK_URL": url,
    }
    site = LiveSite(url, folder, environment, sink, folder / "site.log")
    initialised = site.cli("init", "--demo")
    if initialised.returncode != 0:
        controller.stop()
        raise RuntimeError(f"topup init --demo failed:\n{initialised.stdout}{initialised.stderr}")
    with site.log.open("wb") as log:
        site.process = subprocess.Popen(
            [_topup(), "serve", "--with-worker", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(site)
        yield site
    finally:
        site.process.terminate()
        try:
            site.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            site.process.kill()
        controller.stop()
        tracebacks = [line for line in site.log.read_text().splitlines() if "Traceback" in line]
        # A bug on the site (a traceback in its log) fails the run, even if every page looked fine.
        assert not tracebacks, "the site logged a traceback:\n" + site.log.read_text()[-8000:]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGUMENTS, headless=True
        )
        yield launched
        launched.close()


PageFactory = Callable[..., Any]


@pytest.fixture
def new_page(browser: Any, live_site: LiveSite) -> Iterator[PageFactory]:
    contexts: list[Any] = []

    def factory(
        *, locale: str = "en-GB", phone: bool = False, javascript: bool = True, **options: Any
    ) -> Any:
        context = browser.new_context(
            base_url=live_site.url,
            locale=locale,
            viewport=PHONE if phone else DESKTOP,
            is_mobile=phone,
            has_touch=phone,
            java_script_enabled=javascript,
            timezone_id="Asia/Kuala_Lumpur",
            **options,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Callable[..., list[Path]]:
    folder = SCREENSHOTS / re.sub(r"[^\w.-]+", "_", request.node.name)

    def take(page: Any, name: str, *, large_phone: bool = False) -> list[Path]:
        """Full-page shots at phone and desktop sizes (and a larger phone's, if asked)."""
        folder.mkdir(parents=True, exist_ok=True)
        original = page.viewport_size
        taken = []
        sizes = [("phone", PHONE), ("desktop", DESKTOP)]
        if large_phone:
            sizes.insert(1, ("phone-390", LARGE_PHONE))
        for size_name, size in sizes:
            page.set_viewport_size(size)
            path = folder / f"{name}-{size_name}.png"
            page.screenshot(path=str(path), full_page=True)
            taken.append(path)
        if original:
            page.set_viewport_size(original)
        return taken

    return take


SERIOUS = frozenset({"serious", "critical"})


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [item for item in results.response["violations"] if item.get("impact") in SERIOUS]


@pytest.fixture
def axe_check() -> Callable[[Any], None]:
    def check(page: Any) -> None:
        found = axe_violations(page)
        summary = [
            f"{item['id']} ({item['impact']}): {item['help']} at "
            + ", ".join(str(node["target"]) for node in item["nodes"][:3])
            for item in found
        ]
        assert not found, f"axe on {page.url}:\n" + "\n".join(summary)

    return check
