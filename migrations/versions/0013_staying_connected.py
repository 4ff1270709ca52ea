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
    op.create_table(
        "usage_records",
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(36), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_used_mb", sa.BigInteger(), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_usage_records"),
    )
    op.create_table(
        "card_usage",
        sa.Column("card_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(40), nullable=False),
        sa.Column("period_quota_mb", sa.BigInteger(), nullable=False),
        sa.Column("used_mb", sa.BigInteger(), nullable=False),
        sa.Column("data_low_period", sa.String(40), nullable=True),
        sa.Column("data_exhausted_period", sa.String(40), nullable=True),
        sa.Column("data_barred", sa.Boolean(), nullable=False),
        sa.Column("network_pending", sa.Boolean(), nullable=False),
        sa.Column("network_attempts", sa.Integer(), nullable=False),
        sa.Column("network_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name="fk_card_usage_card_id_cards"),
        sa.PrimaryKeyConstraint("card_id", name="pk_card_usage"),
    )
    op.create_index(
        "ix_card_usage_network_next_at",
        "card_usage",
        ["network_next_at"],
        postgresql_where=sa.text("network_pending"),
        sqlite_where=sa.text("network_pending"),
    )
    op.create_index(
        "ix_card_usage_barred_card_id",
        "card_usage",
        ["card_id"],
        postgresql_where=sa.text("data_barred"),
        sqlite_where=sa.text("data_barred"),
    )
    op.create_table(
        "usage_deliveries",
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature", name="pk_usage_deliveries"),
    )
    op.create_index(
        "ix_usage_deliveries_received_at", "usage_deliveries", ["received_at"]
    )
    op.create_index(
        "ix_cards_status_bill_due_date",
        "cards",
        ["status", "bill_due_date"],
        postgresql_where=sa.text("bill_due_minor > 0"),
        sqlite_where=sa.text("bill_due_minor > 0"),
    )


def _downgrade_usage() -> None:
    op.drop_index("ix_cards_status_bill_due_date", table_name="cards")
    op.drop_index("ix_usage_deliveries_received_at", table_name="usage_deliveries")
    op.drop_table("usage_deliveries")
    op.drop_index("ix_card_usage_barred_card_id", table_name="card_usage")
    op.drop_index("ix_card_usage_network_next_at", table_name="card_usage")
    op.drop_table("card_usage")
    op.drop_table("usage_records")


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
    # A plain ADD COLUMN (SQLite takes one with a default), not a batch copy of the table.
    op.add_column(
        "payments",
        sa.Column("merchant_initiated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "auto_renewals",
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("payment", sa.String(length=24), nullable=False),
        sa.Column("saved_payment_card_id", sa.String(length=36), nullable=True),
        sa.Column("payment_account_id", sa.String(length=36), nullable=True),
        sa.Column("set_by", sa.String(length=16), nullable=False),
        sa.Column("set_by_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("top_up_plan_code", sa.String(length=64), nullable=True),
        sa.Column("top_up_below_mb", sa.BigInteger(), nullable=True),
        sa.Column("top_up_month_count_max", sa.Integer(), nullable=True),
        sa.Column("top_up_month_amount_max_minor", sa.BigInteger(), nullable=True),
        sa.Column("top_up_armed", sa.Boolean(), nullable=False),
        sa.Column("top_ups", sa.Integer(), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_auto_renewals_card_id_cards")
        ),
        sa.PrimaryKeyConstraint("card_id", name=op.f("pk_auto_renewals")),
    )
    op.create_index(
        "ix_auto_renewals_enabled_next_check_at",
        "auto_renewals",
        ["enabled", "next_check_at"],
    )
    op.create_table(
        "auto_renewal_attempts",
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("try_key", sa.String(length=255), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=True),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("problem", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_auto_renewal_attempts_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["renewal_id"],
            ["renewals.id"],
            name=op.f("fk_auto_renewal_attempts_renewal_id_renewals"),
        ),
        sa.PrimaryKeyConstraint("card_id", "period", name=op.f("pk_auto_renewal_attempts")),
        sa.UniqueConstraint("try_key", name=op.f("uq_auto_renewal_attempts_try_key")),
    )
    op.create_table(
        "auto_renewal_prechecks",
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("offset_s", sa.Integer(), nullable=False),
        sa.Column("problems", sa.String(length=255), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_auto_renewal_prechecks_card_id_cards")
        ),
        sa.PrimaryKeyConstraint(
            "card_id", "period", "offset_s", name=op.f("pk_auto_renewal_prechecks")
        ),
    )
    op.create_table(
        "auto_top_ups",
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("crossing", sa.Integer(), nullable=False),
        sa.Column("renewal_key", sa.String(length=255), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_auto_top_ups_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["renewal_id"], ["renewals.id"], name=op.f("fk_auto_top_ups_renewal_id_renewals")
        ),
        sa.PrimaryKeyConstraint("card_id", "crossing", name=op.f("pk_auto_top_ups")),
        sa.UniqueConstraint("renewal_key", name=op.f("uq_auto_top_ups_renewal_key")),
    )
    op.create_index("ix_auto_top_ups_card_id_at", "auto_top_ups", ["card_id", "at"])
    op.create_index("ix_auto_top_ups_status_at", "auto_top_ups", ["status", "at"])


def _downgrade_auto_renewal() -> None:
    op.drop_index("ix_auto_top_ups_status_at", table_name="auto_top_ups")
    op.drop_index("ix_auto_top_ups_card_id_at", table_name="auto_top_ups")
    op.drop_table("auto_top_ups")
    op.drop_table("auto_renewal_prechecks")
    op.drop_table("auto_renewal_attempts")
    op.drop_index("ix_auto_renewals_enabled_next_check_at", table_name="auto_renewals")
    op.drop_table("auto_renewals")
    op.drop_column("payments", "merchant_initiated")


# --- fleets -------------------------------------------------------------------------------------
# Organisations, members, their cards, bulk renewal runs and lines, monthly invoices.


def _upgrade_fleets() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("payment_card_id", sa.String(length=36), nullable=True),
        sa.Column("payment_card_account_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_card_id"],
            ["saved_payment_cards.id"],
            name=op.f("fk_organisations_payment_card_id_saved_payment_cards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    op.create_table(
        "organisation_members",
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_organisation_members_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_organisation_members_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "organisation_id", "account_id", name=op.f("pk_organisation_members")
        ),
    )
    op.create_index(
        "ix_organisation_members_account_id", "organisation_members", ["account_id"]
    )
    op.create_table(
        "organisation_cards",
        sa.Column("card_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("added_at", utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_organisation_cards_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_organisation_cards_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("card_id", name=op.f("pk_organisation_cards")),
    )
    op.create_index(
        "ix_organisation_cards_organisation_id_card_id",
        "organisation_cards",
        ["organisation_id", "card_id"],
    )
    op.create_table(
        "bulk_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lines_total", sa.Integer(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("retry_of", sa.String(length=36), nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("finished_at", utc, nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_bulk_runs_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_runs")),
    )
    op.create_index(
        "ix_bulk_runs_organisation_id_created_at", "bulk_runs", ["organisation_id", "created_at"]
    )
    op.create_table(
        "bulk_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("card_id", sa.String(length=36), nullable=True),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("renewal_id", sa.String(length=36), nullable=True),
        sa.Column("receipt_number", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", utc, nullable=True),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("error_params", sa.String(length=1200), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["bulk_runs.id"], name=op.f("fk_bulk_lines_run_id_bulk_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_lines")),
        sa.UniqueConstraint("run_id", "line_no", name="uq_bulk_lines_run_id_line_no"),
    )
    op.create_index("ix_bulk_lines_status_lease_until", "bulk_lines", ["status", "lease_until"])
    op.create_index("ix_bulk_lines_renewal_id", "bulk_lines", ["renewal_id"])
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("renewals_count", sa.Integer(), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_invoices_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint(
            "organisation_id",
            "month",
            "sequence",
            name="uq_invoices_organisation_id_month_sequence",
        ),
    )
    op.create_table(
        "policy_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("running_organisation_id", sa.String(length=36), nullable=True),
        sa.Column("requested_by", sa.String(length=36), nullable=False),
        sa.Column("plans", sa.String(length=400), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cards_total", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("already", sa.Integer(), nullable=False),
        sa.Column("left_alone", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("refusals", sa.Text(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("lease_until", utc, nullable=True),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("finished_at", utc, nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_policy_requests_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_requests")),
        sa.UniqueConstraint(
            "running_organisation_id", name=op.f("uq_policy_requests_running_organisation_id")
        ),
    )
    op.create_index(
        "ix_policy_requests_organisation_id_created_at",
        "policy_requests",
        ["organisation_id", "created_at"],
    )
    op.create_index(
        "ix_policy_requests_status_lease_until", "policy_requests", ["status", "lease_until"]
    )


def _downgrade_fleets() -> None:
    op.drop_index("ix_policy_requests_status_lease_until", table_name="policy_requests")
    op.drop_index("ix_policy_requests_organisation_id_created_at", table_name="policy_requests")
    op.drop_table("policy_requests")
    op.drop_table("invoices")
    op.drop_index("ix_bulk_lines_renewal_id", table_name="bulk_lines")
    op.drop_index("ix_bulk_lines_status_lease_until", table_name="bulk_lines")
    op.drop_table("bulk_lines")
    op.drop_index("ix_bulk_runs_organisation_id_created_at", table_name="bulk_runs")
    op.drop_table("bulk_runs")
    op.drop_index("ix_organisation_cards_organisation_id_card_id", table_name="organisation_cards")
    op.drop_table("organisation_cards")
    op.drop_index("ix_organisation_members_account_id", table_name="organisation_members")
    op.drop_table("organisation_members")
    op.drop_table("organisations")
