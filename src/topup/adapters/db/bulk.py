"""Statements every repository shares: dialect inserts, leases, list parameters, batch updates."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.domain.errors import InvariantError


def dialect_insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def lease_due(
    connection: AsyncConnection,
    table: Table,
    due: Any,
    *,
    order_by: Any,
    limit: int,
    values: dict[str, Any],
) -> list[Row[Any]]:
    """Lease due rows to this worker: pick them with FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite
    has one writer at a time anyway), then move their next time past the lease, in one
    transaction. Other workers skip them until the lease ends."""
    picked = (
        select(table.c.id)
        .where(due)
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [row[0] for row in await connection.execute(picked)]
    if not ids:
        return []
    result = await connection.execute(
        update(table).where(table.c.id.in_(ids)).values(**values).returning(*table.c)
    )
    return list(result)


async def driver_connection(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, in its transaction (SQLAlchemy sends BEGIN
    with its first statement, so a trivial one is sent first), for what the driver does many
    times faster than SQLAlchemy's statement processing: COPY, and statements whose parameters
    are arrays of thousands of values."""
    await connection.exec_driver_sql("SELECT 1")
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise InvariantError("the unit of work's connection is closed")
    return driver


def many(name: str = "ids") -> Any:
    """A bind parameter taking a list (``IN (...)``), so one statement serves every batch size."""
    return bindparam(name, expanding=True)


Match = tuple[tuple[str, str], ...]  # (column, parameter name) pairs a row must match


async def update_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    match: Match,
    columns: tuple[str, ...],
) -> int:
    """UPDATE ``table`` SET ``columns`` for each row (a dict of parameters) that matches; returns
    how many rows changed. PostgreSQL gets one statement over arrays, however many rows;
    SQLite (in-process, no round trips) an executemany."""
    if not rows:
        return 0
    if connection.dialect.name != "postgresql":
        result = await connection.execute(update_statement(table, match, columns), list(rows))
        return int(result.rowcount)
    arrays: dict[str, list[Any]] = {}
    dialect = connection.dialect
    for column, parameter in (*match, *((column, column) for column in columns)):
        column_type = table.c[column].type
        values = [row[parameter] for row in rows]
        if isinstance(column_type, t.UtcDateTime):  # aware UTC, as the type would bind them
            values = [column_type.process_bind_param(value, dialect) for value in values]
        arrays[parameter] = values
    result = await connection.execute(
        unnest_update(connection.dialect, table, match, columns), arrays
    )
    return int(result.rowcount)


@functools.lru_cache(maxsize=64)
def update_statement(table: Table, match: Match, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(*(table.c[column] == bindparam(parameter) for column, parameter in match))
        .values({column: bindparam(column) for column in columns})
    )


@functools.lru_cache(maxsize=64)
def unnest_update(dialect: Dialect, table: Table, match: Match, columns: tuple[str, ...]) -> Any:
    """UPDATE t SET c = v.c, ... FROM unnest(<one array per parameter>) AS v(...) WHERE ..."""
    names = [parameter for _, parameter in match] + list(columns)
    sql_types = {
        parameter: table.c[column].type.compile(dialect=dialect) for column, parameter in match
    }
    sql_types.update({column: table.c[column].type.compile(dialect=dialect) for column in columns})
    arrays = ", ".join(f"CAST(:{name} AS {sql_types[name]}[])" for name in names)
    assignments = ", ".join(f"{column} = v.{column}" for column in columns)
    conditions = " AND ".join(
        f"{table.name}.{column} = v.{parameter}" for column, parameter in match
    )
    return text(
        f"UPDATE {table.name} SET {assignments} "  # noqa: S608 - names from our own tables
        f"FROM unnest({arrays}) AS v({', '.join(names)}) WHERE {conditions}"
    )


async def update_many(
    connection: AsyncConnection, table: Table, changes: Sequence[tuple[Any, dict[str, Any]]]
) -> None:
    """Update rows by id, one statement per set of changed columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row_id, values in changes:
        columns = tuple(sorted(values))
        groups.setdefault(columns, []).append({"row_id": row_id, **values})
    for columns, parameters in groups.items():
        await update_rows(connection, table, parameters, match=(("id", "row_id"),), columns=columns)


@functools.lru_cache(maxsize=4)
def balance_upsert(dialect_name: str) -> Any:
    """INSERT a balance change, or add it to the balance already there; for executemany, which
    runs the rows in the order given."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(t.account_balances)
    return statement.on_conflict_do_update(
        index_elements=[t.account_balances.c.account, t.account_balances.c.currency],
        set_={
            "balance_minor": t.account_balances.c.balance_minor + statement.excluded.balance_minor
        },
    )
