"""A sandbox payment gateway: deterministic, stateless, safe for demos and tests.

Every answer is derived from the card token and the ``ChargeRequest`` alone, so several processes
(a CLI, a worker, a web server) talk to "the same" sandbox without sharing memory. Tokens are
signed with an HMAC key and carry the card's behaviour, brand, funding, last four digits, expiry
and issuer country -- never the card number or the CVC.

Test card numbers (any expiry not in the past; CVC 3 digits, 4 for American Express)
==================================================================================

Stripe's published test numbers (docs.stripe.com/testing: cards by brand, declined payments, fraud
prevention). A decline carries topup's code for Stripe's decline code (one code each, translated
at this boundary); Stripe asks that lost, stolen and fraudulent cards be shown to the payer as a
plain decline, and their texts do so:

================  ==========  =========  =========  =======================  ======================
number            brand       charge     retrieve   Stripe's decline code    topup's code
================  ==========  =========  =========  =======================  ======================
4242424242424242  visa        succeeded  succeeded
4000056655665556  visa debit  succeeded  succeeded
5555555555554444  mastercard  succeeded  succeeded
378282246310005   amex        succeeded  succeeded
4000000000000002  visa        declined   declined   generic_decline          card_declined
4000000000009995  visa        declined   declined   insufficient_funds       insufficient_funds
4000000000009987  visa        declined   declined   lost_card                lost_card
4000000000009979  visa        declined   declined   stolen_card              stolen_card
4000000000000069  visa        declined   declined   expired_card             expired_card
4000000000000127  visa        declined   declined   incorrect_cvc            incorrect_cvc
4000000000000119  visa        declined   declined   processing_error         processing_error
4000000000006975  visa        declined   declined   card_velocity_exceeded   card_velocity_exceeded
4000000000000341  visa        declined   declined   card_declined            card_declined
4000000000000101  visa        declined   declined   incorrect_cvc            incorrect_cvc
4100000000000019  visa        declined   declined   fraudulent (blocked)     fraudulent
4000000000004954  visa        declined   declined   fraudulent (blocked)     fraudulent
4000000000009235  visa        succeeded  succeeded  (elevated risk: not blocked)
4000000000003220  visa        pending    pending    requires_action="authenticate" (see below)
4000002760003184  visa        pending    pending    requires_action="authenticate" (always)
4000002500003155  visa        pending    pending    requires_action="authenticate" (on session)
4000000000003063  visa        pending    pending    requires_action="authenticate" (3DS required)
4000008400001629  visa        pending    pending    card_declined (*)        card_declined (*)
4000008260003178  visa        pending    pending    insufficient_funds (*)   insufficient_funds (*)
================  ==========  =========  =========  =======================  ======================

(*) requires_action="authenticate" first, like 3220; the correct answer is then declined with this
code (Stripe's "declined after authentication" cards).

0341 is Stripe's "decline after attaching" (there is no attaching here, so every charge is
declined), 0101 its failed CVC check and 4954 its highest-risk card, both blocked as Stripe's
default Radar rules do; 0019 is always blocked. Stripe's incorrect_number card, 4242 4242 4242
4241, fails the Luhn check and is refused before any token is made
(``payment_card_number_bad_check_digit``).

Our own numbers (Visa; constants ``CARD_...`` below):

================  =========  =========  ==================================================
number            charge     retrieve   meaning
================  =========  =========  ==================================================
4000009990000104  declined   declined   international_payments_not_allowed, issuer US
4000009990000203  unknown    succeeded  gateway timeout; the charge was taken
4000009990000302  unknown    declined   gateway timeout; nothing taken (charge_not_found)
4000009990000401  pending    pending    slow settlement: retrieve says succeeded from
                                        ``requested_at + settlement_delay_s`` on
4000009990000500  not_sent   declined   gateway unreachable (retrieve: charge_not_found)
================  =========  =========  ==================================================

Any other Luhn-valid number succeeds. 5200828282828210 is a Mastercard debit card.

Authentication: ``confirm(request, answer)`` with answer ``"123456"`` (the sandbox payment
password / 3-D Secure code) succeeds -- or, for Stripe's two cards declined after authentication
(1629, 3178), is declined with that card's code; any other answer is declined with
``authentication_failed``. Being stateless, the sandbox cannot remember a confirmation: ``retrieve``
keeps answering pending for such a charge, so the caller keeps the result of ``confirm``.

Merchant-initiated charges (``ChargeRequest.merchant_initiated``, auto-renewal on a saved token):
no CVC and no 3-D Secure are asked, so the cards that ask for authentication go straight to their
outcome once authenticated (3220, 3184, 3155, 3063 succeed; 1629 and 3178 are declined).

Revoked tokens: ``revoke_token(path, token)`` writes a token into the sandbox's revocation file
(``TOPUP_SANDBOX_REVOKED_TOKENS``; ``topup sandbox-revoke-token``), as a payer's bank or the PSP
would cancel a stored credential; every process reading that file then answers
``payment_token_revoked`` for it, to ``payment_token_of`` and to ``charge``. Only a digest of the
token is written.

Injected faults: with ``fault_rate`` > 0 a fraction of charges (chosen by a hash of
``(seed, payment_id)``, so a run replays exactly) answer ``unknown``. Half of them lost only the
response (``retrieve`` gives the card's normal answer: succeeded for a good card), half lost the
request (``retrieve`` says declined with ``charge_not_found``). A payment id picked for a fault
always faults: a fresh attempt needs a fresh payment id.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from topup.domain.card_number import luhn_is_valid
from topup.domain.errors import InputError, WebhookError
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    GatewayEvent,
    GatewayOutcome,
    PaymentCardDetails,
    PaymentToken,
    RefundOutcome,
    RefundResult,
)
from topup.settings import Settings

# Our own documented test numbers (Luhn-valid Visa numbers).
CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED = "4000009990000104"
CARD_TIMEOUT_CHARGE_TAKEN = "4000009990000203"
CARD_TIMEOUT_NOTHING_TAKEN = "4000009990000302"
CARD_SLOW_SETTLEMENT = "4000009990000401"
CARD_GATEWAY_UNREACHABLE = "4000009990000500"

AUTHENTICATION_ANSWER = "123456"  # the sandbox payment password / 3-D Secure code
RETRIEVE_AFTER_TIMEOUT_S = 5  # when asking again about an unknown outcome makes sense
CARD_NUMBER_DIGITS_MIN = 12
CARD_NUMBER_DIGITS_MAX = 19
EXPIRY_YEARS_AHEAD_MAX = 20
TOKEN_PREFIX = "tok_sbx_"  # noqa: S105 -- a label, not a password
TOKEN_LENGTH_MAX = 1_000
FINGERPRINT_PREFIX = "fp_sbx_"
FINGERPRINT_LENGTH = 22  # base64 characters of the keyed hash: 132 bits


class Behaviour(StrEnum):
    """What the sandbox does with a card; carried inside the token."""

    SUCCEEDS = "succeeds"
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    PROCESSING_ERROR = "processing_error"
    CARD_VELOCITY_EXCEEDED = "card_velocity_exceeded"
    FRAUDULENT = "fraudulent"
    REQUIRES_AUTHENTICATION = "requires_authentication"
    AUTHENTICATION_THEN_CARD_DECLINED = "authentication_then_card_declined"
    AUTHENTICATION_THEN_INSUFFICIENT_FUNDS = "authentication_then_insufficient_funds"
    INTERNATIONAL_PAYMENTS_NOT_ALLOWED = "international_payments_not_allowed"
    TIMEOUT_CHARGE_TAKEN = "timeout_charge_taken"
    TIMEOUT_NOTHING_TAKEN = "timeout_nothing_taken"
    SLOW_SETTLEMENT = "slow_settlement"
    GATEWAY_UNREACHABLE = "gateway_unreachable"


@dataclass(frozen=True, slots=True)
class _Decline:
    stripe_code: str  # the decline code Stripe gives this test card
    code: str  # topup's code for it: what the renewal records and the payer is told
    message: str


_DECLINES: dict[Behaviour, _Decline] = {
    Behaviour.CARD_DECLINED: _Decline("generic_decline", "card_declined", "The card was declined."),
    Behaviour.INSUFFICIENT_FUNDS: _Decline(
        "insufficient_funds", "insufficient_funds", "The card has insufficient funds."
    ),
    Behaviour.LOST_CARD: _Decline("lost_card", "lost_card", "The card is reported lost."),
    Behaviour.STOLEN_CARD: _Decline("stolen_card", "stolen_card", "The card is reported stolen."),
    Behaviour.EXPIRED_CARD: _Decline("expired_card", "expired_card", "The card has expired."),
    Behaviour.INCORRECT_CVC: _Decline(
        "incorrect_cvc", "incorrect_cvc", "The card's security code is incorrect."
    ),
    Behaviour.PROCESSING_ERROR: _Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing the card; retrying may help.",
    ),
    Behaviour.CARD_VELOCITY_EXCEEDED: _Decline(
        "card_velocity_exceeded",
        "card_velocity_exceeded",
        "The card has exceeded its balance, credit limit or number of payments allowed.",
    ),
    Behaviour.FRAUDULENT: _Decline(
        "fraudulent", "fraudulent", "The payment was blocked as likely fraudulent."
    ),
    Behaviour.INTERNATIONAL_PAYMENTS_NOT_ALLOWED: _Decline(
        "transaction_not_allowed",
        "international_payments_not_allowed",
        "The card's issuer does not allow international payments.",
    ),
}

# Cards that ask for authentication first, and what a correct answer then leads to.
_AUTHENTICATED_OUTCOMES: dict[Behaviour, Behaviour] = {
    Behaviour.REQUIRES_AUTHENTICATION: Behaviour.SUCCEEDS,
    Behaviour.AUTHENTICATION_THEN_CARD_DECLINED: Behaviour.CARD_DECLINED,
    Behaviour.AUTHENTICATION_THEN_INSUFFICIENT_FUNDS: Behaviour.INSUFFICIENT_FUNDS,
}

CHARGE_NOT_FOUND = "charge_not_found"
AUTHENTICATION_FAILED = "authentication_failed"


@dataclass(frozen=True, slots=True)
class _SandboxCard:
    behaviour: Behaviour
    funding: str = "credit"
    issuer_country: str = "US"


_SANDBOX_CARDS: dict[str, _SandboxCard] = {
    "4242424242424242": _SandboxCard(Behaviour.SUCCEEDS),
    "4000056655665556": _SandboxCard(Behaviour.SUCCEEDS, funding="debit"),
    "5555555555554444": _SandboxCard(Behaviour.SUCCEEDS),
    "5200828282828210": _SandboxCard(Behaviour.SUCCEEDS, funding="debit"),
    "378282246310005": _SandboxCard(Behaviour.SUCCEEDS),
    "4000000000000002": _SandboxCard(Behaviour.CARD_DECLINED),
    "4000000000009995": _SandboxCard(Behaviour.INSUFFICIENT_FUNDS),
    "4000000000009987": _SandboxCard(Behaviour.LOST_CARD),
    "4000000000009979": _SandboxCard(Behaviour.STOLEN_CARD),
    "4000000000000069": _SandboxCard(Behaviour.EXPIRED_CARD),
    "4000000000000127": _SandboxCard(Behaviour.INCORRECT_CVC),
    "4000000000000119": _SandboxCard(Behaviour.PROCESSING_ERROR),
    "4000000000006975": _SandboxCard(Behaviour.CARD_VELOCITY_EXCEEDED),
    "4000000000000341": _SandboxCard(Behaviour.CARD_DECLINED),
    "4000000000000101": _SandboxCard(Behaviour.INCORRECT_CVC),
    "4100000000000019": _SandboxCard(Behaviour.FRAUDULENT),
    "4000000000004954": _SandboxCard(Behaviour.FRAUDULENT),
    "4000000000009235": _SandboxCard(Behaviour.SUCCEEDS),
    "4000000000003220": _SandboxCard(Behaviour.REQUIRES_AUTHENTICATION),
    "4000002760003184": _SandboxCard(Behaviour.REQUIRES_AUTHENTICATION),
    "4000002500003155": _SandboxCard(Behaviour.REQUIRES_AUTHENTICATION),
    "4000000000003063": _SandboxCard(Behaviour.REQUIRES_AUTHENTICATION),
    "4000008400001629": _SandboxCard(Behaviour.AUTHENTICATION_THEN_CARD_DECLINED),
    "4000008260003178": _SandboxCard(Behaviour.AUTHENTICATION_THEN_INSUFFICIENT_FUNDS),
    CARD_INTERNATIONAL_PAYMENTS_NOT_ALLOWED: _SandboxCard(
        Behaviour.INTERNATIONAL_PAYMENTS_NOT_ALLOWED, issuer_country="US"
    ),
    CARD_TIMEOUT_CHARGE_TAKEN: _SandboxCard(Behaviour.TIMEOUT_CHARGE_TAKEN, issuer_country="MY"),
    CARD_TIMEOUT_NOTHING_TAKEN: _SandboxCard(Behaviour.TIMEOUT_NOTHING_TAKEN, issuer_country="MY"),
    CARD_SLOW_SETTLEMENT: _SandboxCard(Behaviour.SLOW_SETTLEMENT, issuer_country="MY"),
    CARD_GATEWAY_UNREACHABLE: _SandboxCard(Behaviour.GATEWAY_UNREACHABLE, issuer_country="MY"),
}
_OTHER_CARD = _SandboxCard(Behaviour.SUCCEEDS, issuer_country="")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``; the same parts give the same number."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _reference(prefix: str, key: str) -> str:
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:24]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _international_claim(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def card_brand(digits: str) -> str:
    """The card brand from the issuer identification number, or ``"unknown"``."""
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"34", "37"}:
        return "amex"
    if digits[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits.startswith("62"):
        return "unionpay"
    return "unknown"


class SandboxGateway:
    """A deterministic, stateless PaymentGateway. See the module docstring for test numbers."""

    name = "sandbox"

    def __init__(
        self,
        *,
        secret: bytes,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        settlement_delay_s: int = 120,
        clock: Callable[[], dt.datetime] = _utc_now,
        revoked_tokens: Path | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the sandbox gateway needs a non-empty secret")
        if latency_s < 0:
            raise ValueError("latency_s must not be negative")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if settlement_delay_s < 0:
            raise ValueError("settlement_delay_s must not be negative")
        self._secret = secret
        self._latency_s = latency_s
        self._fault_rate = fault_rate
        self._seed = seed
        self._settlement_delay_s = settlement_delay_s
        self._clock = clock
        self._revoked_tokens = revoked_tokens

    # --- tokens ---------------------------------------------------------------------------

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        await self._simulate_latency()
        digits = card.number.replace(" ", "")
        if not digits.isascii() or not digits.isdigit():
            character = next((c for c in digits if not (c.isascii() and c.isdigit())), "")
            raise InputError(
                "The card number may contain only digits.",
                code="payment_card_number_invalid_characters",
                field="payment.card_number",
                params={"character": character},
            )
        if not CARD_NUMBER_DIGITS_MIN <= len(digits) <= CARD_NUMBER_DIGITS_MAX:
            raise InputError(
                f"A card number has {CARD_NUMBER_DIGITS_MIN} to {CARD_NUMBER_DIGITS_MAX} digits.",
                code="payment_card_number_wrong_length",
                field="payment.card_number",
                params={"length": str(len(digits))},
            )
        if not luhn_is_valid(digits):
            raise InputError(
                "The card number is mistyped: its check digit does not match.",
                code="payment_card_number_bad_check_digit",
                field="payment.card_number",
            )
        brand = card_brand(digits)
        expiry_year = self._check_expiry(card.expiry_month, card.expiry_year)
        cvc_digits = 4 if brand == "amex" else 3
        if not card.cvc.isascii() or not card.cvc.isdigit():
            raise InputError(
                "The security code (CVC) has only digits.",
                code="cvc_invalid_characters",
                field="payment.cvc",
            )
        if len(card.cvc) != cvc_digits:
            raise InputError(
                f"The security code (CVC) has {cvc_digits} digits.",
                code="cvc_wrong_length",
                field="payment.cvc",
                params={"digits": str(cvc_digits)},
            )
        sandbox_card = _SANDBOX_CARDS.get(digits, _OTHER_CARD)
        payment_token = PaymentToken(
            token="",
            brand=brand,
            funding=sandbox_card.funding,
            last4=digits[-4:],
            expiry_month=card.expiry_month,
            expiry_year=expiry_year,
            issuer_country=sandbox_card.issuer_country,
            fingerprint=self._fingerprint(digits),
            international_payments=(
                False
                if sandbox_card.behaviour is Behaviour.INTERNATIONAL_PAYMENTS_NOT_ALLOWED
                else None
            ),
        )
        return replace(payment_token, token=self._sign(sandbox_card.behaviour, payment_token))

    def _fingerprint(self, digits: str) -> str:
        """Like Stripe's card fingerprint: the same for the same number whatever the expiry or
        CVC, a keyed hash that cannot be turned back into the number."""
        mac = hmac.new(self._secret, b"card-fingerprint:" + digits.encode(), hashlib.sha256)
        return FINGERPRINT_PREFIX + _b64encode(mac.digest())[:FINGERPRINT_LENGTH]

    def _check_expiry(self, month: int, year: int) -> int:
        """Validate the expiry and return its four-digit year (two-digit years are 20xx)."""
        full_year = 2000 + year if 0 <= year < 100 else year
        today = self._clock().astimezone(dt.UTC).date()
        if not 1 <= month <= 12:
            raise InputError(
                "The expiry month is a number from 01 to 12.",
                code="expiry_month_invalid",
                field="payment.expiry",
            )
        if not 0 < full_year <= today.year + EXPIRY_YEARS_AHEAD_MAX:
            raise InputError(
                "The expiry year is not a year this card can have.",
                code="expiry_year_invalid",
                field="payment.expiry",
                params={
                    "example_short": f"{today.year % 100:02d}",
                    "example_long": str(today.year),
                },
            )
        if (full_year, month) < (today.year, today.month):
            raise InputError(
                "The card has expired: check the expiry date or use another card.",
                code="payment_card_expired",
                field="payment.expiry",
                params={"expiry": f"{month:02d}/{full_year % 100:02d}"},
            )
        return full_year

    def _sign(self, behaviour: Behaviour, payment_token: PaymentToken) -> str:
        claims = {
            "behaviour": behaviour.value,
            "brand": payment_token.brand,
            "funding": payment_token.funding,
            "last4": payment_token.last4,
            "expiry_month": payment_token.expiry_month,
            "expiry_year": payment_token.expiry_year,
            "country": payment_token.issuer_country,
            "fingerprint": payment_token.fingerprint,
        }
        if payment_token.international_payments is not None:  # (other tokens keep their form)
            claims["international"] = payment_token.international_payments
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{TOKEN_PREFIX}{payload}.{self._signature(payload)}"

    def _signature(self, payload: str) -> str:
        return _b64encode(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    async def payment_token_of(self, token: str) -> PaymentToken:
        """The sandbox's tokens carry the card's facts signed with its key (like a JWT), so they
        are read here without a call; a PSP whose tokens are opaque costs a round trip."""
        claims = self._claims(token)
        self._check_not_revoked(token)
        try:
            return PaymentToken(
                token=token,
                brand=str(claims["brand"]),
                funding=str(claims["funding"]),
                last4=str(claims["last4"]),
                expiry_month=int(claims["expiry_month"]),
                expiry_year=int(claims["expiry_year"]),
                issuer_country=str(claims["country"]),
                fingerprint=str(claims.get("fingerprint", "")),  # tokens made before it: ""
                international_payments=_international_claim(claims.get("international")),
            )
        except (KeyError, TypeError, ValueError):
            raise self._token_invalid() from None

    def _check_not_revoked(self, token: str) -> None:
        if self._revoked_tokens is not None and token_digest(token) in revoked_digests(
            self._revoked_tokens
        ):
            raise InputError(
                "This saved payment card can no longer be charged; add it again or use another.",
                code="payment_token_revoked",
                field="payment.token",
            )

    @staticmethod
    def _token_invalid() -> InputError:
        return InputError(
            "The payment token is not valid; enter the card details again.",
            code="payment_token_invalid",
            field="payment.token",
        )

    def _claims(self, token: str) -> dict[str, Any]:
        """The claims of a token we signed; anything else is ``payment_token_invalid``."""
        invalid = self._token_invalid()
        if (
            len(token) > TOKEN_LENGTH_MAX
            or not token.isascii()  # (a lone surrogate cannot even be encoded to be checked)
            or not token.startswith(TOKEN_PREFIX)
        ):
            raise invalid
        payload, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(payload).encode()):
            raise invalid
        try:
            claims = json.loads(_b64decode(payload))
        except ValueError:
            raise invalid from None
        if not isinstance(claims, dict):
            raise invalid
        return claims

    def _verify(self, token: str) -> Behaviour:
        """The behaviour in a token we signed; anything else is ``payment_token_invalid``."""
        try:
            return Behaviour(self._claims(token)["behaviour"])
        except (ValueError, KeyError, TypeError):
            raise self._token_invalid() from None

    # --- charges --------------------------------------------------------------------------

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        await self._simulate_latency()
        behaviour = self._verify(request.token)
        self._check_not_revoked(request.token)
        if request.merchant_initiated:  # nobody present: no CVC, no 3-D Secure asked
            behaviour = _AUTHENTICATED_OUTCOMES.get(behaviour, behaviour)
        if request.amount.minor <= 0:
            raise InputError(
                "A charge must be for a positive amount.",
                code="invalid_amount",
                params={"currency": request.amount.currency},
            )
        if behaviour is Behaviour.GATEWAY_UNREACHABLE:
            return ChargeResult(
                outcome=GatewayOutcome.NOT_SENT, message="The sandbox gateway was unreachable."
            )
        if behaviour in {Behaviour.TIMEOUT_CHARGE_TAKEN, Behaviour.TIMEOUT_NOTHING_TAKEN} or (
            self._fault(request.payment_id) is not None
        ):
            return ChargeResult(
                outcome=GatewayOutcome.UNKNOWN,
                message="The sandbox gateway timed out; ask again, do not charge again.",
                retry_after_s=RETRIEVE_AFTER_TIMEOUT_S,
            )
        if behaviour is Behaviour.SLOW_SETTLEMENT:
            return ChargeResult(
                outcome=GatewayOutcome.PENDING,
                gateway_reference=self._charge_reference(request),
                message="The charge is settling.",
                retry_after_s=self._settlement_delay_s,
            )
        return self._processed(behaviour, request)

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        await self._simulate_latency()
        behaviour = self._verify(request.token)
        if request.merchant_initiated:
            behaviour = _AUTHENTICATED_OUTCOMES.get(behaviour, behaviour)
        return self._retrieved(behaviour, request)

    async def confirm(self, request: ChargeRequest, answer: str) -> ChargeResult:
        """Answer an ``authenticate`` action: ``"123456"`` goes on to the card's outcome once
        authenticated (succeeded, or Stripe's decline after authentication); anything else is
        declined with ``authentication_failed``."""
        await self._simulate_latency()
        behaviour = self._verify(request.token)
        authenticated = _AUTHENTICATED_OUTCOMES.get(behaviour)
        if authenticated is None:
            return self._retrieved(behaviour, request)
        if hmac.compare_digest(answer.encode(), AUTHENTICATION_ANSWER.encode()):
            return self._processed(authenticated, request)
        return ChargeResult(
            outcome=GatewayOutcome.DECLINED,
            gateway_reference=self._charge_reference(request),
            decline_code=AUTHENTICATION_FAILED,
            message="The payment password or verification code was wrong.",
        )

    def tokenize_account(self, provider: str, account: str) -> PaymentToken:
        raise InputError(
            "This payment method takes card details, not a wallet account.",
            code="payment_card_required",
            field="payment",
        )

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> GatewayEvent:
        """The card sandbox answers at once and sends no webhooks."""
        raise WebhookError(
            "The sandbox card gateway sends no webhooks.",
            code="webhook_unsupported",
            field="webhook",
        )

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        await self._simulate_latency()
        behaviour = self._verify(charge.token)
        taken = self._retrieved(behaviour, charge)
        if taken.outcome in {GatewayOutcome.DECLINED, GatewayOutcome.NOT_SENT}:
            return RefundResult(
                outcome=RefundOutcome.FAILED, message="No money was taken for this charge."
            )
        return RefundResult(
            outcome=RefundOutcome.SUCCEEDED, gateway_reference=_reference("re_sbx_", refund_id)
        )

    # --- how a charge turns out -------------------------------------------------------------

    def _retrieved(self, behaviour: Behaviour, request: ChargeRequest) -> ChargeResult:
        """What the gateway knows about a charge; never takes money."""
        fault = self._fault(request.payment_id)
        if (
            behaviour in {Behaviour.GATEWAY_UNREACHABLE, Behaviour.TIMEOUT_NOTHING_TAKEN}
            or fault == "request_lost"
        ):
            return ChargeResult(
                outcome=GatewayOutcome.DECLINED,
                decline_code=CHARGE_NOT_FOUND,
                message="The sandbox gateway has no charge with this payment id.",
            )
        if behaviour is Behaviour.TIMEOUT_CHARGE_TAKEN:
            return ChargeResult(
                outcome=GatewayOutcome.SUCCEEDED,
                gateway_reference=self._charge_reference(request),
            )
        if behaviour is Behaviour.SLOW_SETTLEMENT:
            settles_at = request.requested_at + dt.timedelta(seconds=self._settlement_delay_s)
            remaining_s = (settles_at - self._clock()).total_seconds()
            if remaining_s > 0:
                return ChargeResult(
                    outcome=GatewayOutcome.PENDING,
                    gateway_reference=self._charge_reference(request),
                    message="The charge is settling.",
                    retry_after_s=max(1, math.ceil(remaining_s)),
                )
            return ChargeResult(
                outcome=GatewayOutcome.SUCCEEDED,
                gateway_reference=self._charge_reference(request),
            )
        return self._processed(behaviour, request)

    def _processed(self, behaviour: Behaviour, request: ChargeRequest) -> ChargeResult:
        """The answer for a charge the gateway received and decided on at once."""
        reference = self._charge_reference(request)
        if behaviour in _AUTHENTICATED_OUTCOMES:
            return ChargeResult(
                outcome=GatewayOutcome.PENDING,
                gateway_reference=reference,
                message="The payer must authenticate the charge.",
                requires_action="authenticate",
            )
        decline = _DECLINES.get(behaviour)
        if decline is not None:
            return ChargeResult(
                outcome=GatewayOutcome.DECLINED,
                gateway_reference=reference,
                decline_code=decline.code,
                message=f"{decline.message} (Stripe: {decline.stripe_code})",
            )
        return ChargeResult(outcome=GatewayOutcome.SUCCEEDED, gateway_reference=reference)

    def _fault(self, payment_id: str) -> str | None:
        """The injected fault for this payment id: None, "response_lost" or "request_lost"."""
        if _unit_interval("fault", self._seed, payment_id) >= self._fault_rate:
            return None
        if _unit_interval("fault_kind", self._seed, payment_id) < 0.5:
            return "response_lost"
        return "request_lost"

    @staticmethod
    def _charge_reference(request: ChargeRequest) -> str:
        return _reference("ch_sbx_", request.payment_id)

    async def _simulate_latency(self) -> None:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)


def token_digest(token: str) -> str:
    return hashlib.sha256(b"sandbox-revoked:" + token.encode()).hexdigest()


def revoked_digests(path: Path) -> frozenset[str]:
    """The digests in a revocation file (none if it does not exist)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return frozenset()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def revoke_token(path: Path, token: str) -> None:
    """Revoke a sandbox token for every process reading ``path`` (one appended line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, (token_digest(token) + "\n").encode("ascii"))
    finally:
        os.close(descriptor)


def from_settings(
    settings: Settings, *, secret_key: str, clock: Callable[[], dt.datetime]
) -> SandboxGateway:
    """Entry point ``topup.gateways: sandbox``."""
    return SandboxGateway(
        secret=hashlib.sha256(b"sandbox-gateway:" + secret_key.encode()).digest(),
        latency_s=settings.gateway_latency_s,
        fault_rate=settings.gateway_fault_rate,
        seed=settings.sandbox_seed,
        settlement_delay_s=settings.gateway_settlement_delay_s,
        clock=clock,
        revoked_tokens=Path(settings.sandbox_revoked_tokens)
        if settings.sandbox_revoked_tokens
        else None,
    )
