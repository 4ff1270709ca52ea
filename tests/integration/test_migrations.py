"""Migrations upgrade a database that already holds data, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

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
    command.downgrade(_config(url), "0010")
    engine.dispose()
    assert confirmed is not None
    assert confirmed == created
