"""The error catalogue: one entry per stable error code, with its text in every language.

The catalogue ships as ``topup/messages/errors.toml`` and is read once, on first use, through the
one loader of ``topup.i18n``, which also says which locales there are and how a caller's
language falls back (``zh-CN`` -> zh_Hans, ``fr`` -> en). Each entry says
what the code means (for operators), whether retrying the same request can help, what to suggest
to the user, and the user-facing text in English, 简体中文, Bahasa Melayu and Bahasa Indonesia.
Texts name placeholders (``{example}``, ``{plan}``) that a ``TopupError``'s ``params`` fill.

``message_for`` never raises for an error: an unknown code, or params that do not fill the text,
give the error's own English message.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from topup.domain.errors import InvariantError, TopupError
from topup.i18n import DEFAULT_LOCALE as DEFAULT_LOCALE  # the command line's fallback
from topup.i18n import LOCALES, keyed_catalogue_text, resolve_or_default

_SENTENCE_SEPARATOR = {"zh_Hans": ""}  # Chinese sentences follow each other without a space
_FIELDS = frozenset({"meaning", "retryable", "suggestion", "text"})
_CODE = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER = re.compile(r"[a-z][a-z0-9_]*")
catalogue_entries_max = 1_000


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    code: str
    meaning: str  # for operators and developers, English
    retryable: bool  # whether the same request, sent again unchanged, can succeed
    suggestion: str  # what the user should do, English
    text: Mapping[str, str]  # the user-facing message by locale; one per LOCALES
    placeholders: frozenset[str]  # the same in every locale's text

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "meaning": self.meaning,
            "retryable": self.retryable,
            "suggestion": self.suggestion,
            "text": dict(self.text),
            "placeholders": sorted(self.placeholders),
        }


def placeholders_of(text: str) -> frozenset[str]:
    """The named placeholders of a text; anything but ``{name}`` (a format spec, a conversion, an
    index or attribute, an unmatched brace) is an error."""
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ValueError(f"has unbalanced braces ({error})") from None
    for _, name, format_spec, conversion in parsed:
        if name is None:
            continue
        if format_spec or conversion or not _PLACEHOLDER.fullmatch(name):
            raise ValueError(f"has placeholder {{{name}}}; only {{lowercase_name}} is allowed")
        names.add(name)
    return frozenset(names)


def parse_catalogue(text: str) -> dict[str, CatalogueEntry]:
    """Read and check a catalogue written in TOML; a broken catalogue is an ``InvariantError``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvariantError(f"error catalogue: not valid TOML: {error}") from None
    if not data or len(data) > catalogue_entries_max:
        raise InvariantError(f"error catalogue: must have 1 to {catalogue_entries_max} codes")
    return {code: _entry(code, value) for code, value in sorted(data.items())}


def _entry(code: str, value: object) -> CatalogueEntry:
    where = f"error catalogue: {code!r}"
    if not _CODE.fullmatch(code):
        raise InvariantError(f"{where} is not a code (lowercase snake case)")
    if not isinstance(value, dict) or set(value) != _FIELDS:
        raise InvariantError(f"{where} must have exactly the fields {', '.join(sorted(_FIELDS))}")
    meaning, suggestion, retryable = value["meaning"], value["suggestion"], value["retryable"]
    if not isinstance(retryable, bool):
        raise InvariantError(f"{where}: retryable must be true or false")
    for name, field in (("meaning", meaning), ("suggestion", suggestion)):
        if not isinstance(field, str) or not field.strip():
            raise InvariantError(f"{where}: {name} must be a non-empty string")
    texts = value["text"]
    if not isinstance(texts, dict) or set(texts) != set(LOCALES):
        raise InvariantError(f"{where}: text must have exactly the locales {', '.join(LOCALES)}")
    placeholders: frozenset[str] | None = None
    for locale in LOCALES:
        text = texts[locale]
        if not isinstance(text, str) or not text.strip():
            raise InvariantError(f"{where}: text.{locale} must be a non-empty string")
        try:
            found = placeholders_of(text)
        except ValueError as error:
            raise InvariantError(f"{where}: text.{locale} {error}") from None
        if placeholders is not None and found != placeholders:
            raise InvariantError(
                f"{where}: text.{locale} has placeholders {sorted(found)}, "
                f"text.{LOCALES[0]} has {sorted(placeholders)}"
            )
        placeholders = found
    return CatalogueEntry(
        code=code,
        meaning=meaning,
        retryable=retryable,
        suggestion=suggestion,
        text={locale: texts[locale] for locale in LOCALES},
        placeholders=placeholders or frozenset(),
    )


@functools.cache
def _entries() -> dict[str, CatalogueEntry]:
    return parse_catalogue(keyed_catalogue_text("errors.toml"))


def catalogue() -> list[CatalogueEntry]:
    """Every entry, sorted by code."""
    return list(_entries().values())


def entry(code: str) -> CatalogueEntry | None:
    return _entries().get(code)


def message_for(error: TopupError, locale: str) -> str:
    """The error's message in ``locale``. An unknown code, or params that do not fill every
    placeholder, give the error's own English message.

    An error that gathers several (its ``problems``, like ``PaymentCardDetailsInvalid``: one error per
    bad field) is followed by each problem's message, as its English message is."""
    found = _entries().get(error.code)
    if found is None:
        return error.message
    chosen = resolve_or_default(locale)
    try:
        text = found.text[chosen].format_map(error.params)
    except (KeyError, ValueError, IndexError, AttributeError):
        return error.message
    problems = getattr(error, "problems", ())
    if not isinstance(problems, tuple):
        return text
    details = [
        message_for(problem, chosen) for problem in problems if isinstance(problem, TopupError)
    ]
    return _SENTENCE_SEPARATOR.get(chosen, " ").join([text, *details])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table() -> str:
    """``docs/error-codes.md``: every code with its meaning, whether retrying can help and what to
    suggest. The file is generated; a test compares it with this function's answer."""
    lines = [
        "<!-- Generated from src/topup/messages/errors.toml; do not edit. Regenerate with: "
        "topup errors --markdown > docs/error-codes.md -->",
        "",
        "# Error codes",
        "",
        "Every expected failure carries one of these stable codes (in the API, on the command line "
        "as `error [code]: message`, and as the decline code of a declined renewal). Each code has "
        "its user-facing text in English, 简体中文, Bahasa Melayu and Bahasa Indonesia in "
        "`src/topup/messages/errors.toml`; `TOPUP_LANGUAGE` picks the language of the command "
        "line. *Retry can help* says whether sending the same request again, unchanged, can "
        "succeed.",
        "",
        "| code | meaning | retry can help | suggestion |",
        "| --- | --- | --- | --- |",
    ]
    for item in catalogue():
        lines.append(
            f"| `{item.code}` | {_cell(item.meaning)} | {'yes' if item.retryable else 'no'} "
            f"| {_cell(item.suggestion)} |"
        )
    return "\n".join(lines) + "\n"
