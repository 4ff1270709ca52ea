"""Idempotent requests: the first response to a (caller, ``Idempotency-Key``) is stored and
replayed byte for byte (``Idempotent-Replayed: true``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.responses import Response

from topup.domain.callers import Caller
from topup.domain.errors import InputError, NotFoundError, TopupError
from topup.entrypoints.http.problems import problem_response
from topup.services import idempotency
from topup.services.context import Services

JSON = "application/json"


async def run_idempotently(
    services: Services,
    *,
    caller: Caller,
    key: str | None,
    fingerprint: str,
    locale: str,
    run: Callable[[str], Awaitable[Response]],
) -> Response:
    """Run ``run`` once per (caller, key); store its response, errors included, to replay. A
    failure worth retrying stores nothing, and the retry runs under the same service key."""
    claimed = await idempotency.begin(
        services, scope=caller.scope, key=idempotency.check_key(key), fingerprint=fingerprint
    )
    if isinstance(claimed, idempotency.StoredResponse):
        return Response(
            claimed.body,
            status_code=claimed.status_code,
            media_type=claimed.content_type,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = await run(claimed.request_id)
    except (InputError, NotFoundError) as error:
        # Refused before anything was done (a mistyped card number, an unknown plan): like a
        # request refused by validation, it stores nothing, and the corrected request may use
        # the same key.
        await idempotency.finish(services, claimed, None)
        return problem_response(error, locale)
    except TopupError as error:
        if error.retryable:
            await idempotency.finish(services, claimed, None)
            raise
        response = problem_response(error, locale)
    except Exception:
        await idempotency.finish(services, claimed, None)
        raise
    stored = idempotency.StoredResponse(
        response.status_code, response.media_type or JSON, bytes(response.body)
    )
    # Stored once the response is on its way: the caller does not wait for this write. A retry
    # arriving in between is told the key is in use; a crash in between leaves the key to be
    # taken over after idempotency_lease_s, and the service's own key finds the renewal again.
    response.background = BackgroundTask(idempotency.finish, services, claimed, stored)
    return response
