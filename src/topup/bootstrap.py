"""The one place that turns settings into adapters. Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
from topup.adapters.gateways.sandbox import SandboxGateway
from topup.adapters.iin_table import shipped_iin_table
from topup.adapters.methods import load_methods
from topup.adapters.network.sandbox import SandboxNetwork
from topup.adapters.profiles import load_profile
from topup.adapters.secrets import TokenVault
from topup.domain.errors import InputError
from topup.ports import Clock
from topup.services.context import Services
from topup.settings import Limits, Settings

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parents[2] / "migrations"


@dataclass
class Application:
    services: Services
    engine: AsyncEngine
    settings: Settings

    async def close(self) -> None:
        await self.engine.dispose()


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
    if settings.gateway != "sandbox":
        raise InputError(
            f"unknown gateway {settings.gateway!r}; available: sandbox", code="gateway_unknown"
        )
    gateway = SandboxGateway(
        secret=hashlib.sha256(b"sandbox-gateway:" + key.encode()).digest(),
        latency_s=settings.gateway_latency_s,
        fault_rate=settings.gateway_fault_rate,
        seed=settings.sandbox_seed,
        settlement_delay_s=settings.gateway_settlement_delay_s,
        clock=clock.now,
    )
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
    profile = load_profile(settings.profile)
    methods_file = Path(settings.methods_file) if settings.methods_file else None
    services = Services(
        unit_of_work=lambda: SqlUnitOfWork(engine, writer_lock=writer_lock),
        gateway=gateway,
        network=network,
        clock=clock,
        profile=profile,
        methods=load_methods(profile, methods_file),
        card_facts=shipped_iin_table().facts_for,
        limits=limits,
        tokens=TokenVault(key),
        new_id=(lambda: str(uuid.UUID(int=randomness.getrandbits(128), version=4)))
        if seed is not None
        else (lambda: str(uuid.uuid4())),
        random=randomness,
        database_unavailable=database_unavailable,
    )
    if on_event is not None:
        services.on_event = on_event
    return Application(services=services, engine=engine, settings=settings)


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision (Alembic; same revisions on SQLite and PostgreSQL)."""
    _prepare_sqlite_directory(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")
