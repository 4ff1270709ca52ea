"""The language of a page: the one the visitor chose (a cookie, remembered for a year), else the
best of ``Accept-Language``. Switched on every page by a link to ``/language/<tag>``."""

from __future__ import annotations

from starlette.requests import Request

from topup.i18n import LOCALES, language_tag, negotiate, resolve

LANGUAGE_COOKIE = "topup_language"
LANGUAGE_COOKIE_MAX_AGE_S = 365 * 86_400
LANGUAGE_NAMES = {  # each in its own language: a visitor finds theirs whatever the page's
    "en": "English",
    "zh_Hans": "简体中文",
    "ms": "Bahasa Melayu",
    "id": "Bahasa Indonesia",
}


def page_language(request: Request) -> str:
    """One of LOCALES: the remembered choice, else Accept-Language."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen:
        found = resolve(chosen[:35])
        if found is not None:
            return found
    return negotiate(request.headers.get("accept-language"))


def language_choices() -> list[tuple[str, str, str]]:
    """(locale, tag for URLs and ``lang``, name) of each language the pages speak."""
    return [(locale, language_tag(locale), LANGUAGE_NAMES[locale]) for locale in LOCALES]


def local_path(candidate: str | None, default: str = "/") -> str:
    """``candidate`` if it is a path on this site (to go back to after a switch or a sign-in),
    else ``default``: never another origin (``//evil``, ``/\\evil``, ``https://...``)."""
    if not candidate or len(candidate) > 2000:
        return default
    if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return default
    if any(character in candidate for character in "\\\r\n\t") or ":" in candidate.split("?")[0]:
        return default
    return candidate
