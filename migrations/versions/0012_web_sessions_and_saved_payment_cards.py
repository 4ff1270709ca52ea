"""Web sessions end after a while unused: sign-in tokens keep when they were last used; accounts
save payment cards (a PSP token, sealed, and its fingerprint) for one-tap renewals

Tokens issued before this revision have no ``last_seen_at``: their session counts as last seen
when it was issued.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_tokens") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "saved_payment_cards",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("token_sealed", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("funding", sa.String(length=16), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("expiry_month", sa.Integer(), nullable=False),
        sa.Column("expiry_year", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_saved_payment_cards_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_payment_cards")),
        sa.UniqueConstraint(
            "account_id", "fingerprint", name="uq_saved_payment_cards_account_id_fingerprint"
        ),
    )


def downgrade() -> None:
    op.drop_table("saved_payment_cards")
    with op.batch_alter_table("access_tokens") as batch:
        batch.drop_column("last_seen_at")
