"""A moment as a subscriber reads it on the auto-renewal and card timeline pages: the long date
and the hour and minute, in the profile's time zone, joined as the locale joins them (CLDR's
date-time pattern): ``December 10, 2026, 11:04 AM``, ``2026年12月10日 11:04``."""

from __future__ import annotations

import datetime as dt

from topup.entrypoints.web.shared.rendering import Page
from topup.i18n.formatting import babel_locale


def date_and_time(page: Page, moment: dt.datetime) -> str:
    joined = str(babel_locale(page.locale).datetime_formats["medium"])
    return joined.replace("{1}", page.date(moment, "long")).replace("{0}", page.time(moment))
