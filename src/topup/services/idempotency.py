"""Idempotent HTTP requests, as Stripe documents them.

The first request with a key (per caller) runs; its response, errors included, is stored
(encrypted with the server's key: it carries the renewal's client secret) and replayed byte for byte for ``idempotency_replay_s`` (24 h). The same key with another body is
``idempotency_key_reused``; while the first still runs, ``idempotency_key_in_use``. A request that
ends in a failure worth retrying (a retryable error, a crash) stores nothing and leaves the key
open: the retry runs again under the same record id, which the service itself is given as its
idempotency key, so whatever the first attempt did is found again, never done twice.

Records are written in group-committed batches (``services.batching``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from topup.domain.errors import ConflictError, InputError
from topup.services.batching import Batcher
from topup.services.context import Services

KEY_LENGTH_MAX = 255
RUNNING = "running"
OPEN = "open"
DONE = "done"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """A request that may run: under ``request_id``, the key its service call is given."""

    request_id: str


@dataclass(frozen=True, slots=True)
class _Begin:
    scope: str
    key: str
    fingerprint: str
    request_id: str


@dataclass(frozen=True, slots=True)
class _Finish:
    request_id: str
    response: StoredResponse | None  # None: store nothing, leave the key open


def check_key(key: str | None) -> str:
    if key is None:
        raise InputError(
            "this request needs an Idempotency-Key header",
            code="idempotency_key_required",
            field="Idempotency-Key",
        )
    if not key.strip() or len(key) > KEY_LENGTH_MAX or not key.isascii() or not key.isprintable():
        raise InputError(
            f"an idempotency key is 1 to {KEY_LENGTH_MAX} printable characters",
            code="idempotency_key_invalid",
            field="Idempotency-Key",
            params={"length_max": str(KEY_LENGTH_MAX)},
        )
    return key


async def begin(
    services: Services, *, scope: str, key: str, fingerprint: str
) -> Claim | StoredResponse:
    """Claim ``key`` for this request, or the stored response to replay."""
    item = _Begin(scope, check_key(key), fingerprint, services.new_id())
    return await _beginning(services).submit(item)


async def finish(services: Services, claim: Claim, response: StoredResponse | None) -> None:
    """Store the response to replay (``None``: the request may be run again)."""
    await _finishing(services).submit(_Finish(claim.request_id, response))


def _beginning(services: Services) -> Batcher[_Begin, Claim | StoredResponse]:
    return services.batcher(
        "idempotency_begin", _begin_all, key=lambda item: (item.scope, item.key)
    )


def _finishing(services: Services) -> Batcher[_Finish, None]:
    return services.batcher("idempotency_finish", _finish_all, key=lambda item: item.request_id)


async def _begin_all(
    services: Services, items: list[_Begin]
) -> list[Claim | StoredResponse | Exception]:
    now = services.clock.now()
    limits = services.limits
    replay_from = now - dt.timedelta(seconds=limits.idempotency.idempotency_replay_s)
    lease_from = now - dt.timedelta(seconds=limits.idempotency.idempotency_lease_s)
    async with services.unit_of_work() as uow:
        inserted = await uow.idempotency.add_many(
            sorted(
                (
                    {
                        "id": item.request_id,
                        "scope": item.scope,
                        "key": item.key,
                        "fingerprint": item.fingerprint,
                        "state": RUNNING,
                        "created_at": now,
                        "started_at": now,
                    }
                    for item in items
                ),
                key=lambda row: (row["scope"], row["key"]),
            )
        )
        taken = [(item.scope, item.key) for item in items if item.request_id not in inserted]
        existing = await uow.idempotency.by_keys(taken, for_update=True)
        outcomes: list[Claim | StoredResponse | Exception] = []
        for item in items:
            if item.request_id in inserted:
                outcomes.append(Claim(item.request_id))
                continue
            found = existing.get((item.scope, item.key))
            if found is None:  # taken and forgotten in between: rare; the caller retries
                outcomes.append(_in_use())
                continue
            outcome = _decide(item, found, replay_from=replay_from, lease_from=lease_from)
            if isinstance(outcome, StoredResponse):  # kept sealed: it holds a client secret
                body = services.tokens.open(outcome.body.decode()).encode()
                outcome = StoredResponse(outcome.status_code, outcome.content_type, body)
            if isinstance(outcome, Claim):
                restart: dict[str, Any] = {
                    "state": RUNNING,
                    "fingerprint": item.fingerprint,
                    "started_at": now,
                }
                if found["created_at"] <= replay_from:  # a new request under an old key
                    restart |= {"id": item.request_id, "created_at": now}
                    outcome = Claim(item.request_id)
                await uow.idempotency.restart(found["id"], restart)
            outcomes.append(outcome)
        await uow.commit()
    return outcomes


def _decide(
    item: _Begin, found: dict[str, Any], *, replay_from: dt.datetime, lease_from: dt.datetime
) -> Claim | StoredResponse | Exception:
    if found["id"] == item.request_id:  # this very request, its batch retried after a commit
        return Claim(found["id"])
    if found["created_at"] <= replay_from:
        return Claim(found["id"])  # replaced by the caller with a new record
    if found["fingerprint"] != item.fingerprint and found["state"] != OPEN:
        return ConflictError(
            "this idempotency key was already used with a different request",
            code="idempotency_key_reused",
            field="Idempotency-Key",
        )
    if found["state"] == DONE:
        return StoredResponse(found["status_code"], found["content_type"], bytes(found["body"]))
    if found["state"] == RUNNING and found["started_at"] > lease_from:
        return _in_use()
    return Claim(found["id"])  # open, or its server died while running it


def _in_use() -> ConflictError:
    return ConflictError(
        "a request with this idempotency key is still being processed; try again shortly",
        code="idempotency_key_in_use",
        retryable=True,
        field="Idempotency-Key",
    )


async def _finish_all(services: Services, items: list[_Finish]) -> list[Exception | None]:
    rows = [
        {
            "request_id": item.request_id,
            "state": OPEN if item.response is None else DONE,
            "status_code": None if item.response is None else item.response.status_code,
            "content_type": None if item.response is None else item.response.content_type,
            "body": None
            if item.response is None
            else services.tokens.seal(item.response.body.decode()).encode(),
        }
        for item in sorted(items, key=lambda item: item.request_id)
    ]
    async with services.unit_of_work() as uow:
        await uow.idempotency.finish_many(rows)
        await uow.commit()
    return [None] * len(items)


async def prune(services: Services, *, limit: int) -> int:
    """Forget records past their replay time (the worker calls this)."""
    cutoff = services.clock.now() - dt.timedelta(
        seconds=services.limits.idempotency.idempotency_replay_s
    )
    async with services.unit_of_work() as uow:
        forgotten: int = await uow.idempotency.prune(created_before=cutoff, limit=limit)
        await uow.commit()
    return forgotten
