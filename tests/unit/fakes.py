"""Services on fakes: the in-memory unit of work (``adapters.memory``) and the sandbox gateway,
wallet, network, SMS and mailer, on a clock that moves only when told. No database.

In the style of cosmicpython's ``tests/unit/test_handlers.py``: each test builds its services,
runs a use case, and looks at what was committed."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topup.adapters.clock import FixedClock
from topup.adapters.memory.tables import Tables
from topup.adapters.memory.unit_of_work import MemoryDatabase
from topup.bootstrap import build_in_memory
from topup.domain.ledger import EntryKind
from topup.entrypoints.worker import work_once
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    GatewayEvent,
    PaymentCardDetails,
    PaymentGateway,
    PaymentToken,
    RefundResult,
)
from topup.services.context import Services
from topup.services.demo import load_demo
from topup.settings import LimitSettings, Settings

START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
TEST_KEY = base64.urlsafe_b64encode(b"topup-test-key-32-bytes-long!!!!").decode()
WORK_ROUNDS_MAX = 20
GOOD_CARD = PaymentCardDetails(
    number="4242424242424242", expiry_month=12, expiry_year=2030, cvc="123"
)


@dataclass
class CountingGateway:
    """The card gateway, with every charge sent counted (to see that none is sent twice)."""

    inner: PaymentGateway
    charges: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        return await self.inner.tokenize(card)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.charges.append(request.payment_id)
        return await self.inner.charge(request)

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        return await self.inner.retrieve(request)

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        return await self.inner.refund(refund_id=refund_id, charge=charge)

    async def confirm(self, request: ChargeRequest, answer: str) -> ChargeResult:
        return await self.inner.confirm(request, answer)

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> GatewayEvent:
        return self.inner.parse_webhook(body, headers, now)

    def tokenize_account(self, provider: str, account: str) -> PaymentToken:
        return self.inner.tokenize_account(provider, account)

    async def payment_token_of(self, token: str) -> PaymentToken:
        return await self.inner.payment_token_of(token)


@dataclass
class OnFakes:
    services: Services
    database: MemoryDatabase
    clock: FixedClock
    gateway: CountingGateway

    @property
    def committed(self) -> Tables:
        """What the services have committed."""
        return self.database.tables

    def entries(self, kind: EntryKind) -> list[str | None]:
        """The renewals of the committed ledger entries of this kind."""
        return [e.renewal_id for _, e, _ in self.committed.ledger_entries if e.kind is kind]

    def jobs(self, kind: str) -> list[str]:
        return [job.renewal_id for job in self.committed.jobs.values() if job.kind == kind]

    async def drain(self) -> None:
        """Run the worker until nothing is due."""
        for _ in range(WORK_ROUNDS_MAX):
            if await work_once(self.services) == 0:
                return
        raise AssertionError("the worker still had work")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret_key": TEST_KEY,
        "gateway_latency_s": 0.0,
        "network_delay_s": 0.0,
        "network_latency_s": 0.0,
        "sandbox_journal": "",
        "sandbox_sms_outbox": "",
        "mail_outbox": "",
        "smtp_url": "",
        "sms_latency_s": 0.0,
        "redis_url": "",
        "sandbox_webhook_url": "",
    }
    values.update(overrides)
    return Settings(**values)


async def on_fakes(*, limits: LimitSettings | None = None, **overrides: Any) -> OnFakes:
    """Services on fakes, with the demo's cards and plans committed."""
    clock = FixedClock(START)
    services, database = build_in_memory(settings(**overrides), limits=limits, clock=clock, seed=1)
    gateway = CountingGateway(services.gateway)
    services.gateway = gateway
    await load_demo(services)
    return OnFakes(services, database, clock, gateway)
