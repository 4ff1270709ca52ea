"""Liveness, the catalogue of problem types, and the sandbox PSP's tokenisation endpoint."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from topup.adapters import messages
from topup.domain.errors import NotFoundError, TopupError
from topup.entrypoints.api.dependencies import ServicesDependency
from topup.entrypoints.http.problems import PROBLEM_MEDIA_TYPE, problem_response

router = APIRouter()
logger = logging.getLogger("topup.api")


class Health(BaseModel):
    status: str
    database: str


@router.get(
    "/api/v1/health",
    response_model=Health,
    tags=["health"],
    responses={503: {"description": "The database cannot be reached."}},
)
async def health(services: ServicesDependency) -> Any:
    """Whether this server runs and reaches its database."""
    try:
        async with services.unit_of_work() as uow:
            await uow.connection.execute(text("SELECT 1"))  # type: ignore[attr-defined]
    except Exception:  # the answer to this route is exactly whether this fails
        logger.warning("health: the database cannot be reached", exc_info=True)
        failure = TopupError(
            "database unreachable",
            code="database_unavailable",
            retryable=True,
        )
        return problem_response(failure, messages.DEFAULT_LOCALE)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.head("/api/v1/health", include_in_schema=False)
async def health_head(services: ServicesDependency) -> Response:
    """``HEAD``, as monitors ask: the status and headers of ``GET``, without the body. (Not in
    the OpenAPI document: one operation per path and method would repeat ``GET``'s.)"""
    answer: Response = await health(services)
    return Response(status_code=answer.status_code, headers=dict(answer.headers))


class Problem(BaseModel):
    """An error: RFC 9457 problem details with a stable ``code``."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str
    retryable: bool


class ProblemType(BaseModel):
    code: str
    meaning: str
    retryable: bool
    suggestion: str
    text: dict[str, str]


@router.get(
    "/api/v1/problems/{code}",
    response_model=ProblemType,
    tags=["problems"],
    responses={404: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}},
)
async def problem_type(code: str) -> Any:
    """What an error ``code`` means (the ``type`` of every problem points here)."""
    found = messages.entry(code)
    if found is None:
        raise NotFoundError(f"no error code {code}", code="not_found")
    return {
        "code": found.code,
        "meaning": found.meaning,
        "retryable": found.retryable,
        "suggestion": found.suggestion,
        "text": dict(found.text),
    }
