"""API keys, HTTP idempotency records, and receipt numbers (and where to e-mail the receipt)
on renewals

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 20:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_number", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("receipt_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("receipt_language", sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_renewals_receipt_number"), ["receipt_number"]
        )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("outlet", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "idempotency_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_requests")),
        sa.UniqueConstraint("scope", "key", name="uq_idempotency_requests_scope_key"),
    )
    op.create_index(
        "ix_idempotency_requests_created_at", "idempotency_requests", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_requests_created_at", table_name="idempotency_requests")
    op.drop_table("idempotency_requests")
    op.drop_table("api_keys")
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_renewals_receipt_number"), type_="unique")
        batch_op.drop_column("receipt_language")
        batch_op.drop_column("receipt_email")
        batch_op.drop_column("receipt_number")
