"""The caller's language: the one place the HTTP layer asks which language to answer in."""

from __future__ import annotations

from starlette.requests import Request

from topup.i18n import language_tag, negotiate


def language_of_header(accept_language: str | None) -> str:
    """The locale to answer an ``Accept-Language`` header in (en, zh_Hans, ms, id)."""
    return negotiate(accept_language)


def request_language(request: Request) -> str:
    return language_of_header(request.headers.get("accept-language"))


__all__ = ["language_of_header", "language_tag", "request_language"]
