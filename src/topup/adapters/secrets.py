"""Encryption at rest for gateway tokens (never stored in clear)."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from topup.domain.errors import InvariantError


class TokenVault:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as error:
            raise InvariantError("TOPUP_SECRET_KEY is not a valid Fernet key") from error
        self._fingerprint_key = hashlib.sha256(b"instrument-fingerprint:" + key.encode()).digest()

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def fingerprint(self, token: str) -> str:
        """The same token always gives the same fingerprint; the fingerprint gives nothing back."""
        return hmac.new(self._fingerprint_key, token.encode(), hashlib.sha256).hexdigest()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as error:
            raise InvariantError(
                "a stored gateway token cannot be decrypted with this key"
            ) from error
