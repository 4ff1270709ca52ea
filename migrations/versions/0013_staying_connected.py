"""Staying connected (issue 11): usage records, reminders, auto-renewal, organisations (fleets),
bulk renewals and invoices.

Each part has its own function below; ``upgrade`` and ``downgrade`` call them in order.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 03:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401  (each part's tables use it)
from alembic import op  # noqa: F401

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _upgrade_usage()
    _upgrade_reminders()
    _upgrade_auto_renewal()
    _upgrade_fleets()


def downgrade() -> None:
    _downgrade_fleets()
    _downgrade_auto_renewal()
    _downgrade_reminders()
    _downgrade_usage()


# --- usage -----------------------------------------------------------------------------------
# Usage records from the network and what they debited.


def _upgrade_usage() -> None:
    pass


def _downgrade_usage() -> None:
    pass


# --- reminders ----------------------------------------------------------------------------------
# Reminders (one per card, period and kind), their deliveries per channel, preferences, push
# subscriptions.


def _upgrade_reminders() -> None:
    pass


def _downgrade_reminders() -> None:
    pass


# --- auto-renewal -------------------------------------------------------------------------------
# Auto-renewal and auto top-up settings per card, and their attempts (one charge per period).


def _upgrade_auto_renewal() -> None:
    pass


def _downgrade_auto_renewal() -> None:
    pass


# --- fleets -------------------------------------------------------------------------------------
# Organisations, members, their cards, bulk renewal runs and lines, monthly invoices.


def _upgrade_fleets() -> None:
    pass


def _downgrade_fleets() -> None:
    pass
