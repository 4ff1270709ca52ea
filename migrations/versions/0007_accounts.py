"""Accounts: sign-in tokens, sign-in attempts, linked cards and their one-time codes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_access_tokens_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_access_tokens_account_id"), "access_tokens", ["account_id"], unique=False
    )
    op.create_table(
        "login_failures",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_login_failures")),
    )
    op.create_index(
        "ix_login_failures_first_failed_at", "login_failures", ["first_failed_at"], unique=False
    )
    op.create_table(
        "card_links",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_card_links_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_card_links_card_id_cards")
        ),
        sa.PrimaryKeyConstraint("account_id", "card_id", name=op.f("pk_card_links")),
    )
    op.create_index("ix_card_links_card_id", "card_links", ["card_id"], unique=False)
    op.create_table(
        "card_link_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_card_link_codes_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_card_link_codes_card_id_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_link_codes")),
    )
    op.create_index(
        "ix_card_link_codes_account_id_card_id",
        "card_link_codes",
        ["account_id", "card_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_card_link_codes_account_id_card_id", table_name="card_link_codes")
    op.drop_table("card_link_codes")
    op.drop_index("ix_card_links_card_id", table_name="card_links")
    op.drop_table("card_links")
    op.drop_index("ix_login_failures_first_failed_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index(op.f("ix_access_tokens_account_id"), table_name="access_tokens")
    op.drop_table("access_tokens")
    op.drop_table("accounts")
