"""Help: activation times per method, what each error means, how to reach support.

- How long activation takes: for each method offered on this channel (its configuration: kind,
  limits per payment and per day, its own activation times if it has them), when the payment is
  confirmed (at once for a payment card; once approved in the wallet, within
  ``requires_action_timeout_s``, for an e-wallet), then the activation's typical delay and when
  to contact customer service (the method's, else the platform's activation limits).
- What each error means: every code of the error catalogue (``error_entries``), with its text in
  the visitor's language, grouped by what it is about (each group folded, its count shown); the
  codes only staff and developers meet come last. Each entry has an anchor
  (``/help#error-<code>``) for an error page to link: the browser unfolds its group.
- How to contact customer service: the operator profile's ``[support]``.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Sequence
from dataclasses import dataclass

from babel.lists import format_list
from fastapi import APIRouter, Request
from starlette.responses import Response

from topup.domain.methods import MethodKind, PaymentMethod
from topup.domain.money import Money
from topup.entrypoints.http.problems import error_entries
from topup.entrypoints.web.shared.language import page_language
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sales_channel import sales_channel
from topup.i18n import N_, resolve_or_default
from topup.i18n.formatting import babel_locale
from topup.services.context import Services

router = APIRouter()

PLACEHOLDER_SHOWN = "…"  # what a text's {placeholder} reads as on the help page

# What the errors are about, in the order shown: (anchor, title, codes, code prefixes). A code in
# none of them is one only staff and developers meet (configuration, files, API keys, webhooks).
ERROR_GROUPS: tuple[tuple[str, str, frozenset[str], tuple[str, ...]], ...] = (
    (
        "cards",
        N_("Your card and its number"),
        frozenset(
            {
                "card_unknown",
                "card_expired",
                "card_already_linked",
                "bill_already_paid",
                "bill_payment_in_progress",
                "nothing_to_pay",
            }
        ),
        ("card_number_",),
    ),
    (
        "plans",
        N_("Plans and renewals"),
        frozenset({"activation_already_sent"}),
        ("plan_", "renewal_"),
    ),
    (
        "methods",
        N_("Payment methods and their limits"),
        frozenset(
            {
                "ewallet_daily_limit_reached",
                "payer_declined",
                "international_payments_not_allowed",
                "payment_card_required",
            }
        ),
        ("method_", "amount_", "wallet_account_"),
    ),
    (
        "payment-cards",
        N_("Paying by credit or debit card"),
        frozenset(
            {
                "authentication_failed",
                "card_declined",
                "card_details_invalid",
                "card_is_credit",
                "card_is_debit",
                "expired_card",
                "incorrect_cvc",
                "insufficient_funds",
                "payment_failed",
                "processing_error",
                "lost_card",
                "stolen_card",
                "card_velocity_exceeded",
                "fraudulent",
            }
        ),
        ("cvc_", "expiry_", "holder_name_", "payment_card_", "payment_password_", "payment_"),
    ),
    (
        "account",
        N_("Your account, e-mail and sign-in"),
        frozenset(
            {
                "authentication_required",
                "token_invalid",
                "confirmation_token_invalid",
                "reset_token_invalid",
                "sms_unavailable",
            }
        ),
        ("email_", "login_", "password_", "link_code_"),
    ),
    (
        "receipts",
        N_("Your receipts"),
        frozenset(),
        ("receipt_",),
    ),
    (
        "pages",
        N_("Pages and trying again"),
        frozenset(
            {
                "rate_limited",
                "csrf_failed",
                "internal_error",
                "database_unavailable",
                "mail_unavailable",
                "gateway_unreachable",
                "not_found",
                "conflict",
                "invalid_request",
                "field_required",
                "field_too_long",
                "field_too_short",
                "field_invalid",
                "language_unsupported",
                "channel_not_allowed",
            }
        ),
        (),
    ),
)
STAFF_GROUP = ("staff", N_("For the operator's staff and developers"))


@dataclass(frozen=True, slots=True)
class ErrorShown:
    code: str
    text: str  # in the visitor's language, placeholders shown as PLACEHOLDER_SHOWN
    retryable: bool


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    anchor: str
    title: str  # a message id: the template translates it
    entries: tuple[ErrorShown, ...]
    for_staff: bool = False  # met only by the operator's staff and developers


@dataclass(frozen=True, slots=True)
class MethodLimits:
    method: PaymentMethod
    amount_min: Money
    amount_max: Money
    daily_max: Money | None  # per payer account and day (e-wallets)


@dataclass(frozen=True, slots=True)
class MethodGroup:
    """Methods of one kind that take as long to activate: how paying goes, and how long."""

    kind: MethodKind
    approval: dt.timedelta | None  # e-wallets: how long the payer has to approve the payment
    typical: dt.timedelta  # from payment to activation, usually
    late_after: dt.timedelta  # after this, the subscriber should contact customer service
    methods: tuple[MethodLimits, ...]


@dataclass(frozen=True, slots=True)
class ActivationHelp:
    groups: tuple[MethodGroup, ...]
    not_offered: tuple[PaymentMethod, ...]  # configured but disabled (R10): say so


def without_placeholders(text: str) -> str:
    """``{method} takes at most {maximum}`` -> ``… takes at most …`` (``{{`` stays ``{``; a
    sentence ending on a placeholder ends on the ellipsis, not ``….``)."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(text):
        parts.append(literal)
        if name is not None:
            parts.append(PLACEHOLDER_SHOWN)
    return "".join(parts).replace(PLACEHOLDER_SHOWN + ".", PLACEHOLDER_SHOWN)


def _group_of(code: str) -> str:
    for anchor, _, codes, prefixes in ERROR_GROUPS:
        if code in codes or code.startswith(prefixes):
            return anchor
    return STAFF_GROUP[0]


def error_groups(locale: str) -> list[ErrorGroup]:
    """Every error of the catalogue, in its group, with its text in ``locale``."""
    chosen = resolve_or_default(locale)
    found: dict[str, list[ErrorShown]] = {}
    for entry in error_entries():
        shown = ErrorShown(entry.code, without_placeholders(entry.text[chosen]), entry.retryable)
        found.setdefault(_group_of(entry.code), []).append(shown)
    groups = [
        ErrorGroup(anchor, title, tuple(found[anchor]))
        for anchor, title, _, _ in ERROR_GROUPS
        if found.get(anchor)
    ]
    staff_anchor, staff_title = STAFF_GROUP
    if found.get(staff_anchor):
        groups.append(ErrorGroup(staff_anchor, staff_title, tuple(found[staff_anchor]), True))
    return groups


def activation_help(services: Services, channel: str) -> ActivationHelp:
    """The methods offered on ``channel`` (the web site's or the app's: no region), grouped by
    kind and activation times (a method's own, from its configuration, else the platform's
    limits), in the configured order."""
    approval = dt.timedelta(seconds=services.limits.payments.requires_action_timeout_s)
    defaults = services.limits.activation
    grouped: dict[tuple[MethodKind, int, int], list[MethodLimits]] = {}
    for method in services.methods.offered(channel=channel, region=None):
        typical_s, late_s = method.activation_times_s(
            typical_default_s=defaults.activation_typical_delay_s,
            late_default_s=defaults.activation_late_after_s,
        )
        limits = MethodLimits(method, method.amount_min, method.amount_max, method.daily_max)
        grouped.setdefault((method.kind, typical_s, late_s), []).append(limits)
    groups = tuple(
        MethodGroup(
            kind=kind,
            approval=approval if kind is MethodKind.EWALLET else None,
            typical=dt.timedelta(seconds=typical_s),
            late_after=dt.timedelta(seconds=late_s),
            methods=tuple(methods),
        )
        for (kind, typical_s, late_s), methods in grouped.items()
    )
    not_offered = tuple(
        method
        for method in services.methods.methods
        if not method.enabled and channel in method.channels
    )
    return ActivationHelp(groups=groups, not_offered=not_offered)


def names_of(methods: Sequence[PaymentMethod], locale: str) -> str:
    """``Alipay and WeChat Pay``, ``支付宝和微信支付``: the methods' names as a list in ``locale``."""
    chosen = resolve_or_default(locale)
    return format_list([method.name(chosen) for method in methods], locale=babel_locale(chosen))


def first_capital(text: str) -> str:
    """``credit card`` -> ``Credit card`` for a heading (the rest is left as it is written)."""
    return text[:1].upper() + text[1:]


@router.get("/help")
async def help_page(request: Request) -> Response:
    services: Services = request.app.state.application.services
    locale = page_language(request)
    activation = activation_help(services, sales_channel(request))
    return renderer_of(request).render(
        request,
        "portal/help/help.html",
        {
            "activation": activation,
            "names_of": lambda methods: names_of(methods, locale),
            "first_capital": first_capital,
            "error_groups": error_groups(locale),
        },
    )
