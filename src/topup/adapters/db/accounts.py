"""Accounts, their sign-in tokens, failed sign-ins, linked cards and one-time link codes.

Only keyed hashes of tokens, codes and (for failed sign-ins) e-mail addresses reach these tables;
passwords only as argon2id hashes. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Row, Table, case, delete, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.repositories import card_from_row
from topup.domain.accounts import Account, LinkCode
from topup.domain.cards import Card


def _insert(connection: AsyncConnection, table: Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _account(row: Row[Any]) -> Account:
    m = row._mapping
    return Account(
        id=m["id"],
        email=m["email"],
        password_hash=m["password_hash"],
        language=m["language"],
        created_at=m["created_at"],
    )


def _link_code(row: Row[Any]) -> LinkCode:
    m = row._mapping
    return LinkCode(
        id=m["id"],
        account_id=m["account_id"],
        card_id=m["card_id"],
        code_hash=m["code_hash"],
        attempts=int(m["attempts"]),
        expires_at=m["expires_at"],
        used_at=m["used_at"],
    )


class AccountRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # --- accounts ---------------------------------------------------------------------------

    async def add(self, account: Account) -> bool:
        """Insert the account; False (and nothing written) if its e-mail is taken."""
        statement = (
            _insert(self._connection, t.accounts)
            .values(
                id=account.id,
                email=account.email,
                password_hash=account.password_hash,
                language=account.language,
                created_at=account.created_at,
            )
            .on_conflict_do_nothing(index_elements=[t.accounts.c.email])
            .returning(t.accounts.c.id)
        )
        return (await self._connection.execute(statement)).first() is not None

    async def get(self, account_id: str) -> Account | None:
        query = select(t.accounts).where(t.accounts.c.id == account_id)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _account(row)

    async def by_email(self, email: str) -> Account | None:
        query = select(t.accounts).where(t.accounts.c.email == email)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _account(row)

    async def set_password_hash(self, account_id: str, password_hash: str) -> None:
        await self._connection.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .values(password_hash=password_hash)
        )

    # --- sign-in tokens ---------------------------------------------------------------------

    async def add_token(
        self,
        *,
        token_id: str,
        account_id: str,
        token_hash: str,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        await self._connection.execute(
            t.access_tokens.insert().values(
                id=token_id,
                account_id=account_id,
                token_hash=token_hash,
                created_at=created_at,
                expires_at=expires_at,
                revoked_at=None,
            )
        )

    async def account_of_token(self, token_hash: str, *, now: dt.datetime) -> str | None:
        """The account a token signs in, if the token is neither expired nor revoked."""
        tokens = t.access_tokens
        query = select(tokens.c.account_id).where(
            tokens.c.token_hash == token_hash,
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at > now,
        )
        found: str | None = (await self._connection.execute(query)).scalar_one_or_none()
        return found

    async def revoke_token(self, token_hash: str, *, now: dt.datetime) -> bool:
        """Sign a token out; False if it was not signed in."""
        tokens = t.access_tokens
        result = await self._connection.execute(
            update(tokens)
            .where(tokens.c.token_hash == token_hash, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)

    async def forget_dead_tokens(self, account_id: str, *, now: dt.datetime) -> None:
        """Drop the account's tokens that can no longer sign in (expired or revoked)."""
        tokens = t.access_tokens
        await self._connection.execute(
            delete(tokens).where(
                tokens.c.account_id == account_id,
                or_(tokens.c.expires_at <= now, tokens.c.revoked_at.is_not(None)),
            )
        )

    # --- failed sign-ins --------------------------------------------------------------------

    async def login_locked_until(
        self, email_fingerprint: str, *, now: dt.datetime
    ) -> dt.datetime | None:
        """When the lock on this e-mail ends, if it is locked at ``now``."""
        failures = t.login_failures
        query = select(failures.c.locked_until).where(
            failures.c.email_fingerprint == email_fingerprint, failures.c.locked_until > now
        )
        found: dt.datetime | None = (await self._connection.execute(query)).scalar_one_or_none()
        return found

    async def count_login_failure(
        self, email_fingerprint: str, *, now: dt.datetime, window_start: dt.datetime
    ) -> int:
        """Add one failed sign-in; returns the failures since ``window_start``, this one
        included. Older failures, and those before a lock that has ended, are forgotten, so a
        new count starts after every lock. Concurrent failures are all counted."""
        failures = t.login_failures
        statement = _insert(self._connection, failures).values(
            email_fingerprint=email_fingerprint,
            failures=1,
            first_failed_at=now,
            locked_until=None,
            updated_at=now,
        )
        stale = or_(failures.c.first_failed_at <= window_start, failures.c.locked_until <= now)
        statement = statement.on_conflict_do_update(
            index_elements=[failures.c.email_fingerprint],
            set_={
                "failures": case((stale, 1), else_=failures.c.failures + 1),
                "first_failed_at": case((stale, now), else_=failures.c.first_failed_at),
                "locked_until": case((stale, None), else_=failures.c.locked_until),
                "updated_at": now,
            },
        ).returning(failures.c.failures)
        return int((await self._connection.execute(statement)).scalar_one())

    async def lock_login(
        self, email_fingerprint: str, *, until: dt.datetime, now: dt.datetime
    ) -> None:
        failures = t.login_failures
        await self._connection.execute(
            update(failures)
            .where(failures.c.email_fingerprint == email_fingerprint)
            .values(locked_until=until, updated_at=now)
        )

    async def forget_login_failures(self, email_fingerprint: str) -> None:
        """A successful sign-in: the failures before it no longer count."""
        failures = t.login_failures
        await self._connection.execute(
            delete(failures).where(failures.c.email_fingerprint == email_fingerprint)
        )

    # --- linked cards -----------------------------------------------------------------------

    async def owns_card(self, account_id: str, card_id: str) -> bool:
        """Whether the account has linked this card (object-level authorisation)."""
        links = t.card_links
        query = select(exists().where(links.c.account_id == account_id, links.c.card_id == card_id))
        return bool((await self._connection.execute(query)).scalar())

    async def link_card(self, account_id: str, card_id: str, *, at: dt.datetime) -> None:
        """Link the card to the account; linking it again changes nothing."""
        statement = (
            _insert(self._connection, t.card_links)
            .values(account_id=account_id, card_id=card_id, linked_at=at)
            .on_conflict_do_nothing(
                index_elements=[t.card_links.c.account_id, t.card_links.c.card_id]
            )
        )
        await self._connection.execute(statement)

    async def linked_cards(self, account_id: str, *, limit: int) -> list[Card]:
        """The account's cards, in the order they were linked."""
        links = t.card_links
        query = (
            select(t.cards)
            .join(links, links.c.card_id == t.cards.c.id)
            .where(links.c.account_id == account_id)
            .order_by(links.c.linked_at, t.cards.c.id)
            .limit(limit)
        )
        return [card_from_row(row) for row in await self._connection.execute(query)]

    # --- one-time link codes ----------------------------------------------------------------

    async def replace_link_code(self, code: LinkCode, *, created_at: dt.datetime) -> None:
        """Store a new code for (account, card); the unused ones sent before stop working."""
        codes = t.card_link_codes
        await self._connection.execute(
            delete(codes).where(
                codes.c.account_id == code.account_id,
                codes.c.card_id == code.card_id,
                codes.c.used_at.is_(None),
            )
        )
        await self._connection.execute(
            codes.insert().values(
                id=code.id,
                account_id=code.account_id,
                card_id=code.card_id,
                code_hash=code.code_hash,
                attempts=code.attempts,
                expires_at=code.expires_at,
                used_at=code.used_at,
                created_at=created_at,
            )
        )

    async def pending_link_code(self, account_id: str, card_id: str) -> LinkCode | None:
        """The unused code last sent to link this card to this account, expired or not."""
        codes = t.card_link_codes
        query = (
            select(codes)
            .where(
                codes.c.account_id == account_id,
                codes.c.card_id == card_id,
                codes.c.used_at.is_(None),
            )
            .order_by(codes.c.created_at.desc(), codes.c.id.desc())
            .limit(1)
        )
        row = (await self._connection.execute(query)).first()
        return None if row is None else _link_code(row)

    async def spend_link_attempt(self, code_id: str, *, attempts_max: int) -> int | None:
        """Count one attempt at the code; returns the attempts made, this one included, or None
        when none is left (or the code was used meanwhile). Concurrent attempts are all
        counted, so no more than ``attempts_max`` are ever compared."""
        codes = t.card_link_codes
        result = await self._connection.execute(
            update(codes)
            .where(
                codes.c.id == code_id,
                codes.c.used_at.is_(None),
                codes.c.attempts < attempts_max,
            )
            .values(attempts=codes.c.attempts + 1)
            .returning(codes.c.attempts)
        )
        found = result.scalar_one_or_none()
        return None if found is None else int(found)

    async def use_link_code(self, code_id: str, *, at: dt.datetime) -> bool:
        """Mark the code used; False if it already was (it links once)."""
        codes = t.card_link_codes
        result = await self._connection.execute(
            update(codes).where(codes.c.id == code_id, codes.c.used_at.is_(None)).values(used_at=at)
        )
        return bool(result.rowcount)
