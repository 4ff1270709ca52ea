"""E-wallet payments (account fingerprint for daily limits, approval address) and the webhooks
already handled

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wallet_account_fingerprint", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("action_url", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_payments_wallet_account_fingerprint_requested_at",
            ["wallet_account_fingerprint", "requested_at"],
            unique=False,
        )
    op.create_table(
        "webhook_events",
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "event_id", name=op.f("pk_webhook_events")),
    )


def downgrade() -> None:
    op.drop_table("webhook_events")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_wallet_account_fingerprint_requested_at")
        batch_op.drop_column("action_url")
        batch_op.drop_column("wallet_account_fingerprint")
