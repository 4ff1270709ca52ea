"""Saved payment cards: an account keeps a payment card for one-tap renewals of its linked cards
(and, later, auto-renewal, which will use the same records).

A payment card is saved from the PSP's token, never from its number: either the token the payer's
browser got from the PSP's tokeniser (the checkout's way), or the token of a renewal of one of
the account's cards that was paid by card. The token is kept sealed; what is shown is the brand,
the last four digits and the expiry. One payment card is saved once per account (by its
fingerprint), and an account keeps at most SAVED_PAYMENT_CARDS_MAX.

A one-tap renewal is an ordinary renewal (``renewals.renew``) paid with the saved token: the same
checks, the same idempotency (the key issued with the form), the same status page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from topup.domain.errors import ConflictError, InputError, NotFoundError
from topup.domain.payment_card import CardFunding
from topup.domain.records import PaymentStatus
from topup.domain.saved_payment_cards import SAVED_PAYMENT_CARDS_MAX, SavedPaymentCard
from topup.ports import PaymentToken
from topup.services.context import Services
from topup.services.fingerprints import payment_card_fingerprint
from topup.services.renewals import RenewalRequest, renew
from topup.services.renewals.reads import card_unknown
from topup.services.views import RenewalView

PAYMENT_TOKEN_LENGTH_MAX = 1_000
CREDIT_CARD = "credit_card"
DEBIT_CARD = "debit_card"


@dataclass(frozen=True)
class SavedPaymentCardView:
    """What the account sees of a saved payment card: never its token."""

    id: str
    brand: str
    funding: str
    last4: str
    expiry_month: int
    expiry_year: int
    created_at: dt.datetime
    expired: bool  # its expiry month is over: it cannot pay


def _today(services: Services) -> dt.date:
    return services.clock.now().astimezone(ZoneInfo(services.profile.time_zone)).date()


def _view(card: SavedPaymentCard, today: dt.date) -> SavedPaymentCardView:
    return SavedPaymentCardView(
        id=card.id,
        brand=card.brand,
        funding=card.funding,
        last4=card.last4,
        expiry_month=card.expiry_month,
        expiry_year=card.expiry_year,
        created_at=card.created_at,
        expired=card.expired(today.year, today.month),
    )


def saved_payment_card_unknown() -> NotFoundError:
    return NotFoundError(
        "the account has no saved payment card with this id",
        code="saved_payment_card_unknown",
        field="saved_payment_card",
        params={},
    )


def _not_savable() -> ConflictError:
    return ConflictError(
        "this renewal was not paid by a payment card of one of the account's cards",
        code="payment_card_not_savable",
        params={},
    )


def _card_expired(month: int, year: int) -> InputError:
    return InputError(
        "The card has expired: check the expiry date or use another card.",
        code="payment_card_expired",
        field="payment.expiry",
        params={"expiry": f"{month:02d}/{year % 100:02d}"},
    )


async def saved_payment_cards(services: Services, account_id: str) -> list[SavedPaymentCardView]:
    """The account's saved payment cards, oldest first."""
    async with services.unit_of_work() as uow:
        cards = await uow.saved_payment_cards.of_account(account_id, limit=SAVED_PAYMENT_CARDS_MAX)
    today = _today(services)
    return [_view(card, today) for card in cards]


async def _keep(
    services: Services, account_id: str, gateway_name: str, payment_token: PaymentToken
) -> SavedPaymentCardView:
    today = _today(services)
    if (payment_token.expiry_year, payment_token.expiry_month) < (today.year, today.month):
        raise _card_expired(payment_token.expiry_month, payment_token.expiry_year)
    fingerprint = payment_card_fingerprint(services, gateway_name, payment_token)
    card = SavedPaymentCard(
        id=services.new_id(),
        account_id=account_id,
        gateway=gateway_name,
        token_sealed=services.tokens.seal(payment_token.token),
        fingerprint=fingerprint,
        brand=payment_token.brand,
        funding=payment_token.funding,
        last4=payment_token.last4,
        expiry_month=payment_token.expiry_month,
        expiry_year=payment_token.expiry_year,
        created_at=services.clock.now(),
    )
    async with services.unit_of_work() as uow:
        if await uow.saved_payment_cards.count(account_id) >= SAVED_PAYMENT_CARDS_MAX:
            raise ConflictError(
                f"an account keeps at most {SAVED_PAYMENT_CARDS_MAX} saved payment cards",
                code="saved_payment_cards_full",
                params={"maximum": str(SAVED_PAYMENT_CARDS_MAX)},
            )
        added = await uow.saved_payment_cards.add(card)
        await uow.commit()
        if not added:  # saved already: the one kept stands (its token keeps working)
            kept = [
                other
                for other in await uow.saved_payment_cards.of_account(
                    account_id, limit=SAVED_PAYMENT_CARDS_MAX
                )
                if other.fingerprint == fingerprint
            ]
            card = kept[0] if kept else card
    return _view(card, today)


async def save_payment_token(
    services: Services, account_id: str, token: str
) -> SavedPaymentCardView:
    """Save the payment card a token from the PSP's tokeniser stands for (the browser got it; the
    card's number never reached us). ``payment_token_invalid`` if the PSP did not issue it."""
    if not token or len(token) > PAYMENT_TOKEN_LENGTH_MAX:
        raise InputError(
            "The payment token is not valid; enter the card details again.",
            code="payment_token_invalid",
            field="payment.token",
        )
    gateway = services.gateway
    payment_token = await gateway.payment_token_of(token)
    return await _keep(services, account_id, gateway.name, payment_token)


async def save_from_renewal(
    services: Services, account_id: str, renewal_id: str
) -> SavedPaymentCardView:
    """Save the payment card that paid a renewal of one of the account's cards."""
    async with services.unit_of_work() as uow:
        renewal = await uow.renewals.get(renewal_id)
        owned = renewal is not None and await uow.accounts.owns_card(account_id, renewal.card_id)
        payment = await uow.payments.for_renewal(renewal.id) if renewal and owned else None
    if renewal is None or not owned:
        raise _not_savable()
    if (
        payment is None
        or payment.method not in (CREDIT_CARD, DEBIT_CARD)
        or payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
        or not payment.token_encrypted
    ):
        raise _not_savable()
    gateway = services.gateway_named(payment.gateway)
    payment_token = await gateway.payment_token_of(services.tokens.open(payment.token_encrypted))
    return await _keep(services, account_id, gateway.name, payment_token)


async def remove_saved_payment_card(services: Services, account_id: str, saved_id: str) -> None:
    async with services.unit_of_work() as uow:
        if not await uow.saved_payment_cards.remove(account_id, saved_id):
            raise saved_payment_card_unknown()
        await uow.commit()


def method_for(funding: str) -> str:
    """The method a saved payment card pays as: a debit or prepaid card as debit, else credit."""
    try:
        kind = CardFunding(funding)
    except ValueError:
        kind = CardFunding.UNKNOWN
    return DEBIT_CARD if kind in (CardFunding.DEBIT, CardFunding.PREPAID) else CREDIT_CARD


async def renew_with_saved_card(
    services: Services,
    account_id: str,
    *,
    card_id: str,
    plan_code: str,
    saved_id: str,
    idempotency_key: str,
    channel: str,
) -> RenewalView:
    """Renew a card linked to the account, paid with one of its saved payment cards, as any
    renewal is (``renewals.renew``): the same ``idempotency_key`` gives the same renewal."""
    async with services.unit_of_work() as uow:
        owned = await uow.accounts.owns_card(account_id, card_id)
        card = await uow.cards.get(card_id) if owned else None
        saved = await uow.saved_payment_cards.get(account_id, saved_id)
    if card is None:
        raise card_unknown()
    if saved is None:
        raise saved_payment_card_unknown()
    today = _today(services)
    if saved.expired(today.year, today.month):
        raise _card_expired(saved.expiry_month, saved.expiry_year)
    method = method_for(saved.funding)
    request = RenewalRequest(
        card_number=card.msisdn,
        plan_code=plan_code,
        payment=None,
        channel=channel,
        idempotency_key=idempotency_key,
        method=method,
        payment_token=services.tokens.open(saved.token_sealed),
    )
    return await renew(services, request)
