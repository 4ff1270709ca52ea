"""Every error leaves as problem+json: the exception handlers of an HTTP application."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.domain.errors import InputError, TopupError
from topup.entrypoints.http.language import language_of_header, language_tag, request_language
from topup.entrypoints.http.problems import (
    PROBLEM_MEDIA_TYPE,
    problem_body,
    problem_response,
    validation_problems,
)

logger = logging.getLogger("topup.api")
REFERENCE_BYTES = 4  # the reference of an internal error, in its answer and the log


def install(app: FastAPI) -> None:
    """Every expected error leaves as problem+json (a bug: ``UnexpectedErrors``)."""

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

    app.add_exception_handler(TopupError, topup_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)


class UnexpectedErrors:
    """The outermost guard: an exception no handler took (a bug) is logged with a reference and
    answered 500 ``internal_error`` naming only that reference, with ``Connection: close``, so
    that the client knows the connection ends. Nothing of the exception reaches the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "finished": False}

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["finished"] = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as error:
            reference = secrets.token_hex(REFERENCE_BYTES)
            logger.error(
                "internal error %s on %s %s: %s",
                reference,
                scope.get("method"),
                scope.get("path"),
                type(error).__name__,
                exc_info=error,
            )
            if state["finished"]:  # after the answer (a background task): nothing to tell
                return
            if state["started"]:  # half an answer: only closing the connection can say so
                raise
            await _internal_error(scope, send, reference)


async def _internal_error(scope: Scope, send: Send, reference: str) -> None:
    accept_language = dict(scope.get("headers") or []).get(b"accept-language", b"")
    locale = language_of_header(accept_language.decode("latin-1"))
    failure = TopupError(
        "internal error", code="internal_error", retryable=True, params={"detail": reference}
    )
    status, body = problem_body(failure, locale, status=500)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-language", language_tag(locale).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
