"""Renewals no longer hold a foreign key to their plan

Every renewal of a plan took a KEY SHARE lock on that plan's row to check the key: one hot row
shared by all concurrent renewals. A renewal keeps the terms it was sold at (price, quota,
validity), so it does not need the plan row to stay; the service checks the plan at sale time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "fk_renewals_plan_code_plans"


def upgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_constraint(CONSTRAINT, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.create_foreign_key(CONSTRAINT, "plans", ["plan_code"], ["code"])
