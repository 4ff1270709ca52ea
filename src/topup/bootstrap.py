"""The one place that turns settings into adapters. Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from topup.domain.errors import InputError
from topup.settings import LimitSettings, Settings

if TYPE_CHECKING:  # the adapters are imported where they are built: `topup --help` needs none
    from sqlalchemy.ext.asyncio import AsyncEngine

    from topup.adapters.memory.unit_of_work import MemoryDatabase
    from topup.adapters.network.sandbox import SandboxNetwork
    from topup.domain.profile import OperatorProfile
    from topup.limits import Limits
    from topup.ports import (
        Clock,
        Mailer,
        PaymentGateway,
        PushOutcome,
        PushSender,
        PushSubscription,
        RateLimiter,
        ReceiptDrawer,
        SmsSender,
        UnitOfWork,
    )
    from topup.services.context import Services

GATEWAY_ENTRY_POINTS = "topup.gateways"
JSON = "application/json"
MIGRATIONS_DIRECTORY = Path(__file__).resolve().parents[2] / "migrations"


SQLITE_FILE_MODE = 0o600  # the database holds tokens and e-mail addresses: owner only


@dataclass
class Application:
    services: Services
    engine: AsyncEngine
    settings: Settings
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        await self.engine.dispose()
        for close in self.closers:
            await close()


def load_settings() -> Settings:
    """The settings, from ``TOPUP_*`` variables: every entry
    point asks here rather than reading them itself. A value that is not valid is
    ``setting_invalid``, naming its variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise setting_invalid(error) from None


def load_limits() -> LimitSettings:
    """The limits (``TOPUP_*`` variables too); a value that is not valid is ``setting_invalid``."""
    try:
        return LimitSettings()
    except ValidationError as error:
        raise setting_invalid(error) from None


def setting_invalid(error: ValidationError) -> InputError:
    """The first problem pydantic found, as one error naming the variable (TOPUP_...)."""
    problem = error.errors()[0] if error.error_count() else {"loc": (), "msg": str(error)}
    location = problem.get("loc") or ()
    variable = "TOPUP_" + str(location[0]).upper() if location else "TOPUP_*"
    detail = str(problem.get("msg", "")).removeprefix("Value error, ")
    return InputError(
        f"The setting {variable} is not valid: {detail}.",
        code="setting_invalid",
        field=variable,
        params={"variable": variable, "detail": detail},
    )


def operator_profile(settings: Settings | None = None) -> OperatorProfile:
    """The operator profile the settings name (country, currency, time zone, languages...)."""
    from topup.adapters.profiles import load_profile

    return load_profile((settings or load_settings()).profile)


def operator_today(profile: OperatorProfile, now: dt.datetime | None = None) -> dt.date:
    """Today (or ``now``'s day) in the operator's time zone: the day settlements are dated by."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(ZoneInfo(profile.time_zone)).date()


def secret_key(settings: Settings) -> str:
    """TOPUP_SECRET_KEY, or for the demo a key generated once into var/secret.key (mode 0600)."""
    from topup.adapters.private_files import make_private_directory
    from topup.adapters.secrets import TokenVault

    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_key_file)
    if not path.exists():
        make_private_directory(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(TokenVault.new_key())
    return path.read_text().strip()


def usage_secret(settings: Settings, *, create: bool = False) -> str:
    """TOPUP_USAGE_SECRET, or the one in TOPUP_USAGE_SECRET_FILE, generated there (mode 0600)
    by ``topup init`` (``create``): the secret the network's mediation system signs usage
    records with (give it to the network). "" when there is none: signed usage is refused."""
    import secrets

    from topup.adapters.private_files import make_private_directory

    if settings.usage_secret:
        return settings.usage_secret
    path = Path(settings.usage_secret_file)
    if not path.exists():
        if not create:
            return ""
        make_private_directory(path.parent)
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _prepare_sqlite_file(url: str) -> None:
    """SQLite: make the database's directory, and the file itself readable by its owner only
    (SQLite gives its -wal, -shm and -journal files the database file's permissions)."""
    from topup.adapters.db.engine import is_sqlite
    from topup.adapters.private_files import make_private_directory

    if not is_sqlite(url) or ":memory:" in url:
        return
    database = url.split(":///", 1)[-1].split("?", 1)[0]
    if not database:
        return
    path = Path(database)
    make_private_directory(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))


def build(
    settings: Settings | None = None,
    *,
    limits: LimitSettings | None = None,
    clock: Clock | None = None,
    seed: int | None = None,
    on_event: Callable[[str, dict[str, str]], None] | None = None,
    pool_size: int | None = None,
) -> Application:
    from topup.adapters.clock import SystemClock
    from topup.adapters.db.engine import (
        POSTGRES_POOL_SIZE,
        create_engine,
        database_unavailable,
        is_sqlite,
    )
    from topup.adapters.db.unit_of_work import SqlUnitOfWork

    settings = settings or load_settings()
    _prepare_sqlite_file(settings.database_url)
    engine = create_engine(settings.database_url, pool_size=pool_size or POSTGRES_POOL_SIZE)
    writer_lock = asyncio.Lock() if is_sqlite(settings.database_url) else None
    closers: list[Callable[[], Awaitable[None]]] = []
    services = build_services(
        settings,
        unit_of_work=lambda: SqlUnitOfWork(engine, writer_lock=writer_lock),
        limits=(limits or load_limits()).by_concern(),
        clock=clock or SystemClock(),
        seed=seed,
        on_event=on_event,
        closers=closers,
        database_unavailable=database_unavailable,
    )
    return Application(services=services, engine=engine, settings=settings, closers=closers)


def build_in_memory(
    settings: Settings | None = None,
    *,
    limits: LimitSettings | None = None,
    clock: Clock | None = None,
    seed: int | None = None,
) -> tuple[Services, MemoryDatabase]:
    """Services on an in-memory database (``adapters.memory``): no database server or file,
    for unit tests and demos. The sandbox adapters come from ``settings`` as in ``build``."""
    from topup.adapters.clock import SystemClock
    from topup.adapters.memory.unit_of_work import MemoryDatabase

    database = MemoryDatabase()
    services = build_services(
        settings or load_settings(),
        unit_of_work=database.unit_of_work,
        limits=(limits or load_limits()).by_concern(),
        clock=clock or SystemClock(),
        seed=seed,
    )
    return services, database


def build_services(
    settings: Settings,
    *,
    unit_of_work: Callable[[], UnitOfWork],
    limits: Limits,
    clock: Clock,
    seed: int | None = None,
    on_event: Callable[[str, dict[str, str]], None] | None = None,
    closers: list[Callable[[], Awaitable[None]]] | None = None,
    database_unavailable: Callable[[BaseException], bool] | None = None,
) -> Services:
    """The services on this unit of work, with the adapters ``settings`` choose."""
    from topup.adapters.iin_table import shipped_iin_table
    from topup.adapters.methods import load_methods
    from topup.adapters.secrets import TokenVault
    from topup.services.context import Services

    key = secret_key(settings)
    profile = operator_profile(settings)
    methods_file = Path(settings.methods_file) if settings.methods_file else None
    methods = load_methods(profile, methods_file)
    wanted = {settings.gateway} | {method.gateway for method in methods.methods if method.gateway}
    gateways = {name: _gateway(name, settings, key, clock) for name in sorted(wanted)}
    randomness = random.Random(seed)
    services = Services(
        unit_of_work=unit_of_work,
        gateway=gateways[settings.gateway],
        gateways=gateways,
        network=(network := _network(settings, clock)),
        network_data=network,  # the sandbox network also bars a card's data
        clock=clock,
        profile=profile,
        methods=methods,
        card_facts=shipped_iin_table().facts_for,
        rate_limiter=_rate_limiter(settings, clock, [] if closers is None else closers),
        limits=limits,
        tokens=TokenVault(key),
        new_id=(lambda: str(uuid.UUID(int=randomness.getrandbits(128), version=4)))
        if seed is not None
        else (lambda: str(uuid.uuid4())),
        random=randomness,
        mailer=_mailer(settings, clock),
        receipt_drawer=_receipt_drawer(settings),
        public_url=settings.public_url.rstrip("/"),
        sms=_sms(settings, clock),
        push=_push(
            settings, clock, [] if closers is None else closers, limits.reminders.push_timeout_s
        ),
    )
    services.usage_secret = usage_secret(settings).encode()
    if database_unavailable is not None:
        services.database_unavailable = database_unavailable
    if on_event is not None:
        services.on_event = on_event
    _deliver_sandbox_webhooks(services, settings.sandbox_webhook_url)
    return services


def _network(settings: Settings, clock: Clock) -> SandboxNetwork:
    from topup.adapters.network.sandbox import SandboxNetwork

    return SandboxNetwork(
        activation_delay_s=settings.network_delay_s,
        transient_failure_rate=settings.network_transient_failure_rate,
        permanent_failure_rate=settings.network_permanent_failure_rate,
        seed=settings.sandbox_seed,
        latency_s=settings.network_latency_s,
        clock=clock.now,
    )


def _sms(settings: Settings, clock: Clock) -> SmsSender:
    from topup.adapters.notify.sandbox_sms import SandboxSms

    return SandboxSms(
        latency_s=settings.sms_latency_s,
        failure_rate=settings.sms_failure_rate,
        seed=settings.sandbox_seed,
        outbox=settings.sandbox_sms_outbox or None,
        clock=clock.now,
    )


def ensure_push_keys(settings: Settings) -> Path:
    """The VAPID key pair of Web Push (`topup init`): made once into
    TOPUP_VAPID_PRIVATE_KEY_FILE (mode 0600), like the secret key."""
    from topup.adapters.notify.web_push import ensure_vapid_key

    return ensure_vapid_key(Path(settings.vapid_private_key_file))


def _push(
    settings: Settings,
    clock: Clock,
    closers: list[Callable[[], Awaitable[None]]],
    timeout_s: float,
) -> PushSender:
    sender = _PushOnFirstUse(settings, clock, timeout_s)
    closers.append(sender.aclose)
    return sender


class _PushOnFirstUse:
    """The Web Push sender, built when first used (its key read, its HTTP client made), so that
    commands that send nothing pay nothing."""

    def __init__(self, settings: Settings, clock: Clock, timeout_s: float) -> None:
        self._settings = settings
        self._clock = clock
        self._timeout_s = timeout_s
        self._sender: PushSender | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    def _built(self) -> PushSender:
        if self._sender is None:
            from topup.adapters.notify.web_push import WebPushSender

            made = WebPushSender(
                ensure_push_keys(self._settings),
                subject=self._settings.vapid_subject,
                timeout_s=self._timeout_s,
                clock=self._clock.now,
            )
            self._sender, self._close = made, made.aclose
        return self._sender

    @property
    def public_key(self) -> str:
        return self._built().public_key

    async def send(
        self, subscription: PushSubscription, payload: bytes, *, idempotency_key: str, ttl_s: int
    ) -> PushOutcome:
        return await self._built().send(
            subscription, payload, idempotency_key=idempotency_key, ttl_s=ttl_s
        )

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def _rate_limiter(
    settings: Settings, clock: Clock, closers: list[Callable[[], Awaitable[None]]]
) -> RateLimiter:
    """Shared by every server process through Redis when TOPUP_REDIS_URL is set (falling back
    to this process's memory while Redis is down); else counted in this process's memory."""
    if settings.redis_url:
        from topup.adapters.redis_rate_limits import RedisRateLimiter

        limiter = RedisRateLimiter.from_url(settings.redis_url, clock)
        closers.append(limiter.aclose)
        return limiter
    from topup.adapters.rate_limits import MemoryRateLimiter

    return MemoryRateLimiter(clock)


def _mailer(settings: Settings, clock: Clock) -> Mailer:
    """SMTP when TOPUP_SMTP_URL is set; else .eml files in TOPUP_MAIL_OUTBOX; else memory."""
    if settings.smtp_url:
        from topup.adapters.notify.smtp import SmtpMailer, parse_smtp_url

        return SmtpMailer(
            parse_smtp_url(settings.smtp_url),
            sender=settings.mail_from,
            timeout_s=settings.smtp_timeout_s,
            clock=clock.now,
        )
    from topup.adapters.notify.mail_outbox import MemoryMailer, OutboxMailer

    if settings.mail_outbox:
        return OutboxMailer(Path(settings.mail_outbox), sender=settings.mail_from, clock=clock.now)
    return MemoryMailer()


def _receipt_drawer(settings: Settings) -> ReceiptDrawer:
    return _DrawerOnFirstUse(settings.receipt_font_paths)


class _DrawerOnFirstUse:
    """The receipt drawer, imported when a receipt is first drawn: fpdf2 takes about half a
    second to import, which every command and server start would otherwise pay."""

    def __init__(self, font_paths_setting: str) -> None:
        self._setting = font_paths_setting
        self._drawer: ReceiptDrawer | None = None

    def draw(
        self,
        local: Sequence[tuple[str, str]],
        english: Sequence[tuple[str, str]],
        *,
        receipt_number: str,
        paid_at: dt.datetime,
    ) -> bytes:
        if self._drawer is None:
            from topup.adapters.receipt_pdf import FontedReceiptDrawer, font_paths

            self._drawer = FontedReceiptDrawer(font_paths(self._setting))
        return self._drawer.draw(local, english, receipt_number=receipt_number, paid_at=paid_at)


WEBHOOK_DELIVERY_TIMEOUT_S = 10.0


def _deliver_sandbox_webhooks(services: Services, base_url: str) -> None:
    """The sandbox wallet posts its webhooks to ``base_url``'s webhook endpoint over HTTP, as a
    provider would; without one, straight to our handler in this process."""
    from topup.adapters.gateways.sandbox_wallet import SandboxWallet
    from topup.services.wallets import handle_webhook

    for name, gateway in services.gateways.items():
        if not isinstance(gateway, SandboxWallet):
            continue
        if base_url:
            address = f"{base_url.rstrip('/')}/api/v1/webhooks/{name}"

            async def post(body: bytes, headers: Mapping[str, str], address: str = address) -> str:
                import httpx

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
    from importlib.metadata import entry_points

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
        from topup.adapters.gateways.sandbox_settlement import JournalingGateway, SettlementJournal

        journal = SettlementJournal(Path(settings.sandbox_journal))
        gateway = JournalingGateway(gateway, journal, clock=clock.now)
    return gateway


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision (Alembic; same revisions on SQLite and PostgreSQL)."""
    from alembic import command
    from alembic.config import Config

    _prepare_sqlite_file(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")
