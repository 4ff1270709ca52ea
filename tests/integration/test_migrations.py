"""Migrations upgrade a database that already holds data, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from topup.adapters.db.tables import metadata
from topup.bootstrap import MIGRATIONS_DIRECTORY


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.attributes["database_url"] = url
    return config


def _sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = "postgresql+psycopg" if parsed.get_backend_name() == "postgresql" else "sqlite"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _add_card(connection: Connection, now: str) -> None:
    connection.execute(
        text(
            "INSERT INTO cards (id, msisdn, iccid, kind, status, currency, credit_minor, "
            "data_quota_mb, bill_due_minor, holder_name, email, version, created_at, updated_at) "
            "VALUES ('card-1', '+60123456789', '8960000000000000019', 'prepaid', 'active', 'MYR', "
            "0, 0, 0, '', '', 0, :now, :now)"
        ),
        {"now": now},
    )


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> str:
    if make_url(database_url).get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(_sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return database_url


def test_renewals_made_before_plan_terms_were_kept_get_them_from_their_plan(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    command.upgrade(_config(url), "0001")
    engine = create_engine(_sync_url(url))
    now = "2026-11-25 08:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO plans (code, names, kind, price_minor, currency, data_quota_mb, "
                "validity_days, card_kinds, channels) VALUES ('pack', '{}', 'prepaid_pack', 1000, "
                "'MYR', 5120, 7, '[\"prepaid\"]', '[\"web\"]')"
            )
        )
        _add_card(connection, now)
        connection.execute(
            text(
                "INSERT INTO renewals (id, card_id, plan_code, kind, channel, amount_minor, currency, "
                "status, idempotency_key, request_fingerprint, created_at, updated_at) VALUES "
                "('renewal-1', 'card-1', 'pack', 'prepaid_pack', 'web', 1000, 'MYR', 'completed', "
                "'key-1', 'fingerprint', :now, :now)"
            ),
            {"now": now},
        )
    command.upgrade(_config(url), "head")
    with engine.connect() as connection:
        terms = connection.execute(
            text("SELECT data_quota_mb, validity_days FROM renewals WHERE id = 'renewal-1'")
        ).one()
    engine.dispose()
    assert tuple(terms) == (5120, 7)


def test_a_withdrawn_plan_can_be_deleted_while_its_renewals_keep_their_terms(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    command.upgrade(_config(url), "head")
    engine = create_engine(_sync_url(url))
    now = "2026-11-25 08:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO plans (code, names, kind, price_minor, currency, data_quota_mb, "
                "validity_days, card_kinds, channels) VALUES ('old_pack', '{}', 'prepaid_pack', "
                "1000, 'MYR', 5120, 7, '[\"prepaid\"]', '[\"web\"]')"
            )
        )
        _add_card(connection, now)
        connection.execute(
            text(
                "INSERT INTO renewals (id, card_id, plan_code, kind, channel, amount_minor, currency, "
                "data_quota_mb, validity_days, status, idempotency_key, request_fingerprint, "
                "created_at, updated_at) VALUES ('renewal-1', 'card-1', 'old_pack', 'prepaid_pack', "
                "'web', 1000, 'MYR', 5120, 7, 'completed', 'key-1', 'fingerprint', :now, :now)"
            ),
            {"now": now},
        )
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM plans WHERE code = 'old_pack'"))
    with engine.connect() as connection:
        kept = connection.execute(
            text("SELECT plan_code, amount_minor, data_quota_mb, validity_days FROM renewals")
        ).one()
    engine.dispose()
    assert tuple(kept) == ("old_pack", 1000, 5120, 7)


def _add_renewal(connection: Connection, renewal_id: str, status: str, now: str) -> None:
    connection.execute(
        text(
            "INSERT INTO renewals (id, card_id, plan_code, kind, channel, amount_minor, currency, "
            "data_quota_mb, validity_days, status, idempotency_key, request_fingerprint, "
            "created_at, updated_at) VALUES (:id, 'card-1', 'reload_10', 'reload', 'web', 1000, "
            "'MYR', 0, 30, :status, :id, 'fingerprint', :now, :now)"
        ),
        {"id": renewal_id, "status": status, "now": now},
    )


def _add_job(
    connection: Connection, kind: str, renewal_id: str, status: str, error: str | None, now: str
) -> None:
    connection.execute(
        text(
            "INSERT INTO jobs (kind, renewal_id, status, attempts, claims, next_attempt_at, "
            "first_requested_at, last_error, created_at, updated_at) VALUES (:kind, :renewal_id, "
            ":status, 0, 0, :now, :now, :error, :now, :now)"
        ),
        {"kind": kind, "renewal_id": renewal_id, "status": status, "error": error, "now": now},
    )


def test_jobs_made_before_subjects_are_about_their_renewal_and_queued_refunds_keep_their_reason(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    command.upgrade(_config(url), "0007")
    engine = create_engine(_sync_url(url))
    now = "2026-11-25 08:00:00"
    with engine.begin() as connection:
        _add_card(connection, now)
        for renewal_id in ("waiting", "staff", "refused"):
            _add_renewal(connection, renewal_id, "activating", now)
        _add_job(connection, "activate", "waiting", "queued", None, now)
        _add_job(connection, "activate", "staff", "failed", "refund: customer asked", now)
        _add_job(connection, "refund", "staff", "queued", None, now)
        _add_job(connection, "activate", "refused", "failed", "number ported out", now)
        _add_job(connection, "refund", "refused", "queued", None, now)
    command.upgrade(_config(url), "head")
    with engine.connect() as connection:
        jobs = connection.execute(
            text("SELECT subject_kind, subject_id, kind, reason FROM jobs ORDER BY id")
        ).all()
        columns = {column["name"] for column in inspect(connection).get_columns("jobs")}
        indexes = {index["name"] for index in inspect(connection).get_indexes("jobs")}
    assert [tuple(job) for job in jobs] == [
        ("renewal", "waiting", "activate", None),
        ("renewal", "staff", "activate", None),
        (
            "renewal",
            "staff",
            "refund",
            "refunded at staff request before activation: customer asked",
        ),
        ("renewal", "refused", "activate", None),
        (
            "renewal",
            "refused",
            "refund",
            "activation failed permanently (number ported out); payment refunded in full",
        ),
    ]
    assert "renewal_id" not in columns
    assert "ix_jobs_status_next_attempt_at" in indexes  # what the worker's claim uses
    with pytest.raises(IntegrityError), engine.begin() as connection:  # still one per subject
        connection.execute(
            text(
                "INSERT INTO jobs (kind, subject_kind, subject_id, status, attempts, claims, "
                "next_attempt_at, first_requested_at, created_at, updated_at) VALUES ('activate', "
                "'renewal', 'waiting', 'queued', 0, 0, :now, :now, :now, :now)"
            ),
            {"now": now},
        )
    engine.dispose()


# SQLite's reflection skips indexes on an expression (``lower(email)``), with this warning; the
# PostgreSQL run compares them.
@pytest.mark.filterwarnings(
    "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning"
)
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_the_migrated_schema_is_the_one_tables_py_describes(empty_database_url: str) -> None:
    url = empty_database_url
    command.upgrade(_config(url), "head")
    engine = create_engine(_sync_url(url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_accounts_opened_before_confirmation_existed_are_taken_as_confirmed(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    command.upgrade(_config(url), "0007")
    engine = create_engine(_sync_url(url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, email, password_hash, language, created_at) VALUES "
                "('account-1', 'aisyah@example.com', '$argon2id$x', 'en', '2026-11-25 08:00:00')"
            )
        )
    command.upgrade(_config(url), "head")
    with engine.connect() as connection:
        confirmed, created = connection.execute(
            text("SELECT confirmed_at, created_at FROM accounts WHERE id = 'account-1'")
        ).one()
    command.downgrade(_config(url), "0010")  # the revision goes back cleanly...
    command.upgrade(_config(url), "head")  # ...and the database is left as the next tests want
    engine.dispose()
    assert confirmed is not None
    assert confirmed == created
