"""The one place that turns settings into adapters. Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from topup.adapters.clock import SystemClock
from topup.adapters.db.engine import (
    POSTGRES_POOL_SIZE,
    create_engine,
    database_unavailable,
    is_sqlite,
)
from topup.adapters.db.unit_of_work import SqlUnitOfWork
from topup.adapters.gateways.sandbox_settlement import JournalingGateway, SettlementJournal
from topup.adapters.gateways.sandbox_wallet import SandboxWallet
from topup.adapters.iin_table import shipped_iin_table
from topup.adapters.methods import load_methods
from topup.adapters.network.sandbox import SandboxNetwork
from topup.adapters.notify.mail_outbox import MemoryMailer, OutboxMailer
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.adapters.notify.smtp import SmtpMailer, parse_smtp_url
from topup.adapters.profiles import load_profile
from topup.adapters.rate_limits import MemoryRateLimiter
from topup.adapters.redis_rate_limits import RedisRateLimiter
from topup.adapters.secrets import TokenVault
from topup.domain.errors import InputError
from topup.ports import Clock, Mailer, PaymentGateway, RateLimiter
from topup.services.context import Services
from topup.services.wallets import handle_webhook
from topup.settings import Limits, Settings

GATEWAY_ENTRY_POINTS = "topup.gateways"
JSON = "application/json"
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Application:
    services: Services
    engine: AsyncEngine
    settings: Settings

    async def close(self) -> None:
        await self.engine.dispose()
        if isinstance(self.services.rate_limiter, RedisRateLimiter):
            await self.services.rate_limiter.aclose()


def secret_key(settings: Settings) -> str:
    """TOPUP_SECRET_KEY, or for the demo a key generated once into var/secret.key (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(TokenVault.new_key())
    return path.read_text().strip()


def _prepare_sqlite_directory(url: str) -> None:
    if is_sqlite(url) and ":memory:" not in url:
        database = url.split(":///", 1)[-1]
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def build(
    settings: Settings | None = None,
    *,
    limits: Limits | None = None,
    clock: Clock | None = None,
    seed: int | None = None,
    on_event: Callable[[str, dict[str, str]], None] | None = None,
    pool_size: int | None = None,
) -> Application:
    settings = settings or Settings()
    limits = limits or Limits()
    clock = clock or SystemClock()
    _prepare_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url, pool_size=pool_size or POSTGRES_POOL_SIZE)
    key = secret_key(settings)
    profile = load_profile(settings.profile)
    methods_file = Path(settings.methods_file) if settings.methods_file else None
    methods = load_methods(profile, methods_file)
    wanted = {settings.gateway} | {method.gateway for method in methods.methods if method.gateway}
    gateways = {name: _gateway(name, settings, key, clock) for name in sorted(wanted)}
    network = SandboxNetwork(
        activation_delay_s=settings.network_delay_s,
        transient_failure_rate=settings.network_transient_failure_rate,
        permanent_failure_rate=settings.network_permanent_failure_rate,
        seed=settings.sandbox_seed,
        latency_s=settings.network_latency_s,
        clock=clock.now,
    )
    writer_lock = asyncio.Lock() if is_sqlite(settings.database_url) else None
    randomness = random.Random(seed)
    services = Services(
        unit_of_work=lambda: SqlUnitOfWork(engine, writer_lock=writer_lock),
        gateway=gateways[settings.gateway],
        gateways=gateways,
        network=network,
        clock=clock,
        profile=profile,
        methods=methods,
        card_facts=shipped_iin_table().facts_for,
        rate_limiter=_rate_limiter(settings, clock),
        limits=limits,
        tokens=TokenVault(key),
        new_id=(lambda: str(uuid.UUID(int=randomness.getrandbits(128), version=4)))
        if seed is not None
        else (lambda: str(uuid.uuid4())),
        random=randomness,
        database_unavailable=database_unavailable,
        mailer=_mailer(settings, clock),
        public_url=settings.public_url.rstrip("/"),
        sms=SandboxSms(
            latency_s=settings.sms_latency_s,
            failure_rate=settings.sms_failure_rate,
            seed=settings.sandbox_seed,
            outbox=settings.sandbox_sms_outbox or None,
            clock=clock.now,
        ),
    )
    if on_event is not None:
        services.on_event = on_event
    _deliver_sandbox_webhooks(services, settings.sandbox_webhook_url)
    return Application(services=services, engine=engine, settings=settings)


def _rate_limiter(settings: Settings, clock: Clock) -> RateLimiter:
    """Shared by every server process through Redis when TOPUP_REDIS_URL is set (falling back
    to this process's memory while Redis is down); else counted in this process's memory."""
    if settings.redis_url:
        return RedisRateLimiter.from_url(settings.redis_url, clock)
    return MemoryRateLimiter(clock)


def _mailer(settings: Settings, clock: Clock) -> Mailer:
    """SMTP when TOPUP_SMTP_URL is set; else .eml files in TOPUP_MAIL_OUTBOX; else memory."""
    if settings.smtp_url:
        return SmtpMailer(
            parse_smtp_url(settings.smtp_url),
            sender=settings.mail_from,
            timeout_s=settings.smtp_timeout_s,
            clock=clock.now,
        )
    if settings.mail_outbox:
        return OutboxMailer(Path(settings.mail_outbox), sender=settings.mail_from, clock=clock.now)
    return MemoryMailer()


WEBHOOK_DELIVERY_TIMEOUT_S = 10.0


def _deliver_sandbox_webhooks(services: Services, base_url: str) -> None:
    """The sandbox wallet posts its webhooks to ``base_url``'s webhook endpoint over HTTP, as a
    provider would; without one, straight to our handler in this process."""
    for name, gateway in services.gateways.items():
        if not isinstance(gateway, SandboxWallet):
            continue
        if base_url:
            address = f"{base_url.rstrip('/')}/api/v1/webhooks/{name}"

            async def post(body: bytes, headers: Mapping[str, str], address: str = address) -> str:
                async with httpx.AsyncClient(timeout=WEBHOOK_DELIVERY_TIMEOUT_S) as client:
                    answer = await client.post(
                        address, content=body, headers={**headers, "content-type": JSON}
                    )
                answer.raise_for_status()
                return str(answer.json().get("outcome", ""))

            gateway.deliver = post
            continue

        async def deliver(body: bytes, headers: Mapping[str, str], gateway_name: str = name) -> str:
            return await handle_webhook(services, gateway_name, body, headers)

        gateway.deliver = deliver


def _gateway(name: str, settings: Settings, key: str, clock: Clock) -> PaymentGateway:
    """The gateway adapter registered under ``name`` (entry point group ``topup.gateways``)."""
    found = {entry.name: entry for entry in entry_points(group=GATEWAY_ENTRY_POINTS)}
    if name not in found:
        raise InputError(
            f"unknown gateway {name!r}; available: {', '.join(sorted(found))}",
            code="gateway_unknown",
            params={"gateway": name},
        )
    factory = found[name].load()
    gateway: PaymentGateway = factory(settings, secret_key=key, clock=clock.now)
    if name == "sandbox" and settings.sandbox_journal:
        journal = SettlementJournal(Path(settings.sandbox_journal))
        gateway = JournalingGateway(gateway, journal, clock=clock.now)
    return gateway


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision (Alembic; same revisions on SQLite and PostgreSQL)."""
    _prepare_sqlite_directory(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")
