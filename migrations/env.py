"""Alembic environment: runs the same migrations on SQLite and PostgreSQL through our async engines.

The database URL comes from the caller (``config.attributes["database_url"]``) or TOPUP_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from topup.adapters.db.engine import create_engine
from topup.adapters.db.tables import metadata

config = context.config
target_metadata = metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("TOPUP_DATABASE_URL")
    if not url:
        raise SystemExit("migrations need a database URL (TOPUP_DATABASE_URL)")
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.dialect.name == "sqlite":
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise SystemExit(f"migration left rows breaking foreign keys: {problems[:5]}")


async def _run_async() -> None:
    engine = create_engine(_database_url(), enforce_foreign_keys=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        _run(existing)
    else:
        asyncio.run(_run_async())
