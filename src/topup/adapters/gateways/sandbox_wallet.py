"""A sandbox e-wallet provider (Touch 'n Go eWallet, GrabPay, GoPay, ... all behave alike here).

Like a real one, it takes a payment request, sends the payer to approve it in the wallet's app
(``requires_action="approve_in_wallet"`` with an ``action_url``), and tells us the outcome twice:
the payer's browser comes back (we then ask with ``retrieve``), and the provider posts a signed
webhook. It is stateless: the outcome follows from the wallet account and the time since the
request, so any process can answer for any payment.

Wallet accounts (sandbox):
    ends in 0000  the payer declines in the wallet app              -> declined, payer_declined
    ends in 9999  the payer never answers                            -> stays waiting (then cancelled)
    ends in 5555  the wallet has too little balance                  -> declined, insufficient_funds
    anything else the payer approves ``approval_delay_s`` after the request -> succeeded

Its approval page (served on this site under ``/sandbox/wallet/``, as a real wallet's is on its
own) shows the payment to the payer, who approves or refuses it there before the delay runs out
(``decide``): the wallet then sends its webhook at once with that answer. The answers are kept in
this process's memory (the latest ``DECISIONS_KEPT_MAX``); the webhook of an answer and the
automatic one share their event id, so whichever comes second is a duplicate and changes nothing.
An account ending in 9999 never answers by itself: only its approval page does.

Webhooks are signed like Stripe's: header ``Sandbox-Signature: t=<unix seconds>,v1=<hex>`` where
v1 is HMAC-SHA256 over ``"<t>." + raw body`` with the webhook secret. ``deliver``, when given, is
called with each webhook (raw body, headers) once the payer has answered, as the provider's HTTP
call would arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from topup.adapters.gateways.sandbox import _b64decode, _b64encode
from topup.domain.errors import InputError, WebhookError, require
from topup.domain.money import Money
from topup.ports import (
    ChargeRequest,
    ChargeResult,
    GatewayEvent,
    GatewayOutcome,
    PaymentCardDetails,
    PaymentToken,
    RefundOutcome,
    RefundResult,
    WalletApproval,
    WalletDecision,
)
from topup.settings import Settings

APPROVE_IN_WALLET = "approve_in_wallet"
SIGNATURE_HEADER = "sandbox-signature"
WEBHOOK_TOLERANCE_S = 300
WEBHOOK_BODY_BYTES_MAX = 16 * 1024
WEBHOOK_TIMESTAMP_DIGITS_MAX = 12  # Unix seconds until the year 33658
WEBHOOK_TEXT_LENGTH_MAX = 128  # an event's ids, reference and decline code (their columns' size)
WALLET_ACCOUNT_DIGITS_MIN = 6
WALLET_ACCOUNT_DIGITS_MAX = 15  # E.164
TOKEN_PREFIX = "wtok_sbx_"  # noqa: S105 - a prefix, not a secret
DECLINES_SUFFIX = "0000"
NEVER_ANSWERS_SUFFIX = "9999"
TOO_LITTLE_BALANCE_SUFFIX = "5555"
APPROVAL_PREFIX = "wapp_"
APPROVAL_REFERENCE_LENGTH_MAX = 400
APPROVAL_SIGNATURE_BYTES = 18
DECISIONS_KEPT_MAX = 10_000
DEFAULT_APPROVAL_URL = "https://wallet.sandbox.invalid/approve/"

Deliver = Callable[[bytes, Mapping[str, str]], Awaitable[object]]


class SandboxWallet:
    name = "sandbox_wallet"

    def __init__(
        self,
        *,
        secret: bytes,
        webhook_secret: bytes,
        approval_delay_s: float,
        clock: Callable[[], dt.datetime],
        deliver: Deliver | None = None,
        latency_s: float = 0.0,
        approval_url: str = DEFAULT_APPROVAL_URL,
    ) -> None:
        self._latency_s = latency_s
        self._approval_url = approval_url
        self._decisions: dict[str, bool] = {}  # payment id -> approved (True) or refused
        self._secret = secret
        self._webhook_secret = webhook_secret
        self._approval_delay_s = approval_delay_s
        self._clock = clock
        self.deliver = deliver
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- accounts ---------------------------------------------------------------------------

    async def tokenize(self, card: PaymentCardDetails) -> PaymentToken:
        raise InputError(
            "This payment method takes a wallet account, not card details.",
            code="wallet_account_required",
            field="payment.wallet_account",
            params={"method": "e-wallet"},
        )

    async def payment_token_of(self, token: str) -> PaymentToken:
        """Wallet payments are approved in the wallet app; no token comes from the payer."""
        raise InputError(
            "An e-wallet payment takes the wallet's phone number, not a card token.",
            code="payment_token_invalid",
            field="payment.token",
        )

    def tokenize_account(self, provider: str, account: str) -> PaymentToken:
        """A token for a wallet account in E.164 form (``wallet_account_of`` makes it so); its
        number never leaves this adapter in clear."""
        digits = account.removeprefix("+")
        require(
            account.startswith("+")
            and digits.isascii()
            and digits.isdigit()
            and WALLET_ACCOUNT_DIGITS_MIN <= len(digits) <= WALLET_ACCOUNT_DIGITS_MAX,
            "a wallet account reaches the wallet in E.164 form",
        )
        claims = json.dumps({"provider": provider, "account": digits}, sort_keys=True).encode()
        payload = _b64encode(claims)
        signature = _b64encode(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        return PaymentToken(
            token=f"{TOKEN_PREFIX}{payload}.{signature}",
            brand=provider,
            funding="ewallet",
            last4=digits[-4:],
            expiry_month=0,
            expiry_year=0,
            issuer_country="",
        )

    def _account(self, token: str) -> str:
        payload, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        expected = _b64encode(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not token.startswith(TOKEN_PREFIX) or not hmac.compare_digest(signature, expected):
            raise InputError(
                "The wallet token is not valid.", code="payment_token_invalid", field="payment"
            )
        return str(json.loads(_b64decode(payload))["account"])

    # --- payments ---------------------------------------------------------------------------

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        await self._network_round_trip()
        self._account(request.token)  # a token we did not sign is refused
        self._schedule_webhook(request)
        return ChargeResult(
            outcome=GatewayOutcome.PENDING,
            gateway_reference=self._reference(request),
            message="The payer must approve the payment in the wallet app.",
            requires_action=APPROVE_IN_WALLET,
            action_url=self._approval_url + self._approval_reference(request),
        )

    async def retrieve(self, request: ChargeRequest) -> ChargeResult:
        await self._network_round_trip()
        account = self._account(request.token)
        decided = self._decisions.get(request.payment_id)
        if decided is not None:
            return self._decided(decided, request)
        answered_at = request.requested_at + dt.timedelta(seconds=self._approval_delay_s)
        if account.endswith(NEVER_ANSWERS_SUFFIX) or self._clock() < answered_at:
            return ChargeResult(
                outcome=GatewayOutcome.PENDING,
                gateway_reference=self._reference(request),
                requires_action=APPROVE_IN_WALLET,
                action_url=self._approval_url + self._approval_reference(request),
            )
        return self._answer(account, request)

    async def confirm(self, request: ChargeRequest, answer: str) -> ChargeResult:
        return await self.retrieve(request)  # approval happens in the wallet app, not here

    async def refund(self, *, refund_id: str, charge: ChargeRequest) -> RefundResult:
        taken = await self.retrieve(charge)
        if taken.outcome is not GatewayOutcome.SUCCEEDED:
            return RefundResult(RefundOutcome.FAILED, message="No money was taken.")
        return RefundResult(
            RefundOutcome.SUCCEEDED,
            gateway_reference="wre_sbx_" + hashlib.sha256(refund_id.encode()).hexdigest()[:24],
        )

    def _answer(self, account: str, request: ChargeRequest) -> ChargeResult:
        reference = self._reference(request)
        if account.endswith(DECLINES_SUFFIX):
            return ChargeResult(
                GatewayOutcome.DECLINED, reference, "payer_declined", "The payer declined."
            )
        if account.endswith(TOO_LITTLE_BALANCE_SUFFIX):
            return ChargeResult(
                GatewayOutcome.DECLINED, reference, "insufficient_funds", "Too little balance."
            )
        return ChargeResult(GatewayOutcome.SUCCEEDED, reference)

    def _decided(self, approved: bool, request: ChargeRequest) -> ChargeResult:
        reference = self._reference(request)
        if approved:
            return ChargeResult(GatewayOutcome.SUCCEEDED, reference)
        return ChargeResult(
            GatewayOutcome.DECLINED, reference, "payer_declined", "The payer declined."
        )

    # --- the approval page ------------------------------------------------------------------

    def _approval_mac(self, payload: str) -> str:
        mac = hmac.new(self._secret, b"approval:" + payload.encode(), hashlib.sha256).digest()
        return _b64encode(mac[:APPROVAL_SIGNATURE_BYTES])

    def _approval_reference(self, request: ChargeRequest) -> str:
        """What the approval page's address names: the payment, signed by this wallet."""
        payload, _, _ = request.token.removeprefix(TOKEN_PREFIX).partition(".")
        account = self._account(request.token)
        claims = {
            "p": request.payment_id,
            "a": request.amount.minor,
            "c": request.amount.currency,
            "l": account[-4:],
            "t": int(request.requested_at.timestamp()),
            "b": str(json.loads(_b64decode(payload))["provider"]),
        }
        body = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{APPROVAL_PREFIX}{body}.{self._approval_mac(body)}"

    def approval(self, reference: str) -> WalletApproval | None:
        """The approval this wallet issued under ``reference``, or None."""
        if len(reference) > APPROVAL_REFERENCE_LENGTH_MAX or not reference.startswith(
            APPROVAL_PREFIX
        ):
            return None
        payload, _, signature = reference.removeprefix(APPROVAL_PREFIX).partition(".")
        if not signature.isascii() or not hmac.compare_digest(
            signature, self._approval_mac(payload)
        ):
            return None
        try:
            claims = json.loads(_b64decode(payload))
            payment_id, provider = str(claims["p"]), str(claims["b"])
            amount = Money(int(claims["a"]), str(claims["c"]))
            requested_at = dt.datetime.fromtimestamp(int(claims["t"]), dt.UTC)
            last4 = str(claims["l"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return None
        decided = self._decisions.get(payment_id)
        decision = WalletDecision.WAITING
        if decided is not None:
            decision = WalletDecision.APPROVED if decided else WalletDecision.REFUSED
        return WalletApproval(
            reference=reference,
            payment_id=payment_id,
            provider=provider,
            account_last4=last4,
            amount=amount,
            requested_at=requested_at,
            decision=decision,
        )

    async def decide(self, reference: str, *, approve: bool) -> WalletApproval:
        """The payer's answer on the approval page: kept (the first one only) and sent at once
        as the webhook. InputError ``wallet_approval_unknown`` for a reference not ours."""
        found = self.approval(reference)
        if found is None:
            raise InputError(
                "This wallet did not ask for this approval.",
                code="wallet_approval_unknown",
                field="reference",
            )
        if found.decision is not WalletDecision.WAITING:
            return found
        if len(self._decisions) >= DECISIONS_KEPT_MAX:
            self._decisions.pop(next(iter(self._decisions)))
        self._decisions[found.payment_id] = approve
        deliver = self.deliver
        if deliver is not None:
            body, headers = self._decision_webhook(found.payment_id, approve)
            with contextlib.suppress(Exception):  # as when the provider's call fails: we ask later
                await deliver(body, headers)
        return replace(
            found, decision=WalletDecision.APPROVED if approve else WalletDecision.REFUSED
        )

    def _decision_webhook(self, payment_id: str, approve: bool) -> tuple[bytes, dict[str, str]]:
        digest = hashlib.sha256(payment_id.encode()).hexdigest()[:24]
        event = {
            "id": "evt_sbx_" + digest,
            "type": "payment.succeeded" if approve else "payment.failed",
            "payment_id": payment_id,
            "reference": "wpay_sbx_" + digest,
            "decline_code": None if approve else "payer_declined",
        }
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        return body, self.sign(body, self._clock())

    async def _network_round_trip(self) -> None:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)

    @staticmethod
    def _reference(request: ChargeRequest) -> str:
        return "wpay_sbx_" + hashlib.sha256(request.payment_id.encode()).hexdigest()[:24]

    # --- webhooks ---------------------------------------------------------------------------

    def webhook(
        self, request: ChargeRequest, *, sent_at: dt.datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The webhook this provider sends once the payer has answered (raw body, headers)."""
        decided = self._decisions.get(request.payment_id)
        result = (
            self._answer(self._account(request.token), request)
            if decided is None
            else self._decided(decided, request)
        )
        succeeded = result.outcome is GatewayOutcome.SUCCEEDED
        event = {
            "id": "evt_sbx_" + hashlib.sha256(request.payment_id.encode()).hexdigest()[:24],
            "type": "payment.succeeded" if succeeded else "payment.failed",
            "payment_id": request.payment_id,
            "reference": result.gateway_reference,
            "decline_code": result.decline_code,
        }
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        return body, self.sign(body, sent_at or self._clock())

    def sign(self, body: bytes, at: dt.datetime) -> dict[str, str]:
        return self.sign_with_timestamp(body, str(int(at.timestamp())))

    def sign_with_timestamp(self, body: bytes, timestamp: str) -> dict[str, str]:
        """The signature header for ``body`` with ``timestamp`` written as given (tests sign odd
        timestamps with it, as someone holding the secret could)."""
        mac = self._webhook_mac(timestamp.encode("utf-8", "surrogatepass"), body)
        return {SIGNATURE_HEADER: f"t={timestamp},v1={mac}"}

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], now: dt.datetime
    ) -> GatewayEvent:
        """Check the signature over the raw body and the timestamp; return the event."""
        if len(body) > WEBHOOK_BODY_BYTES_MAX:
            raise _webhook_error("webhook_too_large", "The webhook body is too large.")
        timestamp, signature = _signature_parts(headers)
        if not timestamp or not signature:
            raise _webhook_error("webhook_signature_missing", "The webhook is not signed.")
        if not signature.isascii() or not hmac.compare_digest(
            self._webhook_mac(timestamp.encode("utf-8", "surrogatepass"), body), signature
        ):
            raise _webhook_error("webhook_signature_invalid", "The webhook signature is wrong.")
        signed_at_s = _unix_seconds(timestamp)
        if abs(now.timestamp() - signed_at_s) > WEBHOOK_TOLERANCE_S:
            raise _webhook_error(
                "webhook_too_old", "The webhook was signed too long ago; it may be a replay."
            )
        return _event(body)

    def _webhook_mac(self, timestamp: bytes, body: bytes) -> str:
        return hmac.new(self._webhook_secret, timestamp + b"." + body, hashlib.sha256).hexdigest()

    def _schedule_webhook(self, request: ChargeRequest) -> None:
        deliver = self.deliver
        if deliver is None or self._account(request.token).endswith(NEVER_ANSWERS_SUFFIX):
            return

        async def send() -> None:
            await asyncio.sleep(self._approval_delay_s)
            if request.payment_id in self._decisions:
                return  # answered on the approval page: its webhook went then
            body, headers = self.webhook(request)
            with contextlib.suppress(Exception):  # like a provider whose call fails: we ask later
                await deliver(body, headers)

        task = asyncio.get_running_loop().create_task(send())
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)


def _webhook_error(code: str, message: str) -> WebhookError:
    return WebhookError(message, code=code, field="webhook")


def _signature_parts(headers: Mapping[str, str]) -> tuple[str, str]:
    """The ``t`` and ``v1`` of the signature header, as sent ("" when absent)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    parts = dict(
        part.split("=", 1) for part in lowered.get(SIGNATURE_HEADER, "").split(",") if "=" in part
    )
    return parts.get("t", ""), parts.get("v1", "")


def _unix_seconds(timestamp: str) -> int:
    """A signed timestamp as Unix seconds: 1 to 12 ASCII digits (``int`` alone takes "²", other
    scripts' digits, and thousands of digits it then refuses or cannot compare)."""
    if not (
        timestamp.isascii()
        and timestamp.isdigit()
        and len(timestamp) <= WEBHOOK_TIMESTAMP_DIGITS_MAX
    ):
        raise _webhook_error(
            "webhook_timestamp_invalid", "The webhook's signature timestamp is not a Unix time."
        )
    return int(timestamp)


def _event(body: bytes) -> GatewayEvent:
    """The event a signed body carries; ``webhook_malformed`` if it is not one."""
    try:
        event = json.loads(body)
        kind = str(event["type"])
        event_id, payment_id = _event_text(event["id"]), _event_text(event["payment_id"])
        reference = _optional_event_text(event.get("reference"))
        result = None  # other events (e.g. created, pending) say nothing final: noted only
        if kind == "payment.succeeded":
            result = ChargeResult(GatewayOutcome.SUCCEEDED, reference)
        elif kind == "payment.failed":
            decline_code = _optional_event_text(event.get("decline_code"))
            result = ChargeResult(
                GatewayOutcome.DECLINED, reference, decline_code or "payer_declined"
            )
        return GatewayEvent(event_id=event_id, payment_id=payment_id, result=result)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise _webhook_error("webhook_malformed", "The webhook body is not an event.") from None


def _event_text(value: object) -> str:
    """An id, reference or decline code of an event: printable ASCII of at most
    ``WEBHOOK_TEXT_LENGTH_MAX`` characters, as the provider sends them (a NUL, a lone surrogate
    or an object would otherwise reach the database). ValueError for anything else."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= WEBHOOK_TEXT_LENGTH_MAX
        or not value.isascii()
        or not value.isprintable()
    ):
        raise ValueError("not an event's text")
    return value


def _optional_event_text(value: object) -> str | None:
    return None if value is None else _event_text(value)


def from_settings(
    settings: Settings, *, secret_key: str, clock: Callable[[], dt.datetime]
) -> SandboxWallet:
    """Entry point ``topup.gateways: sandbox_wallet``."""
    return SandboxWallet(
        secret=hashlib.sha256(b"sandbox-wallet:" + secret_key.encode()).digest(),
        webhook_secret=hashlib.sha256(b"sandbox-wallet-webhooks:" + secret_key.encode()).digest(),
        approval_delay_s=settings.wallet_approval_delay_s,
        clock=clock,
        latency_s=settings.gateway_latency_s,
        approval_url=settings.public_url.rstrip("/") + "/sandbox/wallet/",
    )
