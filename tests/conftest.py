"""Shared fixtures: every database test runs on a SQLite file and on PostgreSQL.

PostgreSQL comes from TOPUP_TEST_DATABASE_URL (a server where we may create databases). Without it
the PostgreSQL variants are skipped with a visible reason, except under CI, where that is a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from topup.adapters.clock import FixedClock
from topup.adapters.db.tables import metadata
from topup.bootstrap import Application, build, migrate
from topup.services.demo import load_demo
from topup.settings import LimitSettings, Settings

START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def _valid_test_key() -> str:
    import base64

    return base64.urlsafe_b64encode(b"topup-test-key-32-bytes-long!!!!").decode()


def postgres_server_url() -> str | None:
    url = os.environ.get("TOPUP_TEST_DATABASE_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                "CI is set but TOPUP_TEST_DATABASE_URL is not: PostgreSQL tests cannot be skipped"
            )
        return None
    return url


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("PostgreSQL not configured: set TOPUP_TEST_DATABASE_URL to run these tests")
    name = f"topup_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    admin = create_sync_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at TOPUP_TEST_DATABASE_URL is unreachable: {type(error).__name__}")
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def redis_server_url() -> str | None:
    url = os.environ.get("TOPUP_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI is set but TOPUP_TEST_REDIS_URL is not: Redis tests cannot be skipped")
        return None
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis database tests may write to (TOPUP_TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/15).
    Tests delete only the keys they wrote; they never flush the database."""
    import redis

    url = redis_server_url()
    if url is None:
        pytest.skip("Redis not configured: set TOPUP_TEST_REDIS_URL to run these tests")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Redis at TOPUP_TEST_REDIS_URL is unreachable: {type(error).__name__}")
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "topup.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


def _truncate_postgres(url: str) -> None:
    engine = create_sync_engine(make_url(url).set(drivername="postgresql+psycopg"))
    names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "topup.sqlite3"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": _valid_test_key(),
        "gateway_latency_s": 0.0,
        "network_delay_s": 0.0,
        "network_latency_s": 0.0,
        "sandbox_journal": "",
        "sandbox_sms_outbox": "",
        "mail_outbox": "",  # e-mail kept in memory: application.services.mailer is a MemoryMailer
        "sms_latency_s": 0.0,
        "redis_url": "",  # rate limits in memory, whatever the environment says
    }
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., Application]


@pytest.fixture
async def make_app(database_url: str) -> AsyncIterator[AppFactory]:
    """Build applications on this test's database; all are closed at the end."""
    built: list[Application] = []

    def factory(
        *,
        clock: Any = None,
        limits: LimitSettings | None = None,
        seed: int | None = 1,
        pool_size: int | None = None,
        **settings: Any,
    ) -> Application:
        application = build(
            test_settings(database_url, **settings),
            limits=limits or LimitSettings(),
            clock=clock if clock is not None else FixedClock(START),
            seed=seed,
            pool_size=pool_size,
        )
        built.append(application)
        return application

    yield factory
    for application in built:
        await application.close()


@pytest.fixture
async def demo_app(make_app: AppFactory) -> Application:
    application = make_app()
    await load_demo(application.services)
    return application


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


BROWSER_TESTS = Path(__file__).parent / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run last: Playwright's synchronous API keeps an event loop running on
    the main thread once started, where the asynchronous tests need to start their own."""
    items.sort(key=lambda item: BROWSER_TESTS in item.path.parents)
