"""Languages: the locales the platform speaks, Accept-Language negotiation, the text catalogues and
Babel formatting of money, numbers, dates and relative times.

Every channel (the API, the command line, e-mails, receipts and the web pages) takes its locale
from ``negotiate`` or ``resolve_or_default``, its texts from ``translations(locale)`` and shows
values through the ``format_*`` functions. Not part of the domain, which stays free of Babel.
"""

from topup.i18n.catalogues import N_, Translations, keyed_catalogue_text, translations
from topup.i18n.formatting import (
    format_date,
    format_datetime,
    format_duration,
    format_money,
    format_number,
    format_relative,
    format_time,
)
from topup.i18n.locales import (
    DEFAULT_LOCALE,
    LOCALES,
    language_tag,
    negotiate,
    preferred_tags,
    resolve,
    resolve_or_default,
)

__all__ = [
    "DEFAULT_LOCALE",
    "LOCALES",
    "N_",
    "Translations",
    "format_date",
    "format_datetime",
    "format_duration",
    "format_money",
    "format_number",
    "format_relative",
    "format_time",
    "keyed_catalogue_text",
    "language_tag",
    "negotiate",
    "preferred_tags",
    "resolve",
    "resolve_or_default",
    "translations",
]
