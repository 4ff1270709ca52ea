"""A sandbox SMS provider: it takes its time, sometimes fails, and delivers to files, not phones.

- Each ``send`` waits ``latency_s`` (as a provider's HTTP call would), then fails for a fraction
  ``failure_rate`` of messages (drawn from a generator seeded with ``seed``) with the retryable
  error ``sms_unavailable``, as a provider that is down or throttling would.
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

    @property
    def outbox(self) -> Path | None:
        return self._outbox

    async def send(self, msisdn: str, text: str) -> None:
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
        message = SentSms(msisdn=msisdn, text=text, sent_at=self._clock().isoformat())
        self._sent.append(message)
        if self._outbox is not None:
            await asyncio.to_thread(self._append, message)

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
