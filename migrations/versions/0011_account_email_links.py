"""Accounts confirm their e-mail and reset their password by e-mailed single-use links; card-number
recovery looks cards up by e-mail without regard to case

Accounts opened before this revision never had to confirm their address: they are taken as
confirmed when they were made, so that nobody is locked out by the upgrade.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_EMAIL = sa.text("receipt_email IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE accounts SET confirmed_at = created_at")
    op.create_table(
        "account_email_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_email_tokens_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_email_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_email_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_account_email_tokens_account_id"), "account_email_tokens", ["account_id"]
    )
    op.create_index("ix_account_email_tokens_expires_at", "account_email_tokens", ["expires_at"])
    with op.batch_alter_table("login_failures") as batch:
        batch.add_column(sa.Column("email_key", sa.String(length=64), nullable=True))
    op.create_index("ix_login_failures_email_key", "login_failures", ["email_key"])
    op.create_index("ix_cards_email_lower", "cards", [sa.text("lower(email)")])
    op.create_index(
        "ix_renewals_receipt_email_lower",
        "renewals",
        [sa.text("lower(receipt_email)")],
        postgresql_where=_WITH_EMAIL,
        sqlite_where=_WITH_EMAIL,
    )


def downgrade() -> None:
    op.drop_index("ix_renewals_receipt_email_lower", table_name="renewals")
    op.drop_index("ix_cards_email_lower", table_name="cards")
    op.drop_index("ix_login_failures_email_key", table_name="login_failures")
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_column("email_key")
    op.drop_index("ix_account_email_tokens_expires_at", table_name="account_email_tokens")
    op.drop_index(op.f("ix_account_email_tokens_account_id"), table_name="account_email_tokens")
    op.drop_table("account_email_tokens")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("confirmed_at")
