"""What every service receives: ports, the operator profile and the limits. Built by bootstrap."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topup.domain.profile import OperatorProfile
from topup.ports import Clock, NetworkProvisioner, PaymentGateway, TokenSealer, UnitOfWork
from topup.settings import Limits


@dataclass
class Services:
    unit_of_work: Callable[[], UnitOfWork]
    gateway: PaymentGateway
    network: NetworkProvisioner
    clock: Clock
    profile: OperatorProfile
    limits: Limits
    tokens: TokenSealer
    new_id: Callable[[], str]
    random: random.Random = field(default_factory=random.Random)
    # Told of each finished activation/refund, e.g. the worker prints it.
    on_event: Callable[[str, dict[str, str]], None] = field(default=lambda kind, data: None)
    # Group-commit batchers (services.batching), made on first use by the service that owns each.
    batchers: dict[str, Any] = field(default_factory=dict)
