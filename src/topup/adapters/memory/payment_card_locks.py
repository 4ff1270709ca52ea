"""Payment-password attempt counts and locks per payment card, in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from topup.adapters.memory.tables import Tables, WrongAnswers


class MemoryPaymentCardLockRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def locked(
        self, fingerprints: Sequence[str], *, now: dt.datetime
    ) -> dict[str, dt.datetime]:
        found = {}
        for fingerprint in set(fingerprints):
            answers = self._tables.wrong_answers.get(fingerprint)
            until = None if answers is None else answers.locked_until
            if until is not None and until > now:
                found[fingerprint] = until
        return found

    async def count_wrong_answer(
        self, fingerprint: str, *, now: dt.datetime, window_start: dt.datetime
    ) -> int:
        answers = self._tables.wrong_answers.get(fingerprint)
        if answers is None:
            counted = WrongAnswers(1, now, None)
        elif answers.first_failed_at < window_start:
            counted = replace(answers, failed_attempts=1, first_failed_at=now)
        else:
            counted = replace(answers, failed_attempts=answers.failed_attempts + 1)
        self._tables.wrong_answers[fingerprint] = counted
        return counted.failed_attempts

    async def lock(self, fingerprint: str, *, until: dt.datetime, now: dt.datetime) -> None:
        answers = self._tables.wrong_answers.get(fingerprint)
        if answers is not None:
            self._tables.wrong_answers[fingerprint] = replace(answers, locked_until=until)

    async def forget(self, fingerprint: str) -> None:
        self._tables.wrong_answers.pop(fingerprint, None)
