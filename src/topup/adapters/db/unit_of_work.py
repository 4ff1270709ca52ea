"""The unit of work: one database transaction. It rolls back unless the service commits."""

from __future__ import annotations

import asyncio
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from topup import ports
from topup.adapters.db.account_history import AccountHistoryQueries
from topup.adapters.db.accounts import AccountRepository
from topup.adapters.db.api_keys import ApiKeyRepository
from topup.adapters.db.audit import AuditQueries
from topup.adapters.db.auto_renewals import AutoRenewalRepository
from topup.adapters.db.bulk_renewals import BulkRenewalRepository
from topup.adapters.db.cards import CardRepository
from topup.adapters.db.idempotency import IdempotencyRepository
from topup.adapters.db.jobs import JobRepository
from topup.adapters.db.ledger import LedgerRepository
from topup.adapters.db.organisations import OrganisationRepository
from topup.adapters.db.payment_card_locks import PaymentCardLockRepository
from topup.adapters.db.payments import PaymentRepository
from topup.adapters.db.plans import PlanRepository
from topup.adapters.db.policy_requests import PolicyRequestRepository
from topup.adapters.db.receipts import ReceiptQueries
from topup.adapters.db.reminders import ReminderRepository
from topup.adapters.db.renewals import RenewalRepository
from topup.adapters.db.saved_payment_cards import SavedPaymentCardRepository
from topup.adapters.db.usage import UsageRepository
from topup.adapters.db.webhooks import WebhookRepository
from topup.domain.errors import InvariantError

WRITER_LOCK_TIMEOUT_S = 30


class SqlUnitOfWork:
    cards: CardRepository
    plans: PlanRepository
    renewals: RenewalRepository
    payments: PaymentRepository
    ledger: LedgerRepository
    jobs: JobRepository
    payment_card_locks: PaymentCardLockRepository
    webhooks: WebhookRepository
    audit: AuditQueries
    receipts: ReceiptQueries
    idempotency: IdempotencyRepository
    accounts: AccountRepository
    api_keys: ApiKeyRepository
    saved_payment_cards: SavedPaymentCardRepository
    account_history: AccountHistoryQueries
    organisations: OrganisationRepository
    bulk_renewals: BulkRenewalRepository
    reminders: ReminderRepository
    policy_requests: PolicyRequestRepository
    usage: UsageRepository
    auto_renewals: AutoRenewalRepository

    def __init__(self, engine: AsyncEngine, *, writer_lock: asyncio.Lock | None = None) -> None:
        self._engine = engine
        # SQLite allows one writer at a time. Queueing our own tasks on a lock is much cheaper than
        # letting each BEGIN IMMEDIATE spin in SQLite's busy handler; other processes still wait
        # through busy_timeout.
        self._writer_lock = writer_lock
        self._holds_lock = False
        self._connection: AsyncConnection | None = None
        self._committed = False

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise InvariantError("unit of work used outside 'async with'")
        return self._connection

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._writer_lock is not None:
            async with asyncio.timeout(WRITER_LOCK_TIMEOUT_S):
                await self._writer_lock.acquire()
            self._holds_lock = True
        try:
            connection = await self._engine.connect()
            await connection.begin()
        except BaseException:
            self._release()
            raise
        self._connection = connection
        self._committed = False
        self.cards = CardRepository(connection)
        self.plans = PlanRepository(connection)
        self.renewals = RenewalRepository(connection)
        self.payments = PaymentRepository(connection)
        self.ledger = LedgerRepository(connection)
        self.jobs = JobRepository(connection)
        self.payment_card_locks = PaymentCardLockRepository(connection)
        self.webhooks = WebhookRepository(connection)
        self.audit = AuditQueries(connection)
        self.receipts = ReceiptQueries(connection)
        self.idempotency = IdempotencyRepository(connection)
        self.accounts = AccountRepository(connection)
        self.api_keys = ApiKeyRepository(connection)
        self.saved_payment_cards = SavedPaymentCardRepository(connection)
        self.account_history = AccountHistoryQueries(connection)
        self.organisations = OrganisationRepository(connection)
        self.bulk_renewals = BulkRenewalRepository(connection)
        self.reminders = ReminderRepository(connection)
        self.policy_requests = PolicyRequestRepository(connection)
        self.usage = UsageRepository(connection)
        self.auto_renewals = AutoRenewalRepository(connection)
        return self

    async def commit(self) -> None:
        await self.ledger.apply_balance_changes()
        await self.connection.commit()
        self._committed = True

    async def rollback(self) -> None:
        self.ledger.discard_balance_changes()
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
            self._release()

    def _release(self) -> None:
        if self._holds_lock and self._writer_lock is not None:
            self._holds_lock = False
            self._writer_lock.release()


def _implements_the_port(engine: AsyncEngine) -> ports.UnitOfWork:
    """Never called: mypy proves here that the SQL unit of work and each of its repositories
    implement the Protocols of ``topup.ports``."""
    return SqlUnitOfWork(engine)
