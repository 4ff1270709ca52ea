"""What every service receives: ports, the operator profile and the limits. Built by bootstrap."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from topup.domain.errors import InvariantError
from topup.domain.methods import MethodRegistry
from topup.domain.payment_card import CardFacts
from topup.domain.profile import OperatorProfile
from topup.limits import Limits
from topup.ports import (
    Clock,
    Mailer,
    NetworkDataAccess,
    NetworkProvisioner,
    PaymentGateway,
    PushSender,
    RateLimiter,
    ReceiptDrawer,
    SmsSender,
    TokenSealer,
    UnitOfWork,
)
from topup.services.batching import Batcher

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class Services:
    unit_of_work: Callable[[], UnitOfWork]
    gateway: PaymentGateway  # the card gateway
    network: NetworkProvisioner
    clock: Clock
    profile: OperatorProfile
    limits: Limits
    tokens: TokenSealer
    new_id: Callable[[], str]
    methods: MethodRegistry
    # Every gateway a configured method uses, by name (payments name theirs).
    gateways: Mapping[str, PaymentGateway]
    # What the shipped IIN table knows of a payment card number (brand, funding, country).
    card_facts: Callable[[str], CardFacts]
    rate_limiter: RateLimiter
    sms: SmsSender | None = None  # one-time codes to a card's number (accounts linking cards)
    mailer: Mailer | None = None  # receipts, card-number recovery, account links
    receipt_drawer: ReceiptDrawer | None = None  # receipts as PDF (pages; None: not offered)
    push: PushSender | None = None  # reminders to the installed app (Web Push; None: not offered)
    # The web site's base address (TOPUP_PUBLIC_URL): links e-mailed to subscribers start with it.
    public_url: str = "http://127.0.0.1:8000"
    random: random.Random = field(default_factory=random.Random)
    # Told of each finished activation/refund, e.g. the worker prints it.
    on_event: Callable[[str, dict[str, str]], None] = field(default=lambda kind, data: None)
    # Tells failures of the database itself (e.g. the server is down) from one renewal's.
    database_unavailable: Callable[[BaseException], bool] = field(default=lambda error: False)
    # Group-commit batchers (services.batching), made on first use by the service that owns each.
    batchers: dict[str, Any] = field(default_factory=dict)
    # Usage (issue 11): the network's data bar (None: the network enforces quotas itself), and
    # the secret the mediation system signs usage records with (empty: none accepted).
    network_data: NetworkDataAccess | None = None
    usage_secret: bytes = b""

    def gateway_named(self, name: str) -> PaymentGateway:
        """The gateway that took a payment (``payment.gateway``). The card gateway is
        ``self.gateway`` itself, so that whoever wraps it (a test, a simulation) wraps it for
        every use."""
        if name == self.gateway.name:
            return self.gateway
        found = self.gateways.get(name)
        if found is None:
            raise InvariantError(f"a payment names gateway {name!r}, which is not configured")
        return found

    def batcher(
        self,
        name: str,
        run: Callable[[Services, list[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        key: Callable[[Item], Hashable],
    ) -> Batcher[Item, Result]:
        """The batcher called ``name``, made on first use with the write-batch limits."""
        found = self.batchers.get(name)
        if found is None:

            async def run_here(items: list[Item]) -> Sequence[Result | Exception]:
                return await run(self, items)

            found = Batcher(
                run_here,
                key=key,
                size_max=self.limits.writes.write_batch_size_max,
                in_flight_max=self.limits.writes.write_batches_in_flight_max,
                fail_together=self.database_unavailable,
            )
            self.batchers[name] = found
        return cast("Batcher[Item, Result]", found)
