"""The in-memory unit of work: a snapshot of the tables taken when it begins, put back only if
the service commits. Units of work run one at a time (as on SQLite), so none sees another's
uncommitted rows and a snapshot never overwrites a later commit."""

from __future__ import annotations

import asyncio
from types import TracebackType

from topup import ports
from topup.adapters.memory.account_history import MemoryAccountHistoryQueries
from topup.adapters.memory.accounts import MemoryAccountRepository
from topup.adapters.memory.api_keys import MemoryApiKeyRepository
from topup.adapters.memory.audit import MemoryAuditQueries
from topup.adapters.memory.auto_renewals import MemoryAutoRenewalRepository
from topup.adapters.memory.bulk_renewals import MemoryBulkRenewalRepository
from topup.adapters.memory.cards import MemoryCardRepository
from topup.adapters.memory.idempotency import MemoryIdempotencyRepository
from topup.adapters.memory.jobs import MemoryJobRepository
from topup.adapters.memory.ledger import MemoryLedgerRepository
from topup.adapters.memory.organisations import MemoryOrganisationRepository
from topup.adapters.memory.payment_card_locks import MemoryPaymentCardLockRepository
from topup.adapters.memory.payments import MemoryPaymentRepository
from topup.adapters.memory.plans import MemoryPlanRepository
from topup.adapters.memory.policy_requests import MemoryPolicyRequestRepository
from topup.adapters.memory.receipts import MemoryReceiptQueries
from topup.adapters.memory.reminders import MemoryReminderRepository
from topup.adapters.memory.renewals import MemoryRenewalRepository
from topup.adapters.memory.saved_payment_cards import MemorySavedPaymentCardRepository
from topup.adapters.memory.tables import Tables
from topup.adapters.memory.usage import MemoryUsageRepository
from topup.adapters.memory.webhooks import MemoryWebhookRepository
from topup.domain.errors import InvariantError

# A unit of work opened while another is open in the same task would wait for ever.
TURN_TIMEOUT_S = 5.0


class MemoryDatabase:
    """What the fake units of work share: the committed tables, and whose turn it is."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.turn = asyncio.Lock()
        self.commits = 0

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class FakeUnitOfWork:
    cards: MemoryCardRepository
    plans: MemoryPlanRepository
    renewals: MemoryRenewalRepository
    payments: MemoryPaymentRepository
    ledger: MemoryLedgerRepository
    jobs: MemoryJobRepository
    payment_card_locks: MemoryPaymentCardLockRepository
    webhooks: MemoryWebhookRepository
    accounts: MemoryAccountRepository
    api_keys: MemoryApiKeyRepository
    saved_payment_cards: MemorySavedPaymentCardRepository
    account_history: MemoryAccountHistoryQueries
    receipts: MemoryReceiptQueries
    audit: MemoryAuditQueries
    idempotency: MemoryIdempotencyRepository
    organisations: MemoryOrganisationRepository
    bulk_renewals: MemoryBulkRenewalRepository
    reminders: MemoryReminderRepository
    policy_requests: MemoryPolicyRequestRepository
    usage: MemoryUsageRepository
    auto_renewals: MemoryAutoRenewalRepository

    def __init__(self, database: MemoryDatabase) -> None:
        self._database = database
        self._tables: Tables | None = None
        self.committed = False

    async def __aenter__(self) -> FakeUnitOfWork:
        try:
            async with asyncio.timeout(TURN_TIMEOUT_S):
                await self._database.turn.acquire()
        except TimeoutError:
            raise InvariantError(
                "a unit of work waited too long (one opened inside another?)"
            ) from None
        tables = self._database.tables.copy()
        self._tables = tables
        self.committed = False
        self.cards = MemoryCardRepository(tables)
        self.plans = MemoryPlanRepository(tables)
        self.renewals = MemoryRenewalRepository(tables)
        self.payments = MemoryPaymentRepository(tables)
        self.ledger = MemoryLedgerRepository(tables)
        self.jobs = MemoryJobRepository(tables)
        self.payment_card_locks = MemoryPaymentCardLockRepository(tables)
        self.webhooks = MemoryWebhookRepository(tables)
        self.accounts = MemoryAccountRepository(tables)
        self.api_keys = MemoryApiKeyRepository(tables)
        self.saved_payment_cards = MemorySavedPaymentCardRepository(tables)
        self.account_history = MemoryAccountHistoryQueries(tables)
        self.receipts = MemoryReceiptQueries(tables)
        self.audit = MemoryAuditQueries(tables)
        self.idempotency = MemoryIdempotencyRepository(tables)
        self.organisations = MemoryOrganisationRepository(tables)
        self.bulk_renewals = MemoryBulkRenewalRepository(tables)
        self.reminders = MemoryReminderRepository(tables)
        self.policy_requests = MemoryPolicyRequestRepository(tables)
        self.usage = MemoryUsageRepository(tables)
        self.auto_renewals = MemoryAutoRenewalRepository(tables)
        return self

    async def commit(self) -> None:
        if self._tables is None:
            raise InvariantError("unit of work used outside 'async with'")
        self._database.tables = self._tables.copy()
        self._database.commits += 1
        self.committed = True

    async def rollback(self) -> None:
        if self._tables is None:
            raise InvariantError("unit of work used outside 'async with'")
        self._tables.restore(self._database.tables)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._tables = None
        self._database.turn.release()


def _implements_the_port(database: MemoryDatabase) -> ports.UnitOfWork:
    """Never called: mypy proves here that the fakes implement the Protocols of ``ports``."""
    return FakeUnitOfWork(database)
