"""The one loader of the platform's texts: gettext catalogues, and the keyed catalogues beside them.

Texts for people (receipts, e-mails, HTTP titles, the web pages) are gettext catalogues, one
file per domain, ``topup/i18n/locales/<locale>/LC_MESSAGES/<domain>.po``, read with Babel when
first used and kept. A domain is a part of the code with its own extraction map,
``babel/<domain>.cfg`` (``messages``: everything but the web pages; ``web``: their shared layer;
one per slice of a channel), so that slices are translated apart; a locale's domains are merged
into one table (a text in two domains is translated the same in both: a test checks it; the
first domain's translation is shown). The English text is the message id; a text names its parameters
(``%(receipt_number)s``), the same in every language; ``pybabel extract`` finds the texts in the
code (``gettext``, ``ngettext``, ``pgettext`` and ``N_`` for a text chosen later; see babel/).
A text a catalogue lacks is shown in English.

The error catalogue, whose entries carry more than text (meaning, retryable, suggestion), stays a
keyed TOML file read through ``keyed_catalogue_text``. Both are checked when read (parameters
the same in every language), so a broken catalogue stops the program at its first use.
"""

from __future__ import annotations

import functools
import gettext as stdlib_gettext
import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from topup.domain.errors import InvariantError
from topup.i18n.locales import DEFAULT_LOCALE, LOCALES, resolve_or_default

if TYPE_CHECKING:
    from babel.messages.catalog import Catalog

DOMAIN = "messages"
catalogue_messages_max = 10_000
# Python's named conversions, as gettext's python-format: %(name)s, %(count)d, %(rate).2f.
_NAMED_CONVERSION = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_Key = tuple[str | None, str]  # (context, message id)


def N_(message: str) -> str:  # noqa: N802 (gettext's name for "mark, translate later")
    """Mark a text for extraction where it is written and translate it where it is shown."""
    return message


def parameters_of(text: str) -> frozenset[str]:
    return frozenset(_NAMED_CONVERSION.findall(text))


@dataclass(frozen=True, slots=True)
class Translations:
    """The texts of one locale; each call fills the text's named parameters."""

    locale: str
    texts: Mapping[_Key, tuple[str, ...]]  # one form, or one per plural form
    plural: Callable[[int], int]  # the form for a count, by the language's plural rule

    def gettext(self, message: str, **parameters: object) -> str:
        return self._fill(self._find(None, message), message, parameters)

    def pgettext(self, context: str, message: str, **parameters: object) -> str:
        return self._fill(self._find(context, message), message, parameters)

    def ngettext(self, singular: str, plural: str, count: int, **parameters: object) -> str:
        """The form for ``count``; ``count`` is also the parameter ``%(count)d``."""
        english = singular if count == 1 else plural
        found = self.texts.get((None, singular))
        text = found[min(self.plural(count), len(found) - 1)] if found else english
        return self._fill(text or english, english, {"count": count, **parameters})

    def _find(self, context: str | None, message: str) -> str:
        found = self.texts.get((context, message))
        return found[0] if found and found[0] else message

    @staticmethod
    def _fill(text: str, english: str, parameters: Mapping[str, object]) -> str:
        if not parameters:
            return text
        try:
            return text % parameters
        except (KeyError, ValueError, TypeError):  # a translation that does not fit: English
            return english % parameters


def _strings(value: object) -> tuple[str, ...]:
    """A message's id or text as Babel gives it (one string, or one per plural form)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list):
        return tuple(str(item or "") for item in value)
    return ("",)


def _message_texts(catalogue: Catalog, where: str) -> dict[_Key, tuple[str, ...]]:
    texts: dict[_Key, tuple[str, ...]] = {}
    for message in catalogue:
        if not message.id or message.fuzzy:
            continue  # the header, and texts a translator has not confirmed
        ids = _strings(message.id)
        forms = _strings(message.string)
        allowed = frozenset().union(*(parameters_of(text) for text in ids))
        for form in forms:  # a plural form may leave out the count ("one card")
            found = parameters_of(form)
            if form and (not found <= allowed or (len(ids) == 1 and found != allowed)):
                raise InvariantError(f"{where}: {ids[0]!r} is translated with other parameters")
        texts[(message.context, ids[0])] = forms
    if len(texts) > catalogue_messages_max:
        raise InvariantError(f"{where}: more than {catalogue_messages_max} texts")
    return texts


def domains() -> tuple[str, ...]:
    """The catalogue domains shipped, by the English files' names (``messages`` first)."""
    folder = importlib.resources.files("topup.i18n").joinpath("locales", "en", "LC_MESSAGES")
    names = sorted(
        item.name.removesuffix(".po") for item in folder.iterdir() if item.name.endswith(".po")
    )
    return (DOMAIN, *(name for name in names if name != DOMAIN))


@functools.cache
def catalogue(locale: str, domain: str = DOMAIN) -> Catalog:
    """The gettext catalogue of one domain of one of LOCALES, as Babel reads it."""
    from babel.messages.pofile import read_po  # on first use: the command line starts faster

    if locale not in LOCALES:
        raise InvariantError(f"no catalogue for locale {locale!r}")
    shipped = importlib.resources.files("topup.i18n").joinpath(
        "locales", locale, "LC_MESSAGES", f"{domain}.po"
    )
    with shipped.open("rb") as handle:
        return read_po(handle, locale=locale, domain=domain)


def translations(locale: str) -> Translations:
    """The texts of ``locale``, or of its language, or English (``zh-CN`` -> zh_Hans)."""
    return _translations(resolve_or_default(locale, DEFAULT_LOCALE))


@functools.cache  # one per locale of LOCALES, whatever callers pass
def _translations(chosen: str) -> Translations:
    texts: dict[_Key, tuple[str, ...]] = {}
    plural_expr = ""
    for domain in domains():
        found = catalogue(chosen, domain)
        plural_expr = plural_expr or found.plural_expr
        for key, forms in _message_texts(found, f"{chosen}/LC_MESSAGES/{domain}.po").items():
            texts.setdefault(key, forms)  # the first domain's (a test keeps them all the same)
    return Translations(locale=chosen, texts=texts, plural=stdlib_gettext.c2py(plural_expr))


def keyed_catalogue_text(name: str) -> str:
    """The text of a keyed catalogue shipped as ``topup/messages/<name>`` (the error catalogue),
    for its module to parse, check (``InvariantError`` if broken) and keep."""
    return importlib.resources.files("topup").joinpath("messages", name).read_text("utf-8")
