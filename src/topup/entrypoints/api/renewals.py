"""Renewals: create and pay (idempotent), read, and confirm with a payment password.

Who may read or confirm a renewal: the client holding its ``client_secret`` (given once, at
creation; sent back in the ``X-Client-Secret`` header), the card's owner, and staff. Anyone else
gets 404, as for a renewal that does not exist."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from topup.domain.callers import Caller
from topup.domain.errors import PaymentError
from topup.entrypoints.api.dependencies import (
    CallerDependency,
    LanguageDependency,
    ServicesDependency,
    check_caller_rate,
    check_card_lookup,
    check_rate,
)
from topup.entrypoints.api.schemas import ConfirmIn, RenewalIn, RenewalOut, problems
from topup.entrypoints.http.idempotency import run_idempotently
from topup.entrypoints.http.problems import encode, problem_response
from topup.entrypoints.views_json import renewal_json
from topup.services import idempotency
from topup.services.access import client_secret_of, visible_renewal
from topup.services.confirmation import confirm_payment
from topup.services.context import Services
from topup.services.receipts import paid_receipt_code
from topup.services.renewals import RenewalRequest, renew
from topup.services.views import RenewalView

router = APIRouter(tags=["renewals"])

RenewalId = Annotated[str, Path(min_length=1, max_length=36)]
IdempotencyKey = Annotated[
    str | None,
    # No max_length here: a key of any length that is not valid is one answer, the service's 400
    # idempotency_key_invalid, not a 422 field_too_long past some other bound.
    Header(
        alias="Idempotency-Key",
        description=(
            "Unique per request (e.g. a UUID); the same one when retrying it. "
            f"1 to {idempotency.KEY_LENGTH_MAX} printable ASCII characters."
        ),
    ),
]
ClientSecret = Annotated[
    str | None, Header(alias="X-Client-Secret", max_length=200, description="From creation.")
]
JSON = "application/json"
MINUTE_S = 60


def _renewal_json(
    services: Services, view: RenewalView, *, client_secret: str | None = None
) -> dict[str, Any]:
    """The renewal as its readers see it: only those who may read it get here, and once it is
    paid they get its receipt's verification code with the receipt number."""
    data = renewal_json(view)
    data.pop("idempotency_key", None)  # the service's own key, not the caller's
    data["verification_code"] = paid_receipt_code(services, view.renewal)
    if client_secret is not None:
        data["client_secret"] = client_secret
    return data


def _created(services: Services, view: RenewalView, locale: str) -> Response:
    """201 with the renewal; a declined payment is 402 with the renewal inside the problem."""
    data = _renewal_json(services, view, client_secret=client_secret_of(services, view.id))
    if view.status == "declined":
        code = view.renewal.decline_code or "payment_declined"
        declined = PaymentError(f"the payment was declined ({code})", code=code)
        return problem_response(declined, locale, status=402, extra={"renewal": data})
    return Response(encode(data), status_code=201, media_type=JSON)


def _fingerprint(caller: Caller, body: RenewalIn) -> str:
    material = json.dumps(
        [caller.scope, body.model_dump(mode="json")], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(material.encode()).hexdigest()


@router.post(
    "/api/v1/renewals",
    status_code=201,
    response_model=RenewalOut,
    responses=problems(400, 401, 402, 403, 404, 409),
)
async def create_renewal(
    body: RenewalIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create a renewal and pay for it. Requires ``Idempotency-Key``: a retry with the same key
    and body gets the first response again (for 24 h), never a second payment."""
    idempotency.check_key(idempotency_key)
    channel = caller.channel_for(body.channel)

    async def run(service_key: str) -> Response:
        # Counted when it runs, not when a stored answer is replayed.
        await check_card_lookup(request, caller, body.card_number)
        view = await renew(
            services,
            RenewalRequest(
                card_number=body.card_number,
                plan_code=body.plan,
                payment=None,
                channel=channel,
                idempotency_key=service_key,
                method=body.payment.method,
                region=caller.region,
                wallet_account=body.payment.wallet_account,
                payment_token=body.payment.token,
                receipt_email=body.email,
                receipt_language=language if body.email else None,
            ),
        )
        return _created(services, view, language)

    return await run_idempotently(
        services,
        caller=caller,
        key=idempotency_key,
        fingerprint=_fingerprint(caller, body),
        locale=language,
        run=run,
    )


@router.get(
    "/api/v1/renewals/{renewal_id}", response_model=RenewalOut, responses=problems(401, 404)
)
async def read_renewal(
    renewal_id: RenewalId,
    services: ServicesDependency,
    caller: CallerDependency,
    client_secret: ClientSecret = None,
) -> Response:
    """Status, amount, expected activation time, timeline, and once paid the receipt number
    with its verification code (``GET /api/v1/receipts/{receipt_number}`` opens it)."""
    view = await visible_renewal(services, caller, renewal_id, client_secret)
    return Response(encode(_renewal_json(services, view)), media_type=JSON)


@router.post(
    "/api/v1/renewals/{renewal_id}/confirm",
    response_model=RenewalOut,
    responses=problems(401, 402, 404, 409),
)
async def confirm_renewal(
    renewal_id: RenewalId,
    body: ConfirmIn,
    request: Request,
    services: ServicesDependency,
    caller: CallerDependency,
    language: LanguageDependency,
    client_secret: ClientSecret = None,
) -> Response:
    """Give the payment password or 3-D Secure answer a renewal waits for."""
    limit = services.limits.rates.confirm_per_minute_max
    await check_caller_rate(request, caller, "confirm", limit=limit, window_s=MINUTE_S)
    # Only those who may confirm count against the renewal's own allowance: a stranger who
    # knows its id cannot use it up.
    await visible_renewal(services, caller, renewal_id, client_secret)
    await check_rate(services, "confirm", f"renewal:{renewal_id}", limit=limit, window_s=MINUTE_S)
    view = await confirm_payment(services, renewal_id, body.answer)
    data = _renewal_json(services, view)
    if view.status == "declined":
        code = view.renewal.decline_code or "payment_declined"
        declined = PaymentError(f"the payment was declined ({code})", code=code)
        return problem_response(declined, language, status=402, extra={"renewal": data})
    return Response(encode(data), media_type=JSON)
