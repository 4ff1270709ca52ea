"""What a reminder says, in the subscriber's language: a headline (the e-mail's subject, the
notification's title), what it means and what to do, and the link that does it. Babel domain
``reminders`` (babel/reminders.cfg).

Every auto-renewal problem code is a sentence naming the problem and its fix; the fix link goes
to the page that fixes it (save a payment card, choose another plan or method)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from topup.domain.cards import Card
from topup.domain.money import Money
from topup.domain.reminders import Reminder, ReminderKind
from topup.i18n import Translations, format_date, format_money, format_number, translations

PAYMENT_CARDS_PAGE = "/accounts/payment-cards"
AUTO_RENEWAL_PAGE = "/accounts/auto-renewal"
PREFERENCES_PAGE = "/accounts/reminders"
# The page that fixes each auto-renewal problem.
FIX_PAGES: Mapping[str, str] = {
    "payment_card_expired": PAYMENT_CARDS_PAGE,
    "payment_token_revoked": PAYMENT_CARDS_PAGE,
    "declined": PAYMENT_CARDS_PAGE,
    "amount_above_method_limit": AUTO_RENEWAL_PAGE,
    "plan_withdrawn": AUTO_RENEWAL_PAGE,
}


@dataclass(frozen=True, slots=True)
class ReminderText:
    headline: str  # the e-mail's subject, the notification's title
    body: str  # what it means and what to do
    action: str  # the link's label ("Renew now", "Fix it")
    link: str  # an absolute URL


@dataclass(frozen=True, slots=True)
class Facts:
    """What the texts are filled with, already formatted for the reader."""

    number: str
    date: str  # the reminder's date: validity or grace end, the charge's day
    days: int
    amount: str
    method: str
    plan: str
    data: str
    credit: str


def number_shown(e164: str) -> str:
    """``+60123456789`` -> ``+60 12-345 6789``."""
    try:
        parsed = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _detail_text(detail: Mapping[str, str | int], name: str) -> str:
    value = detail.get(name, "")
    return str(value)


def _moment(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def facts_of(
    reminder: Reminder,
    card: Card,
    *,
    locale: str,
    time_zone: str,
    grace_period_days: int,
    plan_names: Mapping[str, str],
    now: dt.datetime,
) -> Facts:
    detail = reminder.detail
    kind = reminder.base_kind
    ends: dt.datetime | None = card.validity_end
    if kind in (ReminderKind.GRACE_ENDING, ReminderKind.GRACE_ENTERED) and ends is not None:
        ends = ends + dt.timedelta(days=grace_period_days)
    if kind in (
        ReminderKind.AUTO_RENEWAL_COMING,
        ReminderKind.AUTO_RENEWAL_PROBLEM,
        ReminderKind.AUTO_RENEWAL_FAILED,
    ):
        ends = _moment(_detail_text(detail, "charge_at")) or ends
    days = 0  # whole days left, counting a part of a day as one ("ends in 1 day" at 12 h left)
    if ends is not None:
        days = max(1, math.ceil((ends - now) / dt.timedelta(days=1)))
    amount = ""
    currency = _detail_text(detail, "currency") or card.currency
    if str(detail.get("amount_minor", "")).lstrip("-").isdigit():
        amount = format_money(Money(int(detail["amount_minor"]), currency), locale)
    plan_code = _detail_text(detail, "plan_code")
    data = ""
    if str(detail.get("data_quota_mb", "")).isdigit():
        data = format_number(int(detail["data_quota_mb"]), locale) + " MB"
    else:
        data = format_number(card.data_quota_mb, locale) + " MB"
    return Facts(
        number=number_shown(card.msisdn),
        date="" if ends is None else format_date(ends, locale, time_zone=time_zone, width="long"),
        days=days,
        amount=amount,
        method=_detail_text(detail, "method"),
        plan=plan_names.get(plan_code, plan_code),
        data=data,
        credit=format_money(card.credit, locale),
    )


def problem_sentence(texts: Translations, problem: str, facts: Facts) -> str:
    """The problem an auto-renewal met, and how to fix it."""
    if problem == "payment_card_expired":
        return texts.gettext(
            "The saved payment card %(method)s has expired. Save your new card and choose it "
            "for automatic renewal.",
            method=facts.method,
        )
    if problem == "payment_token_revoked":
        return texts.gettext(
            "The payment provider no longer accepts the saved payment card %(method)s. Save the "
            "card again, or choose another one.",
            method=facts.method,
        )
    if problem == "amount_above_method_limit":
        return texts.gettext(
            "%(amount)s is more than %(method)s allows. Choose another payment method or a "
            "cheaper plan.",
            amount=facts.amount,
            method=facts.method,
        )
    if problem == "plan_withdrawn":
        return texts.gettext(
            "The plan %(plan)s is no longer sold. Choose another plan for automatic renewal.",
            plan=facts.plan,
        )
    if problem == "declined":
        return texts.gettext(
            "The bank declined the payment with %(method)s. Ask your bank, or choose another "
            "payment card.",
            method=facts.method,
        )
    return texts.gettext(
        "The payment could not be made. Check your automatic renewal and its payment card."
    )


def reminder_text(
    reminder: Reminder, facts: Facts, *, locale: str, renew_link: str, site: str
) -> ReminderText:
    """The reminder in ``locale``; links are absolute (``site`` is the public URL)."""
    texts = translations(locale)
    kind = reminder.base_kind
    renew = texts.gettext("Renew now")
    problem = _detail_text(reminder.detail, "problem")
    fix_link = site + FIX_PAGES.get(problem, AUTO_RENEWAL_PAGE)
    if kind is ReminderKind.VALIDITY_ENDING:
        headline = texts.ngettext(
            "The active period of %(number)s ends in %(count)d day",
            "The active period of %(number)s ends in %(count)d days",
            facts.days,
            number=facts.number,
        )
        body = texts.gettext(
            "It ends on %(date)s. Renew before then to keep your internet, data and credit.",
            date=facts.date,
        )
        return ReminderText(headline, body, renew, renew_link)
    if kind is ReminderKind.GRACE_ENTERED:
        headline = texts.gettext("The active period of %(number)s has ended", number=facts.number)
        body = texts.gettext(
            "The card has no internet now. It keeps its number in its grace period, until "
            "%(date)s: renew by then to get it back at once.",
            date=facts.date,
        )
        return ReminderText(headline, body, renew, renew_link)
    if kind is ReminderKind.GRACE_ENDING:
        headline = texts.ngettext(
            "The grace period of %(number)s ends in %(count)d day",
            "The grace period of %(number)s ends in %(count)d days",
            facts.days,
            number=facts.number,
        )
        body = texts.gettext(
            "Renew by %(date)s, or the card expires: its number, credit and data are lost.",
            date=facts.date,
        )
        return ReminderText(headline, body, renew, renew_link)
    if kind is ReminderKind.DATA_LOW:
        headline = texts.gettext("%(number)s is running low on data", number=facts.number)
        body = texts.gettext(
            "%(data)s of data is left. Renew or buy more to stay connected.", data=facts.data
        )
        return ReminderText(headline, body, renew, renew_link)
    if kind is ReminderKind.DATA_EXHAUSTED:
        headline = texts.gettext("%(number)s has used all its data", number=facts.number)
        body = texts.gettext(
            "Its internet is off until the card is renewed. Renew now to get back online."
        )
        return ReminderText(headline, body, renew, renew_link)
    if kind is ReminderKind.CREDIT_LOW:
        headline = texts.gettext("The credit of %(number)s is running low", number=facts.number)
        body = texts.gettext(
            "%(credit)s of credit is left. Reload to stay connected.", credit=facts.credit
        )
        return ReminderText(headline, body, texts.gettext("Reload now"), renew_link)
    if kind is ReminderKind.AUTO_RENEWAL_COMING:
        headline = texts.gettext(
            "%(number)s renews automatically on %(date)s", number=facts.number, date=facts.date
        )
        body = texts.gettext(
            "We will charge %(amount)s to %(method)s for %(plan)s. Nothing to do: the card "
            "stays connected.",
            amount=facts.amount,
            method=facts.method,
            plan=facts.plan,
        )
        return ReminderText(
            headline, body, texts.gettext("See automatic renewal"), site + AUTO_RENEWAL_PAGE
        )
    if kind is ReminderKind.AUTO_RENEWAL_PROBLEM:
        headline = texts.gettext(
            "The automatic renewal of %(number)s on %(date)s will fail",
            number=facts.number,
            date=facts.date,
        )
        body = problem_sentence(texts, problem, facts)
        return ReminderText(headline, body, texts.gettext("Fix it now"), fix_link)
    if kind is ReminderKind.AUTO_RENEWAL_SUCCEEDED:
        headline = texts.gettext("%(number)s was renewed automatically", number=facts.number)
        body = texts.gettext(
            "We charged %(amount)s to %(method)s for %(plan)s. Its new active period ends on "
            "%(date)s.",
            amount=facts.amount,
            method=facts.method,
            plan=facts.plan,
            date=facts.date,
        )
        return ReminderText(
            headline, body, texts.gettext("See automatic renewal"), site + AUTO_RENEWAL_PAGE
        )
    headline = texts.gettext("The automatic renewal of %(number)s failed", number=facts.number)
    body = (
        problem_sentence(texts, problem, facts)
        + " "
        + texts.gettext(
            "When its active period ends the card goes into its grace period as usual: fix the "
            "problem or renew it yourself to stay connected."
        )
    )
    return ReminderText(headline, body, texts.gettext("Fix it now"), fix_link)


def sms_text(locale: str, text: ReminderText) -> str:
    texts = translations(locale)
    return texts.gettext(
        "topup: %(headline)s. %(body)s %(action)s: %(link)s",
        headline=text.headline,
        body=text.body,
        action=text.action,
        link=text.link,
    )


def email_body(
    locale: str, text: ReminderText, *, number: str, unsubscribe_link: str, preferences_link: str
) -> str:
    texts = translations(locale)
    lines = [
        text.headline,
        "",
        text.body,
        "",
        f"{text.action}: {text.link}",
        "",
        "--",
        texts.gettext(
            "You get this e-mail because reminders about %(number)s are on.", number=number
        ),
        texts.gettext("Stop these e-mails about this card: %(link)s", link=unsubscribe_link),
        texts.gettext("Choose the reminders you get: %(link)s", link=preferences_link),
    ]
    return "\n".join(lines) + "\n"
