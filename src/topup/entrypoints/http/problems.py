"""Errors as RFC 9457 ``application/problem+json``: ``type``, ``title``, ``status``, ``detail``, a
stable ``code`` and, for input problems, ``errors: [{field, code, message}]``; the texts in the
caller's language (``Accept-Language``: en, zh-Hans, ms, id)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from topup.adapters import messages
from topup.domain.errors import ConflictError, InputError, NotFoundError, PaymentError, TopupError
from topup.i18n import N_, language_tag, translations

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/api/v1/problems/"
logger = logging.getLogger("topup.api")

# Codes whose HTTP status is not their family's.
STATUS_OF_CODE: dict[str, int] = {
    "json_invalid": 400,
    "idempotency_key_required": 400,
    "idempotency_key_invalid": 400,
    "authentication_required": 401,
    "token_invalid": 401,
    "api_key_invalid": 401,
    "login_failed": 401,
    "forbidden": 403,
    "fleet_role_forbidden": 403,
    "channel_not_allowed": 403,
    "email_not_confirmed": 403,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "login_locked": 429,
    "internal_error": 500,
    "database_unavailable": 503,
    "sms_unavailable": 503,
    "mail_unavailable": 503,
}

# Pydantic's error types, as our codes.
CODE_OF_VALIDATION_ERROR: dict[str, str] = {
    "missing": "field_required",
    "extra_forbidden": "field_unknown",
    "string_too_long": "field_too_long",
    "string_too_short": "field_too_short",
    "too_long": "field_too_long",
    "too_short": "field_too_short",
    "json_invalid": "json_invalid",
    "model_attributes_type": "field_type_invalid",
    "dict_type": "field_type_invalid",
    "model_type": "field_type_invalid",
}


def status_of(error: TopupError) -> int:
    found = STATUS_OF_CODE.get(error.code)
    if found is not None:
        return found
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, PaymentError):
        return 402
    if isinstance(error, InputError):
        return 422
    return 400


# Titles of problems (RFC 9457 ``title``) by status; the ``detail`` comes from errors.toml.
_TITLES = {
    400: N_("Bad request"),
    401: N_("Sign-in required"),
    402: N_("Payment not made"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    405: N_("Method not allowed"),
    409: N_("Conflict"),
    413: N_("Request too large"),
    415: N_("Unsupported content type"),
    422: N_("Invalid input"),
    429: N_("Too many requests"),
    500: N_("Internal error"),
    503: N_("Service unavailable"),
}


def title_of(status: int, locale: str) -> str:
    title = _TITLES.get(status) or _TITLES[400 if status < 500 else 500]
    return translations(locale).gettext(title)


def encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def problem_body(
    error: TopupError,
    locale: str,
    *,
    status: int | None = None,
    errors: Sequence[TopupError] = (),
    extra: Mapping[str, Any] | None = None,
) -> tuple[int, bytes]:
    status = status or status_of(error)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": title_of(status, locale),
        "status": status,
        "detail": messages.message_for(error, locale),
        "code": error.code,
        "retryable": error.retryable,
    }
    if errors or error.field:
        problems = list(errors) or [error]
        body["errors"] = [
            {
                "field": problem.field or "",
                "code": problem.code,
                "message": messages.message_for(problem, locale),
            }
            for problem in problems
        ]
    if extra:
        body.update(extra)
    return status, encode(body)


def problem_response(
    error: TopupError,
    locale: str,
    *,
    status: int | None = None,
    errors: Sequence[TopupError] = (),
    extra: Mapping[str, Any] | None = None,
) -> Response:
    status, body = problem_body(error, locale, status=status, errors=errors, extra=extra)
    headers = {"Content-Language": language_tag(locale)}
    retry_after = error.params.get("retry_after_s")
    if retry_after:
        headers["Retry-After"] = retry_after
    if status == 401:  # RFC 9110 and RFC 6750: say how to authenticate
        headers["WWW-Authenticate"] = 'Bearer realm="topup"'
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_of(location: Sequence[int | str]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts)


def validation_problems(error: RequestValidationError) -> list[TopupError]:
    problems: list[TopupError] = []
    for item in error.errors()[:50]:
        kind = str(item.get("type", ""))
        code = CODE_OF_VALIDATION_ERROR.get(kind)
        if code is None:
            code = "field_type_invalid" if kind.endswith(("_type", "_parsing")) else "field_invalid"
        field = _field_of(item.get("loc", ()))
        problems.append(
            InputError(
                f"{field or 'body'}: {item.get('msg', 'invalid')}",
                code=code,
                field=field,
                params={"field": field or "body"},
            )
        )
    return problems


def error_text(error: TopupError, locale: str) -> str:
    """The error's message for people in ``locale``, from the error catalogue (pages show it)."""
    return messages.message_for(error, locale)


def error_entries() -> list[messages.CatalogueEntry]:
    """Every error code with its meaning, whether retrying helps, and what to do (a help page)."""
    return messages.catalogue()
