"""A renewal request and the checks made on it before the database is asked: channel,
idempotency key, and the payment card or wallet account (tokenised by the gateway)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from topup.domain.errors import (
    InputError,
)
from topup.domain.methods import MethodKind, wallet_account_of
from topup.domain.payment_card import (
    CardFacts,
    CardFunding,
    PaymentCardDetailsInvalid,
    check_card_details,
    check_international,
    check_method_matches,
    normalize_card_number,
)
from topup.domain.plans import CHANNELS
from topup.ports import (
    PaymentCardDetails,
    PaymentGateway,
    PaymentToken,
)
from topup.services.context import Services

IDEMPOTENCY_KEY_LENGTH_MAX = 255


@dataclass(frozen=True)
class RenewalRequest:
    card_number: str
    plan_code: str
    payment: PaymentCardDetails | None  # card methods; None for e-wallets
    channel: str = "web"
    idempotency_key: str | None = None
    method: str = "credit_card"
    region: str | None = None  # where the kiosk or store stands; None on the web, app and API
    wallet_account: str | None = None  # e-wallets: the phone number registered with the wallet
    # Cards paid through the API: the token the payer's device got from the gateway (the card's
    # number never reaches topup); instead of ``payment``.
    payment_token: str | None = None
    receipt_email: str | None = None  # e-mail the receipt here once paid
    receipt_language: str | None = None
    # Auto-renewal: charged by the merchant with the payer absent, on a saved token (no CVC, no
    # 3-D Secure); recorded on the payment and told to the gateway.
    merchant_initiated: bool = False


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InputError(
            f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}",
            code="channel_unknown",
            field="channel",
            params={"channel": channel, "channels": ", ".join(CHANNELS)},
        )


def check_request(request: RenewalRequest) -> str:
    check_channel(request.channel)
    key = request.idempotency_key
    if key is None:
        return ""
    if not key.strip() or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InputError(
            f"an idempotency key is 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            code="idempotency_key_invalid",
            field="idempotency_key",
            params={"length_max": str(IDEMPOTENCY_KEY_LENGTH_MAX)},
        )
    return key


async def payment_token_for(
    services: Services, request: RenewalRequest
) -> tuple[PaymentGateway, PaymentToken]:
    """The gateway that will take this payment and the token it gave for the payer's card or
    wallet account. The method is judged first, before its details; its amount limits are
    checked at admission (see ``choose``)."""
    method = services.methods.judge(request.method, channel=request.channel, region=request.region)
    if method is not None and method.kind is MethodKind.EWALLET:
        account = wallet_account_of(method, request.wallet_account, services.profile)
        gateway = services.gateway_named(method.gateway)
        return gateway, gateway.tokenize_account(method.code.removeprefix("ewallet:"), account)
    if request.payment_token is not None and request.payment is None:
        gateway = services.gateway
        if method is not None and method.gateway:
            gateway = services.gateway_named(method.gateway)
        payment_token = await gateway.payment_token_of(request.payment_token)
        try:
            funding = CardFunding(payment_token.funding)
        except ValueError:
            funding = CardFunding.UNKNOWN
        facts = CardFacts(
            funding=funding,
            issuer_country=_country_code(payment_token.issuer_country),
            international_payments=payment_token.international_payments,
        )
        # Before any charge, as for typed details: the funding against the method, and whether
        # the issuer allows a payment from this country (R7b, R7c).
        check_method_matches(request.method, facts)
        check_international(facts, services.profile.country)
        return gateway, payment_token
    if request.payment is None:
        raise InputError(
            "Enter the payment card's number, expiry and security code.",
            code="payment_card_required",
            field="payment",
        )
    _check_payment_card(services, request, request.payment)
    gateway = services.gateway
    if method is not None and method.gateway:
        gateway = services.gateway_named(method.gateway)
    card = request.payment
    clean = replace(card, number=normalize_card_number(card.number))  # as it was checked
    return gateway, await gateway.tokenize(clean)


def _check_payment_card(
    services: Services, request: RenewalRequest, card: PaymentCardDetails
) -> None:
    """Before the gateway sees anything: every card field, the card's funding against the
    method chosen, and whether its issuer allows a payment from this country (R7b, R7c)."""
    facts = services.card_facts(normalize_card_number(card.number))
    today = services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)).date()
    try:
        check_card_details(
            card, today=today, holder_name_required=False, holder_name=None, facts=facts
        )
    except PaymentCardDetailsInvalid as error:
        if len(error.problems) == 1:  # one bad field: its own code says it best
            raise error.problems[0] from None
        raise
    check_method_matches(request.method, facts)
    check_international(facts, services.profile.country)


def _country_code(text: str) -> str:
    """A PSP's issuer country as ``CardFacts`` takes it: upper-case alpha-2, or "" if unusable."""
    country = text.strip().upper()
    return country if len(country) == 2 and country.isascii() and country.isalpha() else ""
