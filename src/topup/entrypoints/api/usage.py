"""The network's mediation system delivers usage records here, signed over the raw body."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from topup.domain.usage_files import request_bytes_max
from topup.entrypoints.api.dependencies import ServicesDependency
from topup.entrypoints.api.schemas import problems
from topup.entrypoints.http.problems import encode
from topup.services.context import Services
from topup.services.usage import receive_signed_usage

USAGE_RECORDS_PATH = "/api/v1/usage-records"
USAGE_HEADERS_MAX = 50
# This route's body may hold the most records a request carries (more than other routes take).
USAGE_RECORDS_PATHS = re.compile(rf"^{re.escape(USAGE_RECORDS_PATH)}$")


def body_bytes_max(services: Services) -> int:
    """What a delivery may weigh: the most records a request may carry, of the longest fields."""
    return request_bytes_max(services.limits.usage.usage_records_per_request_max)


router = APIRouter()


class UsageProblemOut(BaseModel):
    line: int
    code: str
    message: str


class UsageSummaryOut(BaseModel):
    records: int
    applied: int
    duplicates: int
    earlier_period: int
    postpaid: int
    card_expired: int
    debited_mb: int
    cards: int
    events: int
    bad_lines: int
    problems: list[UsageProblemOut]


@router.post(
    USAGE_RECORDS_PATH,
    response_model=UsageSummaryOut,
    responses=problems(409),
    tags=["usage"],
)
async def usage_records(request: Request, services: ServicesDependency) -> Response:
    """Usage records as JSON lines (``application/x-ndjson``) or CSV with a header
    (``text/csv``), signed: ``X-Topup-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>." + body>`` with the mediation secret. A missing, wrong or old signature, or one seen
    before, is refused (``usage_signature_*``) and nothing is applied. Each record is applied once
    by its ``record_id``; bad lines are listed by number and the others applied (200)."""
    body = await request.body()
    headers = {
        key.lower(): value for key, value in list(request.headers.items())[:USAGE_HEADERS_MAX]
    }
    summary = await receive_signed_usage(
        services, body, headers, content_type=headers.get("content-type", "")
    )
    data = {
        "records": summary.records,
        "applied": summary.applied,
        "duplicates": summary.duplicates,
        "earlier_period": summary.earlier_period,
        "postpaid": summary.postpaid,
        "card_expired": summary.card_expired,
        "debited_mb": summary.debited_mb,
        "cards": summary.cards,
        "events": summary.events,
        "bad_lines": summary.problem_count,
        "problems": [
            {"line": problem.line, "code": problem.code, "message": problem.message}
            for problem in summary.problems
        ],
    }
    return Response(encode(data), media_type="application/json")
