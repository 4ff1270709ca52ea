"""Every error leaves as problem+json: the exception handlers of an HTTP application."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from topup.domain.errors import InputError, TopupError
from topup.entrypoints.http.language import request_language
from topup.entrypoints.http.problems import problem_response, validation_problems

logger = logging.getLogger("topup.api")


def install(app: FastAPI) -> None:
    """Every error leaves as problem+json; a bug is logged and answered 500 with no detail."""

    async def topup_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, TopupError):
            raise error
        return problem_response(error, request_language(request))

    async def invalid_request(request: Request, error: Exception) -> Response:
        if not isinstance(error, RequestValidationError):
            raise error
        problems = validation_problems(error)
        locale = request_language(request)
        if any(problem.code == "json_invalid" for problem in problems):
            malformed = InputError("the body is not valid JSON", code="json_invalid")
            return problem_response(malformed, locale)
        summary = InputError("the request has invalid fields", code="invalid_request", params={})
        return problem_response(summary, locale, errors=problems)

    async def http_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, StarletteHTTPException):
            raise error
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return problem_response(
            TopupError(str(error.detail), code=code),
            request_language(request),
            status=error.status_code,
        )

    async def internal(request: Request, error: Exception) -> Response:
        logger.error(
            "internal error on %s %s: %s",
            request.method,
            request.url.path,
            type(error).__name__,
            exc_info=error,
        )
        failure = TopupError(
            "internal error",
            code="internal_error",
            retryable=True,
            params={"detail": type(error).__name__},
        )
        return problem_response(failure, request_language(request), status=500)

    app.add_exception_handler(TopupError, topup_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)
