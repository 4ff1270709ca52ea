"""Renewing a card without an account (R2, R7): the card's page and its plans, the methods
offered for a plan with their limits (and those that cannot be used, with why: R7c), and the
payment form. Paying and the payment password are in ``renewal_payment``.

Every page reads the card and the plans once (``queries.public_plans_by_id``); the methods are
judged from the configuration, without a query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from topup.domain.cards import CardKind, CardStatus
from topup.domain.errors import ConflictError, InvariantError, NotFoundError, TopupError
from topup.domain.methods import ONLINE_KINDS, MethodKind, PaymentMethod
from topup.domain.money import Money
from topup.domain.plans import PlanKind
from topup.entrypoints.http.problems import error_text
from topup.entrypoints.web.portal.renewal_checkout import (
    attempt_of,
    card_of_reference,
    card_path,
    methods_path,
    pay_path,
)
from topup.entrypoints.web.shared.forms import NO_ERRORS, FormErrors
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.entrypoints.web.shared.sales_channel import sales_channel
from topup.services import queries
from topup.services.context import Services
from topup.services.views import CardPlans, PlanOffer

router = APIRouter()

Reference = Annotated[str, Path(min_length=1, max_length=120)]
PlanCode = Annotated[str, Path(min_length=1, max_length=64)]
MethodCode = Annotated[str, Query(min_length=1, max_length=64)]
Attempt = Annotated[str, Query(max_length=3)]
CARD_METHOD_KINDS = frozenset({MethodKind.CARD})
# The sandbox PSP's tokeniser (same origin); a real PSP's script would name its own.
TOKENISER_URL = "/sandbox/psp/v1/tokens"
# The codes the payment form's script checks as they are typed (domain/payment_card.py's).
CARD_CHECK_CODES = (
    "payment_card_number_empty",
    "payment_card_number_invalid_characters",
    "payment_card_number_wrong_length",
    "payment_card_number_bad_check_digit",
    "expiry_month_invalid",
    "expiry_year_invalid",
    "payment_card_expired",
    "cvc_invalid_characters",
    "cvc_wrong_length",
)
_PLACEHOLDERS = ("character", "length", "example_short", "example_long", "expiry", "digits")


@dataclass(frozen=True, slots=True)
class MethodChoice:
    """A configured method as this payer sees it: usable for this amount here, or why not."""

    method: PaymentMethod
    reason: str | None  # None: usable; else disabled, in_store, not_yet, not_here, below, above

    @property
    def usable(self) -> bool:
        return self.reason is None

    @property
    def takes_card(self) -> bool:
        return self.method.kind in CARD_METHOD_KINDS


@dataclass(frozen=True, slots=True)
class Checkout:
    """One page's view of the checkout: the card (as anyone may see it), its plans, and, once a
    plan is chosen, that plan at this card's price."""

    reference: str
    found: CardPlans
    offer: PlanOffer | None = None

    @property
    def card(self) -> Any:
        return self.found.card

    @property
    def chosen(self) -> PlanOffer:
        if self.offer is None:
            raise InvariantError("a page of a chosen plan was given a checkout without one")
        return self.offer

    @property
    def amount(self) -> Money:
        return self.chosen.price

    @property
    def plan_code(self) -> str:
        return self.chosen.plan.code


def services_of(request: Request) -> Services:
    services: Services = request.app.state.application.services
    return services


async def load_checkout(request: Request, reference: str, plan_code: str | None = None) -> Checkout:
    """The checkout a page's URL names; with ``plan_code``, a plan this card may buy here now."""
    services = services_of(request)
    card_id = card_of_reference(services, reference)
    found = await queries.public_plans_by_id(
        services, card_id=card_id, channel=sales_channel(request)
    )
    if plan_code is None:
        return Checkout(reference, found)
    offer = next((item for item in found.plans if item.plan.code == plan_code), None)
    if offer is None:
        raise NotFoundError(
            f"there is no plan {plan_code!r} for this card here",
            code="plan_unknown",
            field="plan",
            params={"plan": plan_code},
        )
    check_payable(found, offer)
    return Checkout(reference, found, offer)


def check_payable(found: CardPlans, offer: PlanOffer) -> None:
    """As the renewal will judge it: an expired prepaid card and an empty bill take nothing."""
    card = found.card
    if card.kind is CardKind.PREPAID and card.status is CardStatus.EXPIRED:
        raise ConflictError(
            "this card's grace period has ended; customer service can help restore the number",
            code="card_expired",
        )
    if offer.plan.kind is PlanKind.POSTPAID_BILL and offer.price.is_zero:
        raise ConflictError("this card has no bill to pay", code="nothing_to_pay")


def method_choices(services: Services, channel: str, amount: Money) -> list[MethodChoice]:
    """Every configured method, those usable first (in the configured order), then the others
    with their reason."""
    choices = [
        MethodChoice(method, _reason(method, channel, amount))
        for method in services.methods.methods
    ]
    return [c for c in choices if c.usable] + [c for c in choices if not c.usable]


def _reason(method: PaymentMethod, channel: str, amount: Money) -> str | None:
    if not method.enabled:
        return "disabled"
    if method.kind is MethodKind.CASH:
        return "in_store"
    if method.kind not in ONLINE_KINDS:
        return "not_yet"
    if not method.offered(channel=channel, region=None):
        return "not_here"
    if amount < method.amount_min:
        return "below"
    if amount > method.amount_max:
        return "above"
    return None


_KIND_ORDER = {PlanKind.POSTPAID_BILL: 0, PlanKind.PREPAID_PACK: 1, PlanKind.RELOAD: 2}


def _plan_order(offer: PlanOffer) -> tuple[int, int, str]:
    """The bill first, then data packs, then reloads, each cheapest first."""
    return _KIND_ORDER.get(offer.plan.kind, 3), offer.price.minor, offer.plan.code


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    return renderer_of(request).render(
        request, f"portal/renewal/{template}", context, status_code=status_code
    )


@router.get("/renew/{reference}", include_in_schema=False)
async def card_page(request: Request, reference: Reference) -> Response:
    """The card's kind, status and validity or grace in plain words, and the plans it may buy."""
    checkout = await load_checkout(request, reference)
    card = checkout.card
    renewable = not (card.kind is CardKind.PREPAID and card.status is CardStatus.EXPIRED)
    return _render(
        request,
        "card.html",
        {
            "checkout": checkout,
            "card": card,
            "renewable": renewable,
            "plans": sorted(checkout.found.plans, key=_plan_order) if renewable else [],
            "methods_path": lambda code: methods_path(reference, code),
            "channel": sales_channel(request),
        },
    )


@router.get("/renew/{reference}/{plan_code}", include_in_schema=False)
async def methods_page(
    request: Request, reference: Reference, plan_code: PlanCode, attempt: Attempt = "1"
) -> Response:
    """The methods offered for this plan here, with their limits; the others with why not."""
    checkout = await load_checkout(request, reference, plan_code)
    channel = sales_channel(request)
    choices = method_choices(services_of(request), channel, checkout.amount)
    return _render(
        request,
        "methods.html",
        {
            "checkout": checkout,
            "choices": choices,
            "usable": [choice for choice in choices if choice.usable],
            "pay_path": pay_path(reference, plan_code),
            "card_path": card_path(reference),
            "channel": channel,
            "attempt": attempt_of(attempt),
        },
    )


@router.get("/renew/{reference}/{plan_code}/pay", include_in_schema=False)
async def pay_page(
    request: Request,
    reference: Reference,
    plan_code: PlanCode,
    method: MethodCode = "credit_card",
    attempt: Attempt = "1",
) -> Response:
    checkout = await load_checkout(request, reference, plan_code)
    choices = method_choices(services_of(request), sales_channel(request), checkout.amount)
    chosen = next((c for c in choices if c.method.code == method and c.usable), None)
    if chosen is None:
        return RedirectResponse(methods_path(reference, plan_code), status_code=303)
    return render_pay_page(request, checkout, chosen, choices, attempt=attempt_of(attempt))


def render_pay_page(
    request: Request,
    checkout: Checkout,
    chosen: MethodChoice,
    choices: list[MethodChoice],
    *,
    attempt: int,
    errors: FormErrors = NO_ERRORS,
    declined: TopupError | None = None,
    payment_token: str = "",
    wallet_account: str = "",
    switch_method: str | None = None,
    status_code: int = 200,
) -> Response:
    """The payment form of one attempt (its number is the form's idempotency key: see
    ``renewal_checkout``), with what went wrong with the last one, if anything."""
    services = services_of(request)
    locale = renderer_of(request).page(request).locale
    plan_code = checkout.plan_code
    today = services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)).date()
    return _render(
        request,
        "pay.html",
        {
            "checkout": checkout,
            "chosen": chosen,
            "alternatives": [
                c for c in choices if c.usable and c.method.code != chosen.method.code
            ],
            "attempt": attempt,
            "errors": errors,
            "declined": declined,
            "payment_token": payment_token,
            "wallet_account": wallet_account,
            "switch_method": next(
                (c for c in choices if c.usable and c.method.code == switch_method), None
            ),
            "pay_path": pay_path(checkout.reference, plan_code),
            "methods_path": methods_path(checkout.reference, plan_code),
            "tokeniser_url": TOKENISER_URL,
            "today": f"{today.year:04d}-{today.month:02d}",
            "card_texts": card_check_texts(locale),
        },
        status_code=status_code,
    )


def card_check_texts(locale: str) -> dict[str, str]:
    """The messages of the checks the script makes, in the visitor's language, with their
    placeholders kept (``{length}``) for the script to fill: the error catalogue's own texts."""
    placeholders = {name: "{" + name + "}" for name in _PLACEHOLDERS}
    return {
        code: error_text(TopupError(code, code=code, params=placeholders), locale)
        for code in CARD_CHECK_CODES
    }
