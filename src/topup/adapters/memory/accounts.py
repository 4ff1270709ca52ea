"""Accounts, access tokens, sign-in attempt counts, linked cards and link codes, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import AccessToken, LoginCount, Tables, unique_violation
from topup.domain.accounts import (
    Account,
    EmailToken,
    EmailTokenPurpose,
    LinkCode,
    LoginAttempts,
    SessionState,
)
from topup.domain.cards import Card


class MemoryAccountRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def add(self, account: Account) -> bool:
        accounts = self._tables.accounts
        if any(other.email == account.email for other in accounts.values()):
            return False  # ON CONFLICT (email) DO NOTHING
        if account.id in accounts:
            raise unique_violation("accounts", account.id)
        accounts[account.id] = account
        return True

    async def get(self, account_id: str) -> Account | None:
        return self._tables.accounts.get(account_id)

    async def by_email(self, email: str) -> Account | None:
        return next((a for a in self._tables.accounts.values() if a.email == email), None)

    async def hold_password(
        self, account_id: str, verified_hash: str, *, new_hash: str | None = None
    ) -> bool:
        account = self._tables.accounts.get(account_id)
        if account is None or account.password_hash != verified_hash:
            return False
        self._tables.accounts[account_id] = replace(
            account, password_hash=new_hash or verified_hash
        )
        return True

    async def confirm(
        self, account_id: str, *, password_hash: str, language: str, at: dt.datetime
    ) -> bool:
        account = self._tables.accounts.get(account_id)
        if account is None or account.confirmed_at is not None:
            return False
        self._tables.accounts[account_id] = replace(
            account, password_hash=password_hash, language=language, confirmed_at=at
        )
        return True

    async def reset_password(self, account_id: str, password_hash: str, *, at: dt.datetime) -> None:
        account = self._tables.accounts.get(account_id)
        if account is not None:
            self._tables.accounts[account_id] = replace(
                account, password_hash=password_hash, confirmed_at=account.confirmed_at or at
            )

    async def add_email_token(self, token: EmailToken) -> None:
        tokens = self._tables.email_tokens
        if token.account_id not in self._tables.accounts:
            raise unique_violation(
                "account_email_tokens.account_id (foreign key)", token.account_id
            )
        if token.id in tokens or any(t.token_hash == token.token_hash for t in tokens.values()):
            raise unique_violation("account_email_tokens", token.id)
        tokens[token.id] = token

    async def email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose
    ) -> EmailToken | None:
        return next(
            (
                token
                for token in self._tables.email_tokens.values()
                if token.token_hash == token_hash and token.purpose is purpose
            ),
            None,
        )

    async def use_email_token(
        self, token_hash: str, *, purpose: EmailTokenPurpose, at: dt.datetime
    ) -> EmailToken | None:
        found = await self.email_token(token_hash, purpose=purpose)
        if found is None or found.used_at is not None or found.expires_at <= at:
            return None
        used = replace(found, used_at=at)
        self._tables.email_tokens[found.id] = used
        return used

    async def drop_email_tokens(
        self, account_id: str, *, purpose: EmailTokenPurpose | None = None
    ) -> None:
        tokens = self._tables.email_tokens
        for token in list(tokens.values()):
            if (
                token.account_id == account_id
                and token.used_at is None
                and (purpose is None or token.purpose is purpose)
            ):
                del tokens[token.id]

    async def prune_email_tokens(self, *, expired_by: dt.datetime, limit: int) -> int:
        tokens = self._tables.email_tokens
        expired = [key for key, token in tokens.items() if token.expires_at <= expired_by][:limit]
        for key in expired:
            del tokens[key]
        return len(expired)

    async def revoke_tokens_of(self, account_id: str, *, now: dt.datetime) -> int:
        tokens = self._tables.access_tokens
        signed_in = [
            token
            for token in tokens.values()
            if token.account_id == account_id and token.revoked_at is None
        ]
        for token in signed_in:
            tokens[token.id] = replace(token, revoked_at=now)
        return len(signed_in)

    async def forget_login_attempts_of(self, email_key: str, fingerprints: Sequence[str]) -> None:
        counts = self._tables.login_counts
        for key in [key for key, count in counts.items() if count.email_key == email_key]:
            del counts[key]
        await self.forget_login_attempts(fingerprints)

    async def add_token(
        self,
        *,
        token_id: str,
        account_id: str,
        token_hash: str,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        tokens = self._tables.access_tokens
        if account_id not in self._tables.accounts:
            raise unique_violation("access_tokens.account_id (foreign key)", account_id)
        if token_id in tokens or any(t.token_hash == token_hash for t in tokens.values()):
            raise unique_violation("access_tokens", token_id)
        tokens[token_id] = AccessToken(
            token_id, account_id, token_hash, created_at, expires_at, None, created_at
        )

    async def account_of_token(self, token_hash: str, *, now: dt.datetime) -> str | None:
        for token in self._tables.access_tokens.values():
            if token.token_hash == token_hash and token.revoked_at is None:
                return token.account_id if token.expires_at > now else None
        return None

    async def session_of_token(self, token_hash: str, *, now: dt.datetime) -> SessionState | None:
        for token in self._tables.access_tokens.values():
            if token.token_hash == token_hash and token.revoked_at is None:
                if token.expires_at <= now:
                    return None
                return SessionState(
                    token.account_id, token.created_at, token.expires_at, token.last_seen_at
                )
        return None

    async def touch_token(
        self, token_hash: str, *, at: dt.datetime, unseen_since: dt.datetime
    ) -> None:
        tokens = self._tables.access_tokens
        for token in tokens.values():
            if token.token_hash == token_hash and token.revoked_at is None:
                if token.last_seen_at is None or token.last_seen_at < unseen_since:
                    tokens[token.id] = replace(token, last_seen_at=at)
                return

    async def revoke_token(self, token_hash: str, *, now: dt.datetime) -> bool:
        tokens = self._tables.access_tokens
        for token in tokens.values():
            if token.token_hash == token_hash and token.revoked_at is None:
                tokens[token.id] = replace(token, revoked_at=now)
                return True
        return False

    async def forget_dead_tokens(self, account_id: str, *, now: dt.datetime) -> None:
        tokens = self._tables.access_tokens
        for token in list(tokens.values()):
            if token.account_id == account_id and (
                token.expires_at <= now or token.revoked_at is not None
            ):
                del tokens[token.id]

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
        """As ``adapters.db.accounts``: a count over (window and lock ended) starts again."""
        first_lock = lock_until if lock_at_attempt is not None and lock_at_attempt <= 1 else None
        found = self._tables.login_counts.get(fingerprint)
        if found is None or _over(found, now=now, window_start=window_start):
            counted = LoginCount(LoginAttempts(1, first_lock), now, email_key)
        else:
            attempts, locked_until = found.attempts.attempts, found.attempts.locked_until
            if (
                lock_at_attempt is not None
                and locked_until is None
                and attempts + 1 >= lock_at_attempt
            ):
                locked_until = lock_until
            counted = LoginCount(
                LoginAttempts(attempts + 1, locked_until), found.first_failed_at, found.email_key
            )
        self._tables.login_counts[fingerprint] = counted
        return counted.attempts

    async def forget_login_attempts(self, fingerprints: Sequence[str]) -> None:
        for fingerprint in fingerprints:
            self._tables.login_counts.pop(fingerprint, None)

    async def prune_login_attempts(
        self, *, now: dt.datetime, window_start: dt.datetime, limit: int
    ) -> int:
        counts = self._tables.login_counts
        over = [
            key for key, count in counts.items() if _over(count, now=now, window_start=window_start)
        ]
        for key in over[:limit]:
            del counts[key]
        return len(over[:limit])

    async def owns_card(self, account_id: str, card_id: str) -> bool:
        return (account_id, card_id) in self._tables.card_links

    async def link_card(self, account_id: str, card_id: str, *, at: dt.datetime) -> None:
        self._tables.require_card(card_id)
        self._tables.card_links.setdefault((account_id, card_id), at)

    async def linked_cards(self, account_id: str, *, limit: int) -> list[Card]:
        links = sorted(
            (at, card_id)
            for (owner, card_id), at in self._tables.card_links.items()
            if owner == account_id
        )
        return [self._tables.cards[card_id] for _, card_id in links[:limit]]

    async def replace_link_code(self, code: LinkCode, *, created_at: dt.datetime) -> None:
        codes = self._tables.link_codes
        for code_id, (other, _) in list(codes.items()):
            same = (other.account_id, other.card_id) == (code.account_id, code.card_id)
            if same and other.used_at is None:
                del codes[code_id]
        if code.id in codes:
            raise unique_violation("card_link_codes", code.id)
        codes[code.id] = (code, created_at)

    async def pending_link_code(self, account_id: str, card_id: str) -> LinkCode | None:
        pending = sorted(
            ((created_at, code.id), code)
            for code, created_at in self._tables.link_codes.values()
            if (code.account_id, code.card_id) == (account_id, card_id) and code.used_at is None
        )
        return pending[-1][1] if pending else None

    async def spend_link_attempt(self, code_id: str, *, attempts_max: int) -> int | None:
        found = self._tables.link_codes.get(code_id)
        if found is None or found[0].used_at is not None or found[0].attempts >= attempts_max:
            return None
        code = replace(found[0], attempts=found[0].attempts + 1)
        self._tables.link_codes[code_id] = (code, found[1])
        return code.attempts

    async def use_link_code(self, code_id: str, *, at: dt.datetime) -> bool:
        found = self._tables.link_codes.get(code_id)
        if found is None or found[0].used_at is not None:
            return False
        self._tables.link_codes[code_id] = (replace(found[0], used_at=at), found[1])
        return True

    async def prune_link_codes(self, *, expired_by: dt.datetime, limit: int) -> int:
        codes = self._tables.link_codes
        expired = [key for key, (code, _) in codes.items() if code.expires_at <= expired_by]
        for key in expired[:limit]:
            del codes[key]
        return len(expired[:limit])


def _over(count: LoginCount, *, now: dt.datetime, window_start: dt.datetime) -> bool:
    locked_until = count.attempts.locked_until
    return count.first_failed_at <= window_start and (locked_until is None or locked_until <= now)
