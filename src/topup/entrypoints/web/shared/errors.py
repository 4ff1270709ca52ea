"""Errors on pages: an expected one is a page in the visitor's language with its code and what to
do; a bug is a page naming only a reference (the log has the rest). Never a traceback, never JSON
on a page's path."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from topup.domain.errors import TopupError
from topup.entrypoints.http.problems import error_text, status_of
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sessions import SIGN_IN_PATH, SignInRequired
from topup.i18n import N_

logger = logging.getLogger("topup.web")
REFERENCE_BYTES = 4
_HEADINGS = {
    403: N_("This request was refused"),
    404: N_("Page not found"),
    405: N_("Page not found"),
    429: N_("Too many attempts"),
    500: N_("Something went wrong on our side"),
}
_DEFAULT_HEADING = N_("This could not be done")


def error_page(request: Request, error: TopupError, status: int) -> Response:
    renderer = renderer_of(request)
    locale = renderer.page(request).locale
    headers = {}
    retry_after = error.params.get("retry_after_s")
    if status == 429 and retry_after:
        headers["retry-after"] = retry_after
    return renderer.render(
        request,
        "shared/error.html",
        {
            "heading": _HEADINGS.get(status, _DEFAULT_HEADING),
            "message": error_text(error, locale),
            "code": error.code,
            "retryable": error.retryable,
            "reference": error.params.get("detail") if error.code == "internal_error" else None,
        },
        status_code=status,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    async def topup_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, TopupError):
            raise error
        status = 403 if error.code == "csrf_failed" else status_of(error)
        return error_page(request, error, status)

    async def invalid_request(request: Request, error: Exception) -> Response:
        failure = TopupError("the request has invalid fields", code="invalid_request", params={})
        return error_page(request, failure, 422)

    async def http_error(request: Request, error: Exception) -> Response:
        if not isinstance(error, StarletteHTTPException):
            raise error
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return error_page(request, TopupError(str(error.detail), code=code), error.status_code)

    async def sign_in_required(request: Request, error: Exception) -> Response:
        if not isinstance(error, SignInRequired):
            raise error
        from urllib.parse import urlencode

        return RedirectResponse(f"{SIGN_IN_PATH}?{urlencode({'next': error.next_path})}", 303)

    app.add_exception_handler(TopupError, topup_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SignInRequired, sign_in_required)


class UnexpectedPageErrors:
    """A bug on a page: logged with a reference, answered with the error page naming it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as error:
            if started:
                raise
            reference = secrets.token_hex(REFERENCE_BYTES)
            logger.error(
                "internal error %s on %s %s: %s",
                reference,
                scope.get("method"),
                scope.get("path"),
                type(error).__name__,
                exc_info=error,
            )
            failure = TopupError(
                "internal error",
                code="internal_error",
                retryable=True,
                params={"detail": reference},
            )
            response = error_page(Request(scope, receive), failure, 500)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
