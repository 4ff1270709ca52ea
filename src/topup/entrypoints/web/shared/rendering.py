"""Pages from templates: one Jinja2 environment for all channels, a context of texts and
formatters in the visitor's language, and a partial (one named block) from the same view.

A template receives the typed views a service returned and formats them itself through ``page``
(``page._``, ``page.money``, ``page.date`` ...), so a view is never formatted in a route. A
request with the header ``X-Topup-Partial: <block>`` gets only that block of the page (the
scripts use it for live updates); everything else gets the whole page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from topup.domain.money import Money
from topup.entrypoints.web.shared.csrf import CSRF_FIELD, csrf_token
from topup.entrypoints.web.shared.language import language_choices, page_language
from topup.entrypoints.web.shared.static_files import StaticAssets
from topup.i18n import (
    Translations,
    format_date,
    format_datetime,
    format_duration,
    format_money,
    format_number,
    format_relative,
    format_time,
    language_tag,
    translations,
)
from topup.services.context import Services

PARTIAL_HEADER = "x-topup-partial"
PARTIAL_NAME_LENGTH_MAX = 40
SHARED_TEMPLATES = Path(__file__).parent / "templates"
SHARED_STATIC = Path(__file__).parent / "static" / "shared"
# The policy of every page: files of this site only, no inline script, nothing framed.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Page:
    """What every template sees as ``page``: the visitor's language and the ways to show values."""

    request: Request
    services: Services
    locale: str
    texts: Translations
    static: StaticAssets

    @property
    def lang(self) -> str:
        return language_tag(self.locale)

    @property
    def path(self) -> str:
        query = self.request.url.query
        return self.request.url.path + (f"?{query}" if query else "")

    @cached_property
    def now(self) -> dt.datetime:
        return self.services.clock.now()

    @property
    def time_zone(self) -> str:
        return self.services.profile.time_zone

    @property
    def languages(self) -> list[tuple[str, str, str]]:
        return language_choices()

    @property
    def csrf_field(self) -> str:
        return CSRF_FIELD

    @cached_property
    def csrf_token(self) -> str:
        return csrf_token(self.request)

    def _(self, message: str, **parameters: object) -> str:
        return self.texts.gettext(message, **parameters)

    def gettext(self, message: str, **parameters: object) -> str:
        return self.texts.gettext(message, **parameters)

    def ngettext(self, singular: str, plural: str, count: int, **parameters: object) -> str:
        return self.texts.ngettext(singular, plural, count, **parameters)

    def pgettext(self, context: str, message: str, **parameters: object) -> str:
        return self.texts.pgettext(context, message, **parameters)

    def money(self, amount: Money) -> str:
        return format_money(amount, self.locale)

    def number(self, value: int | Decimal) -> str:
        return format_number(value, self.locale)

    def datetime(self, moment: dt.datetime, width: str = "medium") -> str:
        return format_datetime(moment, self.locale, time_zone=self.time_zone, width=width)  # type: ignore[arg-type]

    def date(self, moment: dt.datetime, width: str = "medium") -> str:
        return format_date(moment, self.locale, time_zone=self.time_zone, width=width)  # type: ignore[arg-type]

    def time(self, moment: dt.datetime) -> str:
        return format_time(moment, self.locale, time_zone=self.time_zone)

    def relative(self, moment: dt.datetime) -> str:
        """``in 3 days``, ``2 hours ago``, from the moment the page is rendered."""
        return format_relative(moment, self.locale, now=self.now)

    def duration(self, length: dt.timedelta) -> str:
        return format_duration(length, self.locale)

    def static_url(self, name: str) -> str:
        return self.static.url(name)


class Renderer:
    """The one environment: every channel's templates folder (``<channel>/...`` names inside)
    and the shared one (``shared/base.html``, ``shared/forms.html``)."""

    def __init__(self, template_folders: Sequence[Path], static: StaticAssets) -> None:
        self.static = static
        self.environment = Environment(
            loader=FileSystemLoader([SHARED_TEMPLATES, *template_folders]),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )

    def page(self, request: Request) -> Page:
        locale = page_language(request)
        services: Services = request.app.state.application.services
        return Page(request, services, locale, translations(locale), self.static)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The page, or the block the request asked for (``X-Topup-Partial``) if the template
        has one of that name."""
        page = self.page(request)
        values = {
            "page": page,
            "_": page.gettext,
            "gettext": page.gettext,
            "ngettext": page.ngettext,
            "pgettext": page.pgettext,
            **(context or {}),
            # The base template's header links, <channel>/_header_links.html: set after the
            # page's own values, so that a view's "channel" (a sales channel) cannot hide them.
            "layout_channel": template.partition("/")[0],
        }
        found = self.environment.get_template(template)
        partial = request.headers.get(PARTIAL_HEADER, "")[:PARTIAL_NAME_LENGTH_MAX]
        if partial and partial in found.blocks:
            block_context = found.new_context(values)
            # What the template sets up at its top level (``{% import ... as forms %}``) is
            # seen by its blocks in a whole page: run it, then render the block alone.
            for _ in found.root_render_func(block_context):
                pass
            html = "".join(found.blocks[partial](block_context))
        else:
            html = found.render(values)
        answer_headers = {
            "content-security-policy": PAGE_POLICY,
            "content-language": page.lang,
            "vary": "Accept-Language, Cookie, X-Topup-Partial",
            **(headers or {}),
        }
        return HTMLResponse(html, status_code=status_code, headers=answer_headers)


def renderer_of(request: Request) -> Renderer:
    found: Renderer = request.app.state.renderer
    return found
