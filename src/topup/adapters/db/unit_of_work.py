"""The unit of work: one database transaction. It rolls back unless the service commits."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from topup.adapters.db.audit import AuditQueries
from topup.adapters.db.repositories import (
    CardRepository,
    JobRepository,
    LedgerRepository,
    PaymentRepository,
    PlanRepository,
    RenewalRepository,
)
from topup.domain.errors import InvariantError


class SqlUnitOfWork:
    cards: CardRepository
    plans: PlanRepository
    renewals: RenewalRepository
    payments: PaymentRepository
    ledger: LedgerRepository
    jobs: JobRepository
    audit: AuditQueries

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._committed = False

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise InvariantError("unit of work used outside 'async with'")
        return self._connection

    async def __aenter__(self) -> SqlUnitOfWork:
        connection = await self._engine.connect()
        await connection.begin()
        self._connection = connection
        self._committed = False
        self.cards = CardRepository(connection)
        self.plans = PlanRepository(connection)
        self.renewals = RenewalRepository(connection)
        self.payments = PaymentRepository(connection)
        self.ledger = LedgerRepository(connection)
        self.jobs = JobRepository(connection)
        self.audit = AuditQueries(connection)
        return self

    async def commit(self) -> None:
        await self.connection.commit()
        self._committed = True

    async def rollback(self) -> None:
        await self.connection.rollback()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self.connection
        try:
            if not self._committed and connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()
            self._connection = None
