"""Fleets after review: an auto-renewal try and an auto top-up record the organisation it is charged to (its
invoice and its spend), bulk lines are found by card (a card renewed recently by a bulk
renewal is left out of the same file uploaded again), and a fleet policy request keeps the last
card it reached (it walks the fleet by card id)

Tries written before this revision have no ``paid_by_organisation_id``: they are on no
organisation's invoice, as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without constraints: SQLite adds it in place (no table copy).
    op.add_column(
        "auto_renewal_attempts",
        sa.Column("paid_by_organisation_id", sa.String(length=36), nullable=True),
    )
    op.create_index(
        "ix_auto_renewal_attempts_paid_by_organisation_id_created_at",
        "auto_renewal_attempts",
        ["paid_by_organisation_id", "created_at"],
    )
    op.create_index("ix_bulk_lines_card_id", "bulk_lines", ["card_id"])
    op.add_column(
        "auto_top_ups", sa.Column("paid_by_organisation_id", sa.String(length=36), nullable=True)
    )
    op.create_index(
        "ix_auto_top_ups_paid_by_organisation_id_at",
        "auto_top_ups",
        ["paid_by_organisation_id", "at"],
    )
    # A policy request walks its fleet by card id from the last card it reached.
    op.add_column("policy_requests", sa.Column("reached_card_id", sa.String(length=36)))


def downgrade() -> None:
    op.drop_column("policy_requests", "reached_card_id")
    op.drop_index("ix_auto_top_ups_paid_by_organisation_id_at", table_name="auto_top_ups")
    op.drop_column("auto_top_ups", "paid_by_organisation_id")
    op.drop_index("ix_bulk_lines_card_id", table_name="bulk_lines")
    op.drop_index(
        "ix_auto_renewal_attempts_paid_by_organisation_id_created_at",
        table_name="auto_renewal_attempts",
    )
    # SQLite (3.35 and later) drops a column no index or constraint uses in place; a batch copy
    # would reflect the tables it refers to, whose expression indexes SQLAlchemy cannot read.
    op.drop_column("auto_renewal_attempts", "paid_by_organisation_id")
