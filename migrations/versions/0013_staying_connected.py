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
    op.create_table(
        "reminders",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("card_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_reminders_card_id_cards"),
        sa.PrimaryKeyConstraint("id", name="pk_reminders"),
        sa.UniqueConstraint("card_id", "kind", "period", name="uq_reminders_card_id_kind_period"),
    )
    op.create_index(
        "ix_reminders_card_id_kind_period_end", "reminders", ["card_id", "kind", "period_end"]
    )
    op.create_table(
        "reminder_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("reminder_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reminder_id"], ["reminders.id"], name="fk_reminder_deliveries_reminder_id_reminders"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reminder_deliveries"),
        sa.UniqueConstraint(
            "reminder_id", "channel", name="uq_reminder_deliveries_reminder_id_channel"
        ),
    )
    op.create_index(
        "ix_reminder_deliveries_status_next_attempt_at",
        "reminder_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "reminder_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_reminder_cursors"),
    )
    op.create_table(
        "reminder_preferences",
        sa.Column("card_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name="fk_reminder_preferences_card_id_cards"
        ),
        sa.PrimaryKeyConstraint("card_id", "channel", name="pk_reminder_preferences"),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_push_subscriptions_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_push_subscriptions"),
    )


def _downgrade_reminders() -> None:
    op.drop_table("push_subscriptions")
    op.drop_table("reminder_preferences")
    op.drop_table("reminder_cursors")
    op.drop_index("ix_reminder_deliveries_status_next_attempt_at", table_name="reminder_deliveries")
    op.drop_table("reminder_deliveries")
    op.drop_index("ix_reminders_card_id_kind_period_end", table_name="reminders")
    op.drop_table("reminders")


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
