"""Async engines for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_POOL_SIZE = 20
PREPARED_STATEMENTS_MAX = 1000  # per connection
POSTGRES_POOL_OVERFLOW = 20
POOL_TIMEOUT_S = 30
POOL_RECYCLE_S = 1800


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite:///`` URLs and pick our async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, pool_size: int = POSTGRES_POOL_SIZE, enforce_foreign_keys: bool = True
) -> AsyncEngine:
    """``enforce_foreign_keys=False`` is for migrations only: SQLite changes a table by copying
    it, which it cannot do while other tables' foreign keys point at it."""
    url = async_url(url)
    if is_sqlite(url):
        engine = create_async_engine(url, pool_timeout=POOL_TIMEOUT_S, hide_parameters=True)
        _make_sqlite_transactions_immediate(engine, enforce_foreign_keys=enforce_foreign_keys)
        return engine
    # Batches of every size from 1 to write_batch_size_max make as many statements; SQLAlchemy's
    # cache of asyncpg prepared statements (100 by default) would keep re-preparing them.
    url = (
        make_url(url)
        .update_query_dict({"prepared_statement_cache_size": str(PREPARED_STATEMENTS_MAX)})
        .render_as_string(hide_password=False)
    )
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=POSTGRES_POOL_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
        pool_recycle=POOL_RECYCLE_S,  # no pre-ping: it costs three round trips per transaction
        hide_parameters=True,  # errors and logs never show the values (e-mails, hashes, bodies)
        connect_args={
            "server_settings": {
                "application_name": "topup",
                # asyncpg prepares every statement; after five runs PostgreSQL may switch to a
                # generic plan, which for our `id IN (...)` batch look-ups is several times slower
                # than planning with the actual ids.
                "plan_cache_mode": "force_custom_plan",
            }
        },
    )
    # A batch of rows goes in as one multi-row INSERT rather than one execution per row: the
    # server's cost per statement is what group commit is there to save.
    engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def _make_sqlite_transactions_immediate(engine: AsyncEngine, *, enforce_foreign_keys: bool) -> None:
    """SQLite: take the write lock at BEGIN so read-then-write cannot lose an update, wait for
    locks instead of failing at once, and enforce foreign keys."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enforce_foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# What a worker may wait out and retry: the database went away, was restarted, or is full, or no
# connection came free in time.
TRANSIENT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    OSError,
    TimeoutError,
    PoolTimeoutError,
)


def database_unavailable(error: BaseException) -> bool:
    """True when ``error`` is about the database as a whole (down, unreachable, locked, no free
    connection), not about one statement's data."""
    if isinstance(error, OSError | TimeoutError | PoolTimeoutError | OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)
