"""Mailers that keep the messages instead of sending them: the fakes of the ``Mailer`` port.

``OutboxMailer`` writes each message as an ``.eml`` file into a directory (``var/outbox/`` in the
demo, ``TOPUP_MAIL_OUTBOX``), which any mail program opens; ``MemoryMailer`` keeps them in memory
for tests, and can be told to fail as a mail server that is down would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from topup.adapters.notify.smtp import compose, mail_unavailable
from topup.adapters.private_files import make_private_directory, write_private_file

OUTBOX_FILES_MAX = 1_000  # the oldest messages are deleted beyond this many
MEMORY_MESSAGES_MAX = 1_000  # the oldest are forgotten beyond this many
WAIT_FOR_MAIL_S = 5.0  # how long ``MemoryMailer.wait_for`` waits by default


@dataclass(frozen=True, slots=True)
class SentMail:
    recipient: str
    subject: str
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


class OutboxMailer:
    """Writes ``<UTC time>-<random>.eml`` files into ``directory`` (made on first use)."""

    def __init__(
        self,
        directory: Path,
        *,
        sender: str,
        clock: Callable[[], dt.datetime],
        files_max: int = OUTBOX_FILES_MAX,
    ) -> None:
        self.directory = directory
        self.sender = sender
        self._clock = clock
        self._files_max = files_max

    async def send(
        self,
        recipient: str,
        subject: str,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        at = self._clock()
        message = compose(
            sender=self.sender,
            recipient=recipient,
            subject=subject,
            body=body,
            at=at,
            headers=headers,
        )
        name = f"{at.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"
        try:
            await asyncio.to_thread(self._write, name, message.as_bytes())
        except OSError as error:
            raise mail_unavailable(type(error).__name__) from error

    def _write(self, name: str, content: bytes) -> None:
        make_private_directory(self.directory)
        partial = self.directory / f".{name}.partial"
        write_private_file(partial, content)  # the messages carry codes and links: 0600
        os.replace(partial, self.directory / name)  # a reader never sees half a message
        written = sorted(self.directory.glob("*.eml"))
        for old in written[: max(0, len(written) - self._files_max)]:
            old.unlink(missing_ok=True)


class MemoryMailer:
    """Keeps what it is given in ``sent``; ``failing = True`` makes it refuse like a server that
    is down (a retryable ``mail_unavailable``)."""

    def __init__(self, *, messages_max: int = MEMORY_MESSAGES_MAX) -> None:
        self.sent: deque[SentMail] = deque(maxlen=messages_max)
        self.failing = False
        self._arrived = asyncio.Event()

    async def send(
        self,
        recipient: str,
        subject: str,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.failing:
            raise mail_unavailable("the test mail server is down")
        self.sent.append(SentMail(recipient, subject, body, dict(headers or {})))
        self._arrived.set()

    def to(self, recipient: str) -> list[SentMail]:
        return [mail for mail in self.sent if mail.recipient == recipient]

    async def wait_for(self, count: int, *, timeout_s: float = WAIT_FOR_MAIL_S) -> list[SentMail]:
        """Every message once at least ``count`` have arrived; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while len(self.sent) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.sent)
