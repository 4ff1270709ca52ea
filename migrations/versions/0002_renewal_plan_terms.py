"""Renewals keep the quota and validity they were paid for

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("data_quota_mb", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("validity_days", sa.Integer(), nullable=True))
    # Renewals made before this revision took their terms from the plan as it is now.
    op.execute(
        "UPDATE renewals SET "
        "data_quota_mb = (SELECT plans.data_quota_mb FROM plans WHERE plans.code = renewals.plan_code), "
        "validity_days = (SELECT plans.validity_days FROM plans WHERE plans.code = renewals.plan_code)"
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.alter_column("data_quota_mb", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("validity_days", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_column("validity_days")
        batch_op.drop_column("data_quota_mb")
