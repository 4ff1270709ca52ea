"""The portal's renewal journey over HTTP: concurrent simulated subscribers against `topup serve`
on PostgreSQL, next to the API-only renewal measured in the same run on the same server.

What it does, in order:

1. creates a fresh database ``topup_portal_bench_<random>`` on the server named by
   TOPUP_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test), migrates it and
   loads the demo plans and ``--cards`` prepaid cards (bench/renewals.py's helpers);
2. starts one ``topup serve --workers N`` on it (sandbox card gateway without latency, no
   activation worker: the figures are the server's own; rate limits lifted, every subscriber
   comes from 127.0.0.1);
3. walks journey 1 once as a new visitor to weigh each page: its HTML and the CSS and JavaScript
   it loads, as transferred (gzip), when none is cached (fonts and images aside);
4. the API-only reference: ``--subscribers`` clients loop POST /api/v1/renewals (the sandbox
   card token, a new Idempotency-Key each, a card drawn at random);
5. journey 1: ``--subscribers`` simulated subscribers, each with its own connection and
   cookies, loop the journey (home, card look-up, the card's page with its plans, the plan's
   payment methods, the payment form, pay with the card token, the status page), each journey
   as a new visitor (a new connection, no cookies, nothing cached: the CSS and JS are loaded
   once per journey; ``--returning`` keeps all three across a subscriber's journeys); forms are
   filled from the HTML (CSRF token, hidden fields, the attempt that makes the server's
   idempotency key); no time is spent reading a page (``--think-seconds`` adds it: then the
   p99s are those of a lighter load, the CPU per journey the same); the status page is read
   once: its live updates (a Server-Sent Events stream that reads the renewal every second
   while the page is open) are not in the figures;
   the two parts take turns ``--rounds`` times (``--seconds`` of each shared among the rounds;
   the renewal tables emptied before each turn; a warm-up at each, until every subscriber has
   been through one loop): whatever else the shared machine does weighs on both alike;
6. prints journeys/s, p50/p99 of each step, bytes of each page, server and PostgreSQL CPU per
   journey and per API renewal, their ratio, and this driver's own CPU (on 2 cores a driver
   using most of one is part of the figure: the output says so); then drops the database.

The card token comes from the sandbox PSP's tokeniser once, before the run, for both parts: a
browser gets it from the PSP, whose CPU is not topup's (the sandbox's runs in this server).

Targets of the issue (2 cores): a journey costs at most 2x the server CPU of the API renewal;
p99 of every page <= 250 ms at 64 subscribers; each page <= 60 KB transferred. A benchmark prints
figures; it asserts nothing.

``--profile FILE`` runs the journey a second time against ``topup serve --workers 1`` under
cProfile (the server's own CPU, doubled by the profiler) and prints where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import io
import json
import os
import pstats
import random
import re
import resource
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httptools
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_renewals
import renewals as engine_bench

from topup.bootstrap import build, migrate
from topup.settings import Settings

PLAN_CODE = engine_bench.PLAN_CODE
REQUEST_TIMEOUT_S = 30.0
READ_BYTES = 65_536
GZIP_WBITS = 16 + zlib.MAX_WBITS
ASSETS_STEP = "CSS/JS (first load)"
PAGE_BYTES_TARGET = 60 * 1024
PAGE_P99_TARGET_MS = 250.0
CPU_RATIO_TARGET = 2.0
DRIVER_BUSY_CORES_WARNING = 0.6  # "most of a core": the driver may be what limits the figure
SUBSCRIBERS_TARGET = 64
FAILURE_PAUSE_S = 0.05
ROUND_WARMUP_S = 2.0  # the warm-up of every round after the first (at least)
WARMUP_S_MAX = 90.0
SPREAD_S_MAX = 30.0
BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (Linux; Android 12) topup-bench/1",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Accept-Encoding": "gzip",
    "Accept-Language": "en",
}
LIFTED_LIMITS = {  # every simulated subscriber is 127.0.0.1
    "TOPUP_CARD_LOOKUP_PER_MINUTE_MAX": "1000000000",
    "TOPUP_CONFIRM_PER_MINUTE_MAX": "1000000000",
}
# One server process (``--workers 1``: uvicorn serves in the main thread) profiled while the
# journey is measured: SIGUSR1 starts the profiler, SIGUSR2 stops it and writes PROFILE. The
# profiler counts the main thread's CPU time, not the wall clock: on a shared machine a process
# waiting for a core would otherwise charge the wait to whatever it was running.
PROFILED_SERVER = """
import cProfile, signal, sys, time
from topup.entrypoints.cli import main
profiler = cProfile.Profile(time.thread_time)
def start(*_): profiler.enable()
def stop(*_): profiler.disable(); profiler.dump_stats(PROFILE)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv = ["topup", *sys.argv[1:]]
main()
"""
PROFILE_LINES = 30
PROFILE_WRITE_S = 2.0  # the profiled server writing its profile


# --- options ------------------------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-url",
        default=os.environ.get("TOPUP_BENCH_DATABASE_URL", http_renewals.DEFAULT_SERVER_URL),
    )
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS_TARGET)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, per part")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the parts take turns this many times (the seconds shared among them)",
    )
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--language", default="en", help="the subscribers' Accept-Language")
    parser.add_argument(
        "--think-seconds",
        type=float,
        default=0.0,
        help="a subscriber reads each page this long on average before acting (default: none)",
    )
    parser.add_argument(
        "--returning",
        action="store_true",
        help="keep each subscriber's cookies and cached CSS/JS across its journeys",
    )
    parser.add_argument("--skip-api", action="store_true", help="the journey only")
    parser.add_argument(
        "--profile", type=Path, default=None, help="then profile the journey into this file"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", dest="as_json")
    return parser.parse_args(argv)


# --- recording ----------------------------------------------------------------------------------


class JourneyError(Exception):
    """An answer the journey did not expect: the journey stops, the next one starts."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass
class Recorder:
    """What the subscribers saw; only requests started while ``measuring`` count."""

    measuring: bool = False
    subscribers: int = 0
    warm: int = 0  # subscribers that have been through one loop
    all_warm: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # each subscriber ends its journey, then stops
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    wire_bytes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    completed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)  # 404s of a page not built yet
    first_failures: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def request(
        self, step: str, seconds: float, wire_bytes: int, *, started_measuring: bool
    ) -> None:
        if step not in self.latencies_s:
            self.order.append(step)
            self.latencies_s.setdefault(step, [])
        if started_measuring:
            self.latencies_s[step].append(seconds)
            self.wire_bytes[step].append(wire_bytes)

    def failed(self, failure: JourneyError) -> None:
        if self.measuring:
            self.failures[failure.step] += 1
        self.first_failures.setdefault(failure.step, failure.detail)


@dataclass(frozen=True)
class Page:
    url: str  # path and query
    status: int
    text: str
    location: str | None
    wire_bytes: int


# --- a browser's HTTP/1.1 connection --------------------------------------------------------------
#
# httpx cost this driver 1.5 to 2.4 ms of CPU a request on the 2-core machine (its pool's locks
# and events; httpcore tries to import the absent sniffio on every request): the driver would
# take the server's cores. A keep-alive connection parsed with uvicorn's own parser (httptools)
# costs about a third of that.


class Answer:
    """httptools' callbacks: one response's headers and body as they arrive."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # decoded
    wire_bytes: int  # status line, headers and the body as sent (compressed)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class Connection:
    """One keep-alive connection, opened when needed, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        if self.streams is not None:
            writer = self.streams[1]
            self.streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, head: bytes, body: bytes) -> Response:
        reused = self.streams is not None
        try:
            return await self._exchange(head, body)
        except ConnectionClosedError:
            if not reused:
                raise
        # The server closed the idle connection before this request: once more on a new one.
        return await self._exchange(head, body)

    async def _exchange(self, head: bytes, body: bytes) -> Response:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(head + body)
        answer = Answer()
        parser = httptools.HttpResponseParser(answer)
        received = 0
        while not answer.complete:
            data = await reader.read(READ_BYTES)
            if not data:
                await self.close()
                if received == 0:
                    raise ConnectionClosedError
                raise OSError("the server closed the connection mid-answer")
            received += len(data)
            parser.feed_data(data)
        # (httptools' should_keep_alive() is reset once the message is complete: ask HTTP/1.1.)
        closes = any(n == "connection" and "close" in v.lower() for n, v in answer.headers)
        if closes or parser.get_http_version() != "1.1":
            await self.close()
        content = b"".join(answer.body)
        if ("content-encoding", "gzip") in answer.headers:
            content = zlib.decompress(content, wbits=GZIP_WBITS)
        return Response(parser.get_status_code(), answer.headers, content, received)


class ConnectionClosedError(OSError):
    """The server closed the connection before answering (an idle keep-alive timed out)."""


# --- one subscriber -----------------------------------------------------------------------------


STYLESHEET = re.compile(r"<link\b[^>]*\brel=\"stylesheet\"[^>]*>", re.I)
SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", re.I)
HREF = re.compile(r"\bhref=\"([^\"]+)\"", re.I)
JS_IMPORT = re.compile(r"""(?:\bimport\b[^'"]*?|\bfrom\s*)["']([^"']+\.m?js)["']""")
CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?["']?([^"')\s]+\.css)""")


def page_assets(text: str) -> list[str]:
    """The stylesheets and scripts a page loads (fonts and images aside)."""
    found = [m.group(1) for m in (HREF.search(tag) for tag in STYLESHEET.findall(text)) if m]
    found += SCRIPT.findall(text)
    return [html.unescape(url) for url in found]


def imported_assets(url: str, text: str) -> list[str]:
    """What a stylesheet or script imports in turn."""
    pattern = CSS_IMPORT if url.endswith(".css") else JS_IMPORT
    return [urljoin(url, found) for found in pattern.findall(text)]


class Visitor:
    """One simulated subscriber: its connection, its cookies, what its browser has cached."""

    def __init__(self, base: str, recorder: Recorder, language: str, think_s: float = 0) -> None:
        self.base = base
        self.think_s = think_s
        address = urlsplit(base)
        self.connection = Connection(address.hostname or "127.0.0.1", address.port or 80)
        self.recorder = recorder
        self.common_head = "".join(
            f"{name}: {value}\r\n"
            for name, value in {
                **BROWSER_HEADERS,
                "Host": address.netloc,
                "Accept-Language": language,
            }.items()
        )
        self.cookies: dict[str, str] = {}
        self.cached: set[str] = set()
        self.asset_bytes: dict[str, int] = {}  # what each asset weighed, once seen
        self.page_assets: dict[str, list[str]] = {}  # step -> every asset its page loads

    async def think(self, chooser: random.Random) -> None:
        """The subscriber reading the page before acting on it: ``--think-seconds`` on average
        (half to one and a half times it)."""
        if self.think_s:
            await asyncio.sleep(self.think_s * chooser.uniform(0.5, 1.5))

    async def new_visit(self) -> None:
        """A new visitor: a new connection, no cookies, nothing cached."""
        await self.connection.close()
        self.cookies.clear()
        self.cached.clear()

    async def close(self) -> None:
        await self.connection.close()

    def _head(self, method: str, url: str, headers: dict[str, str], length: int | None) -> bytes:
        lines = [f"{method} {url} HTTP/1.1\r\n", self.common_head]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if self.cookies:
            cookies = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            lines.append(f"Cookie: {cookies}\r\n")
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _keep_cookies(self, response: Response) -> None:
        for name, value in response.headers:
            if name != "set-cookie":
                continue
            pair, _, attributes = value.partition(";")
            cookie, _, content = pair.strip().partition("=")
            lowered = attributes.lower().replace(" ", "")
            if "max-age=0" in lowered or "1970" in lowered:
                self.cookies.pop(cookie, None)
            else:
                self.cookies[cookie] = content

    async def send(
        self,
        step: str,
        method: str,
        url: str,
        *,
        expect: tuple[int, ...],
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        extra = dict(headers or {})
        body = b""
        if data is not None:
            body = urlencode(data).encode()
            extra["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            extra["Content-Type"] = "application/json"
        head = self._head(method, url, extra, len(body) if method != "GET" else None)
        measuring = self.recorder.measuring
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await self.connection.request(head, body)
        except (OSError, TimeoutError, httptools.HttpParserError) as error:
            await self.connection.close()
            raise JourneyError(step, f"{method} {url}: {type(error).__name__} {error}") from None
        elapsed = time.perf_counter() - started
        self.recorder.request(step, elapsed, response.wire_bytes, started_measuring=measuring)
        self._keep_cookies(response)
        if response.status not in expect:
            text = response.body[:300].decode("utf-8", "replace")
            raise JourneyError(step, f"{method} {url}: {response.status} {text!r}")
        return response

    async def page(
        self,
        step: str,
        method: str,
        url: str,
        *,
        expect: tuple[int, ...] = (200,),
        data: dict[str, str] | None = None,
    ) -> Page:
        """A page as a browser loads it: the HTML, then the CSS and JS it has not cached."""
        headers = {}
        if method == "POST":
            headers = {"Origin": self.base, "Sec-Fetch-Site": "same-origin"}
        response = await self.send(step, method, url, expect=expect, data=data, headers=headers)
        found = Page(
            url,
            response.status,
            response.body.decode("utf-8", "replace"),
            response.header("location"),
            response.wire_bytes,
        )
        if found.status == 200:
            await self._load_assets(step, [urljoin(url, a) for a in page_assets(found.text)])
        return found

    async def _load_assets(self, step: str, assets: list[str]) -> None:
        """The page's CSS and JS, and what they import, unless cached."""
        loads: list[str] = []
        waiting = list(assets)
        while waiting:
            asset = waiting.pop(0)
            if asset in loads:
                continue
            loads.append(asset)
            if asset in self.cached:
                continue
            loaded = await self.send(ASSETS_STEP, "GET", asset, expect=(200,))
            self.cached.add(asset)
            self.asset_bytes[asset] = loaded.wire_bytes
            waiting += imported_assets(asset, loaded.body.decode("utf-8", "replace"))
        self.page_assets.setdefault(step, loads)

    async def follow(self, step: str, answer: Page, *, expect: tuple[int, ...] = (200,)) -> Page:
        """The page a redirect leads to."""
        if answer.location is None:
            raise JourneyError(step, f"{answer.status} without a Location")
        target = urlsplit(urljoin(answer.url, answer.location))
        query = f"?{target.query}" if target.query else ""
        return await self.page(step, "GET", target.path + query, expect=expect)


# --- forms --------------------------------------------------------------------------------------


FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
CONTROL = re.compile(r"<(input|button)\b([^>]*)>", re.I)
ATTRIBUTE = re.compile(r"([\w:-]+)(?:\s*=\s*\"([^\"]*)\")?")


def attributes(text: str) -> dict[str, str]:
    return {name.lower(): html.unescape(value or "") for name, value in ATTRIBUTE.findall(text)}


@dataclass(frozen=True)
class Form:
    action: str
    method: str
    fields: dict[str, str]  # hidden inputs, pre-filled values, checked choices
    choices: dict[str, list[str]]  # every control's name -> the values offered (radios)


def forms(page: Page) -> list[Form]:
    found = []
    for head, body in FORM.findall(page.text):
        form = attributes(head)
        fields: dict[str, str] = {}
        choices: dict[str, list[str]] = defaultdict(list)
        for kind, text in CONTROL.findall(body):
            control = attributes(text)
            name = control.get("name")
            if not name:
                continue
            choices[name].append(control.get("value", ""))
            input_type = control.get("type", "submit" if kind.lower() == "button" else "text")
            if input_type in {"hidden", "text", "tel", "email"} and control.get("value"):
                fields[name] = control["value"]
            elif input_type in {"radio", "checkbox"} and "checked" in control:
                fields[name] = control.get("value", "on")
        action = urljoin(page.url, form.get("action") or page.url)
        found.append(Form(action, form.get("method", "get").upper(), fields, dict(choices)))
    return found


def form_with(step: str, page: Page, name: str) -> Form:
    """The page's form with a control named ``name``."""
    for form in forms(page):
        if name in form.choices:
            return form
    raise JourneyError(step, f"no form with a field {name!r} on {urlsplit(page.url).path}")


def link_to(step: str, page: Page, ending: str) -> str:
    """The first link of the page whose path ends with ``ending``."""
    for href in HREF.findall(page.text):
        url = html.unescape(href)
        if urlsplit(url).path.endswith(ending):
            return urljoin(page.url, url)
    raise JourneyError(step, f"no link to …{ending} on {urlsplit(page.url).path}")


async def submit(
    visitor: Visitor, step: str, form: Form, values: dict[str, str], *, expect: tuple[int, ...]
) -> Page:
    """The form sent as a browser sends it: its fields, with ``values`` typed or chosen."""
    data = {**form.fields, **values}
    if form.method == "GET":
        target = urlsplit(form.action)._replace(query=urlencode(data)).geturl()
        return await visitor.page(step, "GET", target, expect=expect)
    return await visitor.page(step, "POST", form.action, data=data, expect=expect)


# --- the journeys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Supplies:
    cards: list[str]
    token: str  # the sandbox PSP's card token (the PSP's tokeniser, not topup's, makes it)


JOURNEY_STEPS = (
    "1 home",
    "2 card look-up (POST)",
    "3 card page (plans)",
    "4 payment methods",
    "5 payment form",
    "6 pay (POST)",
    "7 status page",
)
PAY_METHOD = "credit_card"


async def journey(visitor: Visitor, supplies: Supplies, chooser: random.Random) -> None:
    """Journey 1: home -> card look-up -> the card's page with its plans -> the plan's payment
    methods -> the payment form -> pay by card token -> the status page."""
    home, look_up, card, methods, payment, pay, status = JOURNEY_STEPS
    page = await visitor.page(home, "GET", "/")
    form = form_with(look_up, page, "card_number")
    await visitor.think(chooser)
    answer = await submit(
        visitor, look_up, form, {"card_number": chooser.choice(supplies.cards)}, expect=(303,)
    )
    page = await visitor.follow(card, answer)
    plan = link_to(card, page, f"/{PLAN_CODE}")
    await visitor.think(chooser)
    page = await visitor.page(methods, "GET", plan)
    form = form_with(methods, page, "method")
    if PAY_METHOD not in form.choices["method"]:
        raise JourneyError(methods, f"{PAY_METHOD} is not offered: {form.choices['method']}")
    await visitor.think(chooser)
    page = await submit(visitor, payment, form, {"method": PAY_METHOD}, expect=(200,))
    form = form_with(payment, page, "payment_token")
    await visitor.think(chooser)
    answer = await submit(visitor, pay, form, {"payment_token": supplies.token}, expect=(303,))
    if "/verify" in (answer.location or ""):
        raise JourneyError(pay, f"the sandbox asked for a payment password: {answer.location}")
    page = await visitor.follow(status, answer, expect=(200, 404))
    if page.status == 404 and visitor.recorder.measuring:
        visitor.recorder.missing[status] += 1  # a page not built yet: the journey ends without it


async def api_renewal(visitor: Visitor, supplies: Supplies, chooser: random.Random) -> None:
    """POST /api/v1/renewals as an API client: a card token and a new Idempotency-Key."""
    await visitor.send(
        "POST /api/v1/renewals",
        "POST",
        "/api/v1/renewals",
        expect=(201,),
        json_body={
            "card_number": chooser.choice(supplies.cards),
            "plan": PLAN_CODE,
            "payment": {"method": "credit_card", "token": supplies.token},
        },
        headers={"Idempotency-Key": f"bench-{chooser.getrandbits(96):024x}"},
    )


Action = Callable[[Visitor, Supplies, random.Random], Awaitable[None]]


# --- driving ------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    subscribers: int
    seconds: float
    recorder: Recorder
    cores: dict[str, float | None]
    steps: tuple[str, ...] = ()  # a journey's pages; none: one request is one unit
    transactions: int = 0  # committed and rolled back in the bench database (pg_stat_database)

    @property
    def units(self) -> float:
        """Journeys (or API renewals) in the window: each step's requests, averaged over the
        steps. In a steady state, those completed; less biased when the window holds only a
        few journeys of each subscriber."""
        if not self.steps:
            return float(self.recorder.completed)
        counts = [len(self.recorder.latencies_s.get(step, [])) for step in self.steps]
        return sum(counts) / len(counts)

    def per_unit_ms(self, part: str) -> float | None:
        cores = self.cores[part]
        if cores is None or not self.units:
            return None
        return cores * self.seconds / self.units * 1000

    @property
    def rate_per_s(self) -> float:
        return self.units / self.seconds

    @property
    def transactions_per_unit(self) -> float | None:
        return self.transactions / self.units if self.units else None


def driver_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def subscriber(
    visitor: Visitor,
    action: Action,
    supplies: Supplies,
    chooser: random.Random,
    *,
    returning: bool,
    spread_s: float,
) -> None:
    recorder = visitor.recorder
    await asyncio.sleep(chooser.uniform(0, spread_s))  # not in step: a steady state sooner
    first = True
    while not recorder.stopping:
        if not returning:
            await visitor.new_visit()
        try:
            await action(visitor, supplies, chooser)
        except JourneyError as failure:
            recorder.failed(failure)
            await asyncio.sleep(FAILURE_PAUSE_S)  # a failing server is not hammered in a loop
            continue
        finally:
            if first:
                first = False
                recorder.warm += 1
                if recorder.warm >= recorder.subscribers:
                    recorder.all_warm.set()
        if recorder.measuring:  # those that end in the window: the rate in a steady state
            recorder.completed += 1


async def warm_up(recorder: Recorder, warmup_s: float) -> None:
    """At least ``warmup_s``, and until every subscriber has been through one loop (a steady
    state: they no longer walk the journey in step), at most WARMUP_S_MAX."""
    await asyncio.sleep(warmup_s)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(recorder.all_warm.wait(), timeout=WARMUP_S_MAX - warmup_s)
    if not recorder.all_warm.is_set():
        engine_bench.progress(
            f"only {recorder.warm} of {recorder.subscribers} subscribers through one loop "
            f"after {WARMUP_S_MAX:g} s of warm-up"
        )


@dataclass(frozen=True)
class Part:
    """What the subscribers loop: the API renewal or the journey."""

    name: str
    action: Action
    returning: bool  # each keeps its connection, cookies and cache from one loop to the next
    steps: tuple[str, ...] = ()  # a journey's pages (see Phase.units)


@dataclass(frozen=True)
class Load:
    base: str
    server_pids: list[int]
    supplies: Supplies
    options: argparse.Namespace
    database_url: str
    on_window: Callable[[bool], None] | None = None  # told when the window opens and closes


async def drive(
    part: Part, load: Load, *, warmup_s: float, seconds: float, spread_s: float | None = None
) -> Phase:
    """``--subscribers`` loops of the part's action: a warm-up, then ``seconds`` measured.
    ``spread_s`` (default ``warmup_s``): the subscribers start at random within it."""
    options = load.options
    recorder = Recorder(subscribers=options.subscribers)
    visitors = [
        Visitor(load.base, recorder, options.language, options.think_seconds)
        for _ in range(options.subscribers)
    ]
    seeds = random.Random(f"{options.seed}-{part.name}-{time.time_ns()}")
    tasks = [
        asyncio.create_task(
            subscriber(
                visitor,
                part.action,
                load.supplies,
                random.Random(seeds.getrandbits(64)),
                returning=part.returning,
                spread_s=warmup_s if spread_s is None else spread_s,
            )
        )
        for visitor in visitors
    ]
    database = str(psycopg.conninfo.conninfo_to_dict(load.database_url)["dbname"])
    monitor = await psycopg.AsyncConnection.connect(load.database_url, autocommit=True)
    try:
        engine_bench.progress(f"{part.name}: warm-up {warmup_s:g} s, measuring {seconds:g} s")
        await warm_up(recorder, warmup_s)
        transactions_before, _ = await engine_bench.database_statistics(monitor, database)
        cpu_before, driver_before = http_renewals.Cpu.now(load.server_pids), driver_cpu_s()
        started = time.perf_counter()
        recorder.measuring = True
        if load.on_window is not None:
            load.on_window(True)
        await asyncio.sleep(seconds)
        recorder.measuring = False
        if load.on_window is not None:
            load.on_window(False)
        measured_s = time.perf_counter() - started
        cpu_after, driver_after = http_renewals.Cpu.now(load.server_pids), driver_cpu_s()
        transactions_after, _ = await engine_bench.database_statistics(monitor, database)
    finally:
        await monitor.close()
        recorder.stopping = True
        _, late = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(visitor.close() for visitor in visitors))
    machine = (
        None
        if cpu_before.machine_s is None or cpu_after.machine_s is None
        else (cpu_after.machine_s - cpu_before.machine_s) / measured_s
    )
    cores: dict[str, float | None] = {
        "server": (cpu_after.server_s - cpu_before.server_s) / measured_s,
        "postgres": (cpu_after.postgres_s - cpu_before.postgres_s) / measured_s,
        "driver": (driver_after - driver_before) / measured_s,
        "machine": machine,
    }
    transactions = transactions_after - transactions_before - 1  # less the monitor's own
    return Phase(
        part.name, options.subscribers, measured_s, recorder, cores, part.steps, transactions
    )


def merged(phases: list[Phase]) -> Phase:
    """The rounds of one part as one: requests pooled, cores averaged over the time measured."""
    seconds = sum(phase.seconds for phase in phases)
    recorder = Recorder()
    for phase in phases:
        for step in phase.recorder.order:
            recorder.request(step, 0.0, 0, started_measuring=False)
            recorder.latencies_s[step] += phase.recorder.latencies_s[step]
            recorder.wire_bytes[step] += phase.recorder.wire_bytes[step]
        recorder.completed += phase.recorder.completed
        recorder.failures.update(phase.recorder.failures)
        recorder.missing.update(phase.recorder.missing)
        for step, detail in phase.recorder.first_failures.items():
            recorder.first_failures.setdefault(step, detail)
    cores: dict[str, float | None] = {}
    for part in phases[0].cores:
        values = [phase.cores[part] for phase in phases]
        cores[part] = (
            None
            if any(value is None for value in values)
            else sum(
                (value or 0.0) * phase.seconds for value, phase in zip(values, phases, strict=True)
            )
            / seconds
        )
    first = phases[0]
    transactions = sum(phase.transactions for phase in phases)
    return Phase(first.name, first.subscribers, seconds, recorder, cores, first.steps, transactions)


@dataclass(frozen=True)
class PageWeight:
    step: str
    html_bytes: int
    assets_bytes: int  # all its CSS and JS, as for a visitor who has none cached
    assets: int

    @property
    def total_bytes(self) -> int:
        return self.html_bytes + self.assets_bytes


async def weigh_pages(
    base: str, supplies: Supplies, options: argparse.Namespace
) -> list[PageWeight]:
    """One journey as a new visitor: each page's HTML and all the CSS/JS it loads."""
    recorder = Recorder(measuring=True)
    visitor = Visitor(base, recorder, options.language)
    try:
        await journey(visitor, supplies, random.Random(options.seed))
    except JourneyError as failure:
        engine_bench.progress(f"weighing the pages: {failure}")
    finally:
        await visitor.close()
    weights = []
    for step in recorder.order:
        if not step[0].isdigit():
            continue
        assets = visitor.page_assets.get(step, [])
        weights.append(
            PageWeight(
                step=step,
                html_bytes=recorder.wire_bytes[step][-1],
                assets_bytes=sum(visitor.asset_bytes.get(asset, 0) for asset in assets),
                assets=len(assets),
            )
        )
    return weights


# --- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    base: str
    pids: list[int]


@contextlib.contextmanager
def serving(
    database_url: str, key: str, workers: int, *, profile: Path | None = None
) -> Iterator[Server]:
    """``topup serve --workers N`` on the bench database until the block ends; with
    ``profile``, one server process under cProfile writing there when it stops."""
    port = http_renewals.free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "TOPUP_DATABASE_URL": database_url,
        "TOPUP_SECRET_KEY": key,
        "TOPUP_GATEWAY_LATENCY_S": "0",
        "TOPUP_SANDBOX_JOURNAL": "",
        "TOPUP_PUBLIC_URL": base,
        **LIFTED_LIMITS,
    }
    arguments = ["serve", "--port", str(port), "--workers", str(workers)]
    if profile is None:
        command = [str(Path(sys.executable).with_name("topup")), *arguments]
    else:
        script = f"PROFILE = {str(profile)!r}\n{PROFILED_SERVER}"
        command = [sys.executable, "-c", script, *arguments]
    engine_bench.progress(f"topup serve --workers {workers} on port {port}")
    server = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        http_renewals.wait_for_health(base)
        yield Server(base, http_renewals.process_tree(server.pid))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    options: argparse.Namespace
    weights: list[PageWeight]
    journey: Phase
    api: Phase | None
    profile: str | None = None


API_PART = Part("API renewals", api_renewal, returning=True)


async def measure(
    server: Server, database_url: str, supplies: Supplies, options: argparse.Namespace
) -> Report:
    """The pages weighed, then ``--rounds`` rounds of the API part and the journey, taking
    turns so that what else the shared machine does weighs on both alike."""
    weights = await weigh_pages(server.base, supplies, options)
    load = Load(server.base, server.pids, supplies, options, database_url)
    journey_part = Part("journey 1", journey, options.returning, JOURNEY_STEPS)
    parts = [journey_part] if options.skip_api else [API_PART, journey_part]
    seconds = options.seconds / options.rounds
    phases: dict[str, list[Phase]] = defaultdict(list)
    for round_number in range(options.rounds):
        warmup_s = options.warmup_seconds if round_number == 0 else ROUND_WARMUP_S
        for part in parts:
            http_renewals.empty_scenario_tables(database_url)
            # Started over one loop's time (the last round's), they are out of step at once.
            done = phases[part.name]
            loop_s = done[-1].subscribers / done[-1].rate_per_s if done and done[-1].units else 0
            spread_s = max(warmup_s, min(loop_s, SPREAD_S_MAX))
            phase = await drive(part, load, warmup_s=warmup_s, seconds=seconds, spread_s=spread_s)
            done.append(phase)
    api = merged(phases[API_PART.name]) if phases[API_PART.name] else None
    return Report(options, weights, merged(phases[journey_part.name]), api)


def prepare(options: argparse.Namespace) -> tuple[str, str, list[str]]:
    """The database: created, migrated, demo plans and the bench cards loaded."""
    name = engine_bench.create_database(options.server_url, "topup_portal_bench")
    database_url = engine_bench.plain_url(options.server_url, name)
    key = engine_bench.fernet_key()
    engine_bench.progress(f"migrating {name} and loading {options.cards} cards")
    migrate(database_url)
    msisdns = engine_bench.bench_msisdns(options.cards)

    async def load() -> None:
        application = build(Settings(database_url=database_url, secret_key=key, sandbox_journal=""))
        try:
            await engine_bench.load_cards(application, msisdns)
        finally:
            await application.close()

    asyncio.run(load())
    return name, key, msisdns


def profile_journey(
    options: argparse.Namespace, database_url: str, key: str, supplies: Supplies, profile: Path
) -> str:
    """The journey against one server process profiled while it is measured; the top of the
    profile: by own time, then by time under each of topup's functions."""
    http_renewals.empty_scenario_tables(database_url)
    with serving(database_url, key, 1, profile=profile) as server:

        def on_window(opens: bool) -> None:
            os.kill(server.pids[0], signal.SIGUSR1 if opens else signal.SIGUSR2)

        load = Load(server.base, server.pids, supplies, options, database_url, on_window)
        part = Part("profiled journey 1", journey, options.returning, JOURNEY_STEPS)
        phase = asyncio.run(
            drive(part, load, warmup_s=options.warmup_seconds, seconds=options.seconds)
        )
        time.sleep(PROFILE_WRITE_S)
    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out)
    print(f"{phase.units:.0f} journeys in {phase.seconds:.1f} s; own time by area:", file=out)
    areas = profile_areas(stats)
    total_s = sum(areas.values()) or 1.0
    for area, seconds in sorted(areas.items(), key=lambda item: -item[1]):
        print(f"  {area:<34} {seconds:7.3f} s  {seconds / total_s:6.1%}", file=out)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    stats.sort_stats("cumulative").print_stats("topup", PROFILE_LINES)
    return out.getvalue()


# Where a function's own time goes, by the first rule its file or name matches.
PROFILE_AREAS = (
    (("/templates/", "jinja2", "markupsafe"), "templates (Jinja2)"),
    (("sqlalchemy", "greenlet"), "SQLAlchemy"),
    (("asyncpg",), "asyncpg"),
    (("/topup/adapters/",), "topup adapters"),
    (("/topup/services/", "/topup/domain/"), "topup services and domain"),
    (("/topup/i18n/", "babel"), "i18n (Babel)"),
    (("/topup/entrypoints/",), "topup entrypoints (web, API, http)"),
    (("starlette", "fastapi", "multipart"), "Starlette, FastAPI"),
    (("pydantic",), "pydantic"),
    (("uvicorn", "httptools"), "uvicorn"),
    (("anyio", "threading", "_thread", "concurrent/futures", "queue"), "threads (anyio)"),
    (("zlib", "gzip"), "gzip"),
    (("asyncio", "uvloop", "selectors", "socket"), "event loop, sockets"),
)


def profile_areas(stats: pstats.Stats) -> dict[str, float]:
    areas: dict[str, float] = defaultdict(float)
    for (file, _line, name), values in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{file} {name}"
        area = next(
            (label for needles, label in PROFILE_AREAS if any(n in where for n in needles)),
            "other (standard library, builtins)",
        )
        areas[area] += values[2]  # own time
    return dict(areas)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    name, key, msisdns = prepare(options)
    database_url = engine_bench.plain_url(options.server_url, name)
    try:
        http_renewals.empty_scenario_tables(database_url)
        with serving(database_url, key, options.workers) as server:
            supplies = Supplies(msisdns, http_renewals.card_token(server.base))
            report = asyncio.run(measure(server, database_url, supplies, options))
        if options.profile is not None:
            report.profile = profile_journey(options, database_url, key, supplies, options.profile)
    finally:
        engine_bench.drop_database(options.server_url, name)
    if options.as_json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_report(report)


# --- printing -----------------------------------------------------------------------------------


def milliseconds(values: list[float], fraction: float) -> str:
    found = engine_bench.percentile(values, fraction)
    return "-" if found is None else f"{found * 1000:.1f}"


def kilobytes(value: int) -> str:
    return f"{value / 1024:.1f}"


def number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def step_rows(phase: Phase, weights: dict[str, PageWeight]) -> list[tuple[str, ...]]:
    recorder = phase.recorder
    rows: list[tuple[str, ...]] = []
    for step in recorder.order:
        latencies = recorder.latencies_s[step]
        weight = weights.get(step)
        rows.append(
            (
                step,
                str(len(latencies)),
                f"{len(latencies) / phase.seconds:.1f}",
                milliseconds(latencies, 0.5),
                milliseconds(latencies, 0.99),
                "-" if weight is None else kilobytes(weight.html_bytes),
                "-" if weight is None else f"{kilobytes(weight.assets_bytes)} ({weight.assets})",
                "-" if weight is None else kilobytes(weight.total_bytes),
                str(recorder.failures.get(step, 0)),
            )
        )
    return rows


def print_rows(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    engine_bench.print_rows(headers, rows)


def print_phase_cpu(phase: Phase, unit: str) -> None:
    cores = phase.cores
    machine = number(cores["machine"])
    print(
        f"  CPU per {unit}: server {number(phase.per_unit_ms('server'))} ms, "
        f"postgres {number(phase.per_unit_ms('postgres'))} ms; "
        f"{number(phase.transactions_per_unit, 1)} database transactions "
        f"(cores busy: server {number(cores['server'])}, postgres {number(cores['postgres'])}, "
        f"driver {number(cores['driver'])}, machine {machine} of {os.cpu_count()})"
    )
    driver = cores["driver"] or 0.0
    if driver >= DRIVER_BUSY_CORES_WARNING:
        print(
            f"  NOTE: the driver used {driver:.2f} of a core: on this machine it competes with "
            "the server, and the rate above may be the driver's limit, not the server's"
        )
    for step, detail in phase.recorder.first_failures.items():
        print(f"  first failure of {step}: {detail}")
    for step, count in phase.recorder.missing.items():
        print(
            f"  NOTE: {step} answered 404 {count} times (not built yet?): its figures are "
            "those of the 404 page"
        )


def print_report(report: Report) -> None:
    options, phase, api = report.options, report.journey, report.api
    weights = {weight.step: weight for weight in report.weights}
    visitor = (
        "returning visitors (cookies, CSS/JS cached)"
        if options.returning
        else ("each journey a new visitor (no cookies, nothing cached)")
    )
    print(
        f"topup serve --workers {options.workers} on PostgreSQL, {options.subscribers} "
        f"subscribers, {options.seconds:g} s measured per part in {options.rounds} round(s) "
        f"taking turns (warm-up {options.warmup_seconds:g} s, then {ROUND_WARMUP_S:g} s), "
        f"{os.cpu_count()} cores"
    )
    if options.think_seconds:
        print(f"subscribers read each page {options.think_seconds:g} s on average before acting")
    print()
    print(
        f"journey 1, {visitor}: {phase.rate_per_s:.1f} journeys/s "
        f"({phase.units:.0f} by each step's requests, {phase.recorder.completed} completed)"
    )
    print_rows(
        (
            "step",
            "requests",
            "/s",
            "p50 ms",
            "p99 ms",
            "HTML KB",
            "CSS/JS KB (files)",
            "page KB",
            "failed",
        ),
        step_rows(phase, weights),
    )
    print_phase_cpu(phase, "journey")
    if api is not None:
        print()
        latencies = api.recorder.latencies_s["POST /api/v1/renewals"]
        print(
            f"API-only renewal (POST /api/v1/renewals, card token, Idempotency-Key), "
            f"{api.subscribers} clients: {api.rate_per_s:.1f} renewals/s, "
            f"p50 {milliseconds(latencies, 0.5)} ms, p99 {milliseconds(latencies, 0.99)} ms, "
            f"failed {sum(api.recorder.failures.values())}"
        )
        print_phase_cpu(api, "renewal")
    print()
    print_targets(report)
    if report.profile:
        print()
        print(
            f"where the server's CPU goes in a journey (cProfile, --workers 1, {options.profile}):"
        )
        print(report.profile)


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT MET")


def print_targets(report: Report) -> None:
    phase, api = report.journey, report.api
    journey_ms = phase.per_unit_ms("server")
    api_ms = None if api is None else api.per_unit_ms("server")
    ratio = cpu_ratio(report)
    print("targets:")
    print(
        f"  server CPU journey / API renewal: {number(ratio)}x "
        f"({number(journey_ms)} / {number(api_ms)} ms; target <= {CPU_RATIO_TARGET:g}x): "
        f"{verdict(None if ratio is None else ratio <= CPU_RATIO_TARGET)}"
    )
    pages = [s for s in phase.recorder.order if s[0].isdigit()]
    p99 = {
        step: engine_bench.percentile(phase.recorder.latencies_s[step], 0.99) or 0.0
        for step in pages
    }
    worst = max(p99, key=p99.__getitem__, default=None)
    at = "" if phase.subscribers == SUBSCRIBERS_TARGET else f" (measured at {phase.subscribers})"
    if worst is not None:
        print(
            f"  p99 of every page at {SUBSCRIBERS_TARGET} subscribers{at}: worst {worst} "
            f"{p99[worst] * 1000:.1f} ms (target <= {PAGE_P99_TARGET_MS:g} ms): "
            f"{verdict(p99[worst] * 1000 <= PAGE_P99_TARGET_MS)}"
        )
    heaviest = max(report.weights, key=lambda w: w.total_bytes, default=None)
    if heaviest is not None:
        print(
            f"  each page <= {PAGE_BYTES_TARGET // 1024} KB (HTML + its CSS/JS, gzip, none "
            f"cached): heaviest {heaviest.step} {kilobytes(heaviest.total_bytes)} KB: "
            f"{verdict(heaviest.total_bytes <= PAGE_BYTES_TARGET)}"
        )


def phase_json(phase: Phase) -> dict[str, Any]:
    recorder = phase.recorder
    return {
        "subscribers": phase.subscribers,
        "seconds": phase.seconds,
        "completed": recorder.completed,
        "units": phase.units,
        "per_s": phase.rate_per_s,
        "cores": phase.cores,
        "server_cpu_ms_per_unit": phase.per_unit_ms("server"),
        "postgres_cpu_ms_per_unit": phase.per_unit_ms("postgres"),
        "transactions_per_unit": phase.transactions_per_unit,
        "steps": {
            step: {
                "requests": len(recorder.latencies_s[step]),
                "p50_ms": (engine_bench.percentile(recorder.latencies_s[step], 0.5) or 0) * 1000,
                "p99_ms": (engine_bench.percentile(recorder.latencies_s[step], 0.99) or 0) * 1000,
                "failed": recorder.failures.get(step, 0),
            }
            for step in recorder.order
        },
        "first_failures": recorder.first_failures,
        "not_found": dict(recorder.missing),
    }


def cpu_ratio(report: Report) -> float | None:
    """Server CPU per journey over server CPU per API renewal."""
    journey_ms = report.journey.per_unit_ms("server")
    api_ms = None if report.api is None else report.api.per_unit_ms("server")
    return None if journey_ms is None or not api_ms else journey_ms / api_ms


def report_json(report: Report) -> dict[str, Any]:
    return {
        "workers": report.options.workers,
        "subscribers": report.options.subscribers,
        "rounds": report.options.rounds,
        "returning": report.options.returning,
        "server_cpu_journey_over_api_renewal": cpu_ratio(report),
        "pages": [
            {
                "step": w.step,
                "html_bytes": w.html_bytes,
                "assets_bytes": w.assets_bytes,
                "assets": w.assets,
            }
            for w in report.weights
        ],
        "journey": phase_json(report.journey),
        "api_renewal": None if report.api is None else phase_json(report.api),
    }


if __name__ == "__main__":
    main()
