"""Accounts, their sign-in tokens, sign-in attempts, links e-mailed to them (confirmation,
password reset), linked cards and one-time link codes.

Only keyed hashes of tokens, codes and (for sign-in attempts) e-mail and client addresses reach
these tables; passwords only as argon2id hashes. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from topup.adapters.db import tables as t
from topup.adapters.db.cards import card_from_row
from topup.domain.accounts import (
    Account,
    EmailToken,
    EmailTokenPurpose,
    LinkCode,
    LoginAttempts,
    SessionState,
)
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
        confirmed_at=m["confirmed_at"],
    )


def _email_token(row: Row[Any]) -> EmailToken:
    m = row._mapping
    return EmailToken(
        id=m["id"],
        account_id=m["account_id"],
        purpose=EmailTokenPurpose(m["purpose"]),
        token_hash=m["token_hash"],
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        password_hash=m["password_hash"],
        language=m["language"],
        used_at=m["used_at"],
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


def _attempts_over(*, now: dt.datetime, window_start: dt.datetime) -> ColumnElement[bool]:
    """A count of sign-in attempts that no longer counts: its window is over and so is its lock.
    (A lock lasts as long as a window and starts within one, so it ends after the window.)"""
    failures = t.login_failures
    return and_(
        failures.c.first_failed_at <= window_start,
        or_(failures.c.locked_until.is_(None), failures.c.locked_until <= now),
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
                confirmed_at=account.confirmed_at,
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

    async def hold_password(
        self, account_id: str, verified_hash: str, *, new_hash: str | None = None
    ) -> bool:
        """A sign-in about to issue a token: lock the account's row if its password hash is
        still the one just verified (to ``new_hash`` if given: a rehash); False if a reset
        changed it meanwhile. A reset takes the same row first, so a token is never issued
        for a password that a committed reset replaced."""
        accounts = t.accounts
        result = await self._connection.execute(
            update(accounts)
            .where(accounts.c.id == account_id, accounts.c.password_hash == verified_hash)
            .values(password_hash=new_hash or verified_hash)
        )
        return bool(result.rowcount)

    async def confirm(
        self, account_id: str, *, password_hash: str, language: str, at: dt.datetime
    ) -> bool:
        """Confirm an unconfirmed account with the password and language of the sign-up whose
        link was followed; False (nothing written) if it was confirmed already."""
        accounts = t.accounts
        result = await self._connection.execute(
            update(accounts)
            .where(accounts.c.id == account_id, accounts.c.confirmed_at.is_(None))
            .values(password_hash=password_hash, language=language, confirmed_at=at)
        )
        return bool(result.rowcount)

    async def reset_password(self, account_id: str, password_hash: str, *, at: dt.datetime) -> None:
        """A new password from a reset link; the link proved the address, so an account not
        yet confirmed is confirmed too."""
        accounts = t.accounts
        await self._connection.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                password_hash=password_hash,
                confirmed_at=func.coalesce(accounts.c.confirmed_at, at),
            )
        )

    # --- links e-mailed to an account -------------------------------------------------------

    async def add_email_token(self, token: EmailToken) -> None:
        await self._connection.execute(
            t.account_email_tokens.insert().values(
                id=token.id,
                account_id=token.account_id,
                purpose=token.purpose.value,
                token_hash=token.token_hash,
                password_hash=token.password_hash,
                language=token.language,
                expires_at=token.expires_at,
                used_at=token.used_at,
                created_at=token.created_at,
            )
        )

    async def email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose
    ) -> EmailToken | None:
        """The token with this hash and purpose, used or not, expired or not (no lock)."""
        tokens = t.account_email_tokens
        row = (
            await self._connection.execute(
                select(tokens).where(
                    tokens.c.token_hash == token_hash, tokens.c.purpose == purpose.value
                )
            )
        ).first()
        return None if row is None else _email_token(row)

    async def use_email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose, at: dt.datetime
    ) -> EmailToken | None:
        """Mark the unexpired, unused token with this hash and purpose used, in one statement
        (of concurrent uses one wins), and return it; None if there is no such token."""
        tokens = t.account_email_tokens
        result = await self._connection.execute(
            update(tokens)
            .where(
                tokens.c.token_hash == token_hash,
                tokens.c.purpose == purpose.value,
                tokens.c.used_at.is_(None),
                tokens.c.expires_at > at,
            )
            .values(used_at=at)
            .returning(*tokens.c)
        )
        row = result.first()
        return None if row is None else _email_token(row)

    async def drop_email_tokens(
        self, account_id: str, *, purpose: EmailTokenPurpose | None = None
    ) -> None:
        """The account's unused links (of ``purpose``, or all) stop working."""
        tokens = t.account_email_tokens
        condition = and_(tokens.c.account_id == account_id, tokens.c.used_at.is_(None))
        if purpose is not None:
            condition = and_(condition, tokens.c.purpose == purpose.value)
        await self._connection.execute(delete(tokens).where(condition))

    async def prune_email_tokens(self, *, expired_by: dt.datetime, limit: int) -> int:
        """Forget links, used or not, that expired by ``expired_by`` (at most ``limit``)."""
        tokens = t.account_email_tokens
        expired = (
            select(tokens.c.id)
            .where(tokens.c.expires_at <= expired_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self._connection.execute(delete(tokens).where(tokens.c.id.in_(expired)))
        return int(result.rowcount or 0)

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
                last_seen_at=created_at,
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

    async def session_of_token(self, token_hash: str, *, now: dt.datetime) -> SessionState | None:
        """The token's session, if the token is neither expired nor revoked."""
        tokens = t.access_tokens
        query = select(
            tokens.c.account_id, tokens.c.created_at, tokens.c.expires_at, tokens.c.last_seen_at
        ).where(
            tokens.c.token_hash == token_hash,
            tokens.c.revoked_at.is_(None),
            tokens.c.expires_at > now,
        )
        row = (await self._connection.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        return SessionState(
            account_id=m["account_id"],
            created_at=m["created_at"],
            expires_at=m["expires_at"],
            last_seen_at=m["last_seen_at"],
        )

    async def touch_token(
        self, token_hash: str, *, at: dt.datetime, unseen_since: dt.datetime
    ) -> None:
        """One guarded UPDATE: concurrent requests of a session write it once."""
        tokens = t.access_tokens
        await self._connection.execute(
            update(tokens)
            .where(
                tokens.c.token_hash == token_hash,
                tokens.c.revoked_at.is_(None),
                or_(tokens.c.last_seen_at.is_(None), tokens.c.last_seen_at < unseen_since),
            )
            .values(last_seen_at=at)
        )

    async def revoke_tokens_of(self, account_id: str, *, now: dt.datetime) -> int:
        """Sign every token of the account out (a password reset); how many were signed in."""
        tokens = t.access_tokens
        result = await self._connection.execute(
            update(tokens)
            .where(tokens.c.account_id == account_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount or 0)

    async def forget_dead_tokens(self, account_id: str, *, now: dt.datetime) -> None:
        """Drop the account's tokens that can no longer sign in (expired or revoked)."""
        tokens = t.access_tokens
        await self._connection.execute(
            delete(tokens).where(
                tokens.c.account_id == account_id,
                or_(tokens.c.expires_at <= now, tokens.c.revoked_at.is_not(None)),
            )
        )

    # --- sign-in attempts -------------------------------------------------------------------

    async def count_login_attempt(
        self,
        fingerprint: str,
        *,
        now: dt.datetime,
        window_start: dt.datetime,
        lock_at_attempt: int | None,
        lock_until: dt.datetime | None,
        email_key: str | None = None,
    ) -> LoginAttempts:
        """Count one sign-in attempt under ``fingerprint`` before its password is checked, in
        one statement: concurrent attempts are all counted and each learns its own number.

        A count whose window began before ``window_start`` and whose lock (if any) is over
        starts again from this attempt. The attempt numbered ``lock_at_attempt`` sets the lock
        to ``lock_until`` unless one is set; the lock is never moved. ``lock_at_attempt`` None:
        the count never locks. ``email_key``: what ``forget_login_attempts_of`` finds the row
        by."""
        failures = t.login_failures
        over = _attempts_over(now=now, window_start=window_start)
        if lock_at_attempt is None:
            first_lock = None
            locked_until: Any = case((over, None), else_=failures.c.locked_until)
        else:
            first_lock = lock_until if lock_at_attempt <= 1 else None
            locked_until = case(
                (over, literal(first_lock, failures.c.locked_until.type)),
                (
                    and_(
                        failures.c.locked_until.is_(None),
                        failures.c.failures + 1 >= lock_at_attempt,
                    ),
                    literal(lock_until, failures.c.locked_until.type),
                ),
                else_=failures.c.locked_until,
            )
        statement = (
            _insert(self._connection, failures)
            .values(
                fingerprint=fingerprint,
                failures=1,
                first_failed_at=now,
                locked_until=first_lock,
                updated_at=now,
                email_key=email_key,
            )
            .on_conflict_do_update(
                index_elements=[failures.c.fingerprint],
                set_={
                    "failures": case((over, 1), else_=failures.c.failures + 1),
                    "first_failed_at": case((over, now), else_=failures.c.first_failed_at),
                    "locked_until": locked_until,
                    "updated_at": now,
                },
            )
            .returning(failures.c.failures, failures.c.locked_until)
        )
        row = (await self._connection.execute(statement)).one()
        return LoginAttempts(attempts=int(row.failures), locked_until=row.locked_until)

    async def forget_login_attempts(self, fingerprints: Sequence[str]) -> None:
        """A successful sign-in: the attempts before it no longer count. Rows go one at a time in
        the order given, which must be the order they are counted in, so that a sign-in and a
        count never wait on each other's rows (a deadlock on PostgreSQL)."""
        failures = t.login_failures
        for fingerprint in fingerprints:
            await self._connection.execute(
                delete(failures).where(failures.c.fingerprint == fingerprint)
            )

    async def forget_login_attempts_of(self, email_key: str, fingerprints: Sequence[str]) -> None:
        """A password reset: the counts and locks of the e-mail from every address (its rows
        with ``email_key``), then those of ``fingerprints``, no longer count. The rows go in the
        order sign-in attempts count them: per address first, then the e-mail's own."""
        failures = t.login_failures
        await self._connection.execute(delete(failures).where(failures.c.email_key == email_key))
        await self.forget_login_attempts(fingerprints)

    async def prune_login_attempts(
        self, *, now: dt.datetime, window_start: dt.datetime, limit: int
    ) -> int:
        """Forget counts whose window began before ``window_start`` and whose lock, if any, is
        over (at most ``limit`` at once): the next attempt would start them afresh anyway."""
        failures = t.login_failures
        over = (
            select(failures.c.fingerprint)
            .where(_attempts_over(now=now, window_start=window_start))
            .limit(limit)
            .with_for_update(skip_locked=True)  # a sign-in is counting there: next time
        )
        result = await self._connection.execute(
            delete(failures).where(failures.c.fingerprint.in_(over))
        )
        return int(result.rowcount or 0)

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

    async def prune_link_codes(self, *, expired_by: dt.datetime, limit: int) -> int:
        """Forget codes, used or not, that expired by ``expired_by`` (at most ``limit`` at once):
        an expired code links nothing, and its absence gets the same answer."""
        codes = t.card_link_codes
        expired = (
            select(codes.c.id)
            .where(codes.c.expires_at <= expired_by)
            .limit(limit)
            .with_for_update(skip_locked=True)  # being tried right now: next time
        )
        result = await self._connection.execute(delete(codes).where(codes.c.id.in_(expired)))
        return int(result.rowcount or 0)
