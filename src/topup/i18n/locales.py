"""The locales the platform speaks, and how a caller's language becomes one of them.

A locale is a Babel identifier (``zh_Hans``); on the wire it is a BCP 47 tag (``zh-Hans``). A tag
we do not speak exactly falls back to its language (``zh-CN``, ``zh-TW`` and ``zh`` read
Simplified Chinese, ``ms-MY`` Malay, ``id-ID`` and the old code ``in`` Indonesian), and a
language we do not speak at all to the default: the operator profile's first locale.
"""

from __future__ import annotations

from collections.abc import Sequence

from babel.core import parse_locale

LOCALES = ("en", "zh_Hans", "ms", "id")  # every catalogue has every text in each of these
DEFAULT_LOCALE = "en"
ACCEPT_LANGUAGE_PARTS_MAX = 20  # the first 20 languages of an Accept-Language are read
LANGUAGE_TAG_LENGTH_MAX = 35  # RFC 5646's longest useful tag; anything longer is ignored
# Language codes that ISO 639 replaced, as browsers and old phones still send them.
_RENAMED_LANGUAGES = {"in": "id", "iw": "he", "ji": "yi"}


def _parts(tag: str) -> tuple[str, str | None] | None:
    """(language, script) of a tag written with ``-`` or ``_``, the language lower-case and
    renamed codes brought up to date; None if it is not a language tag (``*``, blank)."""
    text = tag.strip().replace("-", "_")
    if not text or len(text) > LANGUAGE_TAG_LENGTH_MAX:
        return None
    try:
        language, _territory, script, *_ = parse_locale(text)
    except ValueError:  # extensions (``-u-ca-chinese``) and the like: its language alone
        language, script = text.split("_")[0], None
        if not (language.isascii() and language.isalpha() and 2 <= len(language) <= 3):
            return None
    language = language.lower()
    return _RENAMED_LANGUAGES.get(language, language), (script.title() if script else None)


def resolve(tag: str, available: Sequence[str] = LOCALES) -> str | None:
    """The locale of ``available`` for ``tag``: the one of the same language and script, else
    the first of the same language; None if ``available`` does not speak its language."""
    wanted = _parts(tag)
    if wanted is None:
        return None
    same_language: list[str] = []
    for locale in available:
        parts = _parts(locale)
        if parts == wanted:
            return locale
        if parts is not None and parts[0] == wanted[0]:
            same_language.append(locale)
    return same_language[0] if same_language else None


def resolve_or_default(tag: str, default: str = DEFAULT_LOCALE) -> str:
    """One of LOCALES for ``tag``, else for ``default``, else DEFAULT_LOCALE (``"fr"`` -> en)."""
    return resolve(tag) or resolve(default) or DEFAULT_LOCALE


def _weight(parameters: str) -> float:
    """The ``q`` of ``;q=0.5`` (1 if absent, 0 if unreadable)."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0
            return weight if 0.0 <= weight <= 1.0 else 0.0
    return 1.0


def preferred_tags(accept_language: str) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (by ``q``, then by order);
    tags with ``q=0`` are left out."""
    weighted: list[tuple[float, int, str]] = []
    parts = accept_language.split(",")[:ACCEPT_LANGUAGE_PARTS_MAX]
    for position, part in enumerate(parts):
        tag, _, parameters = part.partition(";")
        weight = _weight(parameters)
        if weight > 0 and tag.strip():
            weighted.append((-weight, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(
    accept_language: str | None,
    *,
    default: str = DEFAULT_LOCALE,
    available: Sequence[str] = LOCALES,
) -> str:
    """The locale to answer in: the most wanted language of ``accept_language`` that
    ``available`` speaks, else ``default`` (give the operator profile's first locale), itself
    brought to one of ``available``."""
    for tag in preferred_tags(accept_language or ""):
        found = resolve(tag, available)
        if found is not None:
            return found
    return resolve(default, available) or (available[0] if available else DEFAULT_LOCALE)


def language_tag(locale: str) -> str:
    """The BCP 47 tag of a locale, as ``Content-Language`` says it (``zh_Hans`` -> ``zh-Hans``)."""
    return locale.replace("_", "-")
