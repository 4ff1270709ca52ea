"""A sandbox SMS provider: it takes its time, sometimes fails, and delivers to files, not phones.

- Each ``send`` waits ``latency_s`` (as a provider's HTTP call would), then fails for a fraction
  ``failure_rate`` of messages (drawn from a generator seeded with ``seed``) with the retryable
  error ``sms_unavailable``, as a provider that is down or throttling would.
- A message sent with an ``idempotency_key`` (a reminder's delivery id) is sent once: the same
  key again sends nothing (the last ``keys_max`` keys are remembered), as a provider that takes
  idempotency keys would; ``duplicates`` counts the sends it so dropped. With an outbox, the keys
  are also files in ``<outbox>.keys/`` (made with O_EXCL), so processes sharing the outbox (two
  workers) share them too.
- A message sent is kept in memory (the last ``kept_max``; tests read codes from there, see
  ``last_to``) and appended as one JSON line to ``outbox`` when one is given, so that a demo
  user can read the code "their phone" received (``topup sandbox-sms``). The outbox plays the
  subscriber's phone: it holds the texts as sent, codes included, and is created mode 0600.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from topup.adapters.private_files import make_private_directory
from topup.domain.errors import InvariantError, TopupError

KEPT_MAX = 100  # messages remembered in memory
KEYS_MAX = 100_000  # idempotency keys remembered in memory
KEY_LENGTH_MAX = 64
TEXT_LENGTH_MAX = 480  # a few concatenated SMS segments; a longer text is our bug
MSISDN_DIGITS_MAX = 15  # E.164


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class SentSms:
    msisdn: str
    text: str
    sent_at: str  # ISO 8601, UTC

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


class SandboxSms:
    """An SmsSender for tests and demos. See the module docstring."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        outbox: Path | str | None = None,
        kept_max: int = KEPT_MAX,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must not be negative")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate}")
        if kept_max < 1:
            raise ValueError("kept_max must be at least 1")
        self._latency_s = latency_s
        self._failure_rate = failure_rate
        self._random = random.Random(seed)
        self._outbox = Path(outbox) if outbox else None
        self._clock = clock
        self._sent: deque[SentSms] = deque(maxlen=kept_max)
        self._keys: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first
        self.duplicates = 0
        self.accepted = 0

    @property
    def outbox(self) -> Path | None:
        return self._outbox

    async def send(self, msisdn: str, text: str, *, idempotency_key: str | None = None) -> None:
        digits = msisdn[1:]
        if (
            not (msisdn.startswith("+") and digits.isascii() and digits.isdigit())
            or len(digits) > MSISDN_DIGITS_MAX
        ):
            raise InvariantError("an SMS goes to an MSISDN in E.164 form")
        if not text or len(text) > TEXT_LENGTH_MAX:
            raise InvariantError(f"an SMS text has 1 to {TEXT_LENGTH_MAX} characters")
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if self._failure_rate and self._random.random() < self._failure_rate:
            raise TopupError(
                "the sandbox SMS provider is unavailable (injected failure)",
                code="sms_unavailable",
                retryable=True,
            )
        if idempotency_key is not None and not await self._first_send(idempotency_key):
            self.duplicates += 1
            return  # sent already: a provider answers the first send's result again
        message = SentSms(msisdn=msisdn, text=text, sent_at=self._clock().isoformat())
        self.accepted += 1
        self._sent.append(message)
        if self._outbox is not None:
            await asyncio.to_thread(self._append, message)

    async def _first_send(self, key: str) -> bool:
        """Whether no message was sent with ``key`` yet (and remember it). With an outbox, the
        keys are files beside it, made with O_EXCL: every process sending through the same
        outbox sees them, as every client of one provider would."""
        if not key.replace("-", "").isalnum() or len(key) > KEY_LENGTH_MAX:
            raise InvariantError("an idempotency key is letters, digits and '-'")
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > KEYS_MAX:
            del self._keys[next(iter(self._keys))]
        if self._outbox is None:
            return True
        return await asyncio.to_thread(self._claim_key_file, key)

    def _claim_key_file(self, key: str) -> bool:
        if self._outbox is None:
            return True
        folder = self._outbox.parent / (self._outbox.name + ".keys")
        make_private_directory(folder)
        try:
            os.close(os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True

    def _append(self, message: SentSms) -> None:
        """One ``write`` of one whole line: concurrent senders never interleave inside a line."""
        if self._outbox is None:
            return
        make_private_directory(self._outbox.parent)
        descriptor = os.open(self._outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            line = (message.to_json() + "\n").encode()
            written = os.write(descriptor, line)
            if written != len(line):
                raise OSError(f"short write to {self._outbox}: {written} of {len(line)} bytes")
        finally:
            os.close(descriptor)

    def sent(self) -> list[SentSms]:
        """The messages kept in memory, oldest first."""
        return list(self._sent)

    def last_to(self, msisdn: str) -> SentSms | None:
        """The last message sent to this number, if still kept."""
        for message in reversed(self._sent):
            if message.msisdn == msisdn:
                return message
        return None


def read_outbox(path: Path, *, last: int) -> list[SentSms]:
    """The last ``last`` messages of an outbox file (none if it does not exist yet)."""
    if not path.exists():
        return []
    kept: deque[SentSms] = deque(maxlen=max(1, last))
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                kept.append(SentSms(str(data["msisdn"]), str(data["text"]), str(data["sent_at"])))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
    return list(kept)
