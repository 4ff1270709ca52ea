"""What a subscriber chooses about reminders: which channels each linked card uses (all on by
default), unsubscribing from an e-mail's link (a signed token, no sign-in), and the installed
app's Web Push subscription (one per account)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from topup.domain.cards import Card
from topup.domain.errors import InputError
from topup.domain.reminders import CHANNELS, ReminderChannel
from topup.ports import PushSubscription
from topup.services.access import card_not_found
from topup.services.context import Services

UNSUBSCRIBE_PAGE = "/reminders/unsubscribe"  # the portal's page: GET shows a button, POST does it
ONE_CLICK_PATH = "/api/v1/reminders/unsubscribe"  # RFC 8058's one-click POST (no page, no form)
TOKEN_LENGTH_MAX = 160
SIGNATURE_LENGTH = 32  # hex characters of the keyed hash kept in the token
ENDPOINT_LENGTH_MAX = 2000
KEY_LENGTH_MAX = 128
CARDS_SHOWN_MAX = 100


@dataclass(frozen=True, slots=True)
class CardChannels:
    """One linked card and whether each channel is on for it."""

    card: Card
    enabled: dict[str, bool]


def _signature(services: Services, card_id: str, channel: ReminderChannel) -> str:
    return services.tokens.fingerprint(f"reminder-unsubscribe:{card_id}:{channel.value}")[
        :SIGNATURE_LENGTH
    ]


def unsubscribe_token(services: Services, card_id: str, channel: ReminderChannel) -> str:
    """``<card id>.<channel>.<signature>``: it says which card and channel, and only we can make
    it (a keyed hash with the platform's key). It unsubscribes, nothing more."""
    return f"{card_id}.{channel.value}.{_signature(services, card_id, channel)}"


def unsubscribe_links(services: Services, token: str) -> tuple[str, str]:
    """The page's link (in the e-mail's text) and the one-click link (List-Unsubscribe)."""
    site = services.public_url.rstrip("/")
    query = "?" + urlencode({"token": token})
    return site + UNSUBSCRIBE_PAGE + query, site + ONE_CLICK_PATH + query


def _invalid_token() -> InputError:
    return InputError(
        "this unsubscribe link is not valid", code="reminder_unsubscribe_invalid", field="token"
    )


def read_unsubscribe_token(services: Services, token: str) -> tuple[str, ReminderChannel]:
    """The card and channel a token names; InputError ``reminder_unsubscribe_invalid``."""
    if len(token) > TOKEN_LENGTH_MAX or token.count(".") != 2:
        raise _invalid_token()
    card_id, channel_name, signature = token.split(".")
    try:
        channel = ReminderChannel(channel_name)
    except ValueError:
        raise _invalid_token() from None
    if not hmac.compare_digest(signature, _signature(services, card_id, channel)):
        raise _invalid_token()
    return card_id, channel


async def unsubscribed_card(services: Services, token: str) -> tuple[Card, ReminderChannel, bool]:
    """What an unsubscribe link is about (shown before the button): the card, the channel and
    whether it is still on."""
    card_id, channel = read_unsubscribe_token(services, token)
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(card_id)
        if card is None:
            raise _invalid_token()
        found = await uow.reminders.preferences([card_id])
    return card, channel, found.get((card_id, channel.value), True)


async def unsubscribe(services: Services, token: str) -> tuple[Card, ReminderChannel]:
    """Turn the token's channel off for its card (again: nothing changes)."""
    card_id, channel = read_unsubscribe_token(services, token)
    async with services.unit_of_work() as uow:
        card = await uow.cards.get(card_id)
        if card is None:
            raise _invalid_token()
        await uow.reminders.set_preference(
            card_id, channel.value, enabled=False, at=services.clock.now()
        )
        await uow.commit()
    return card, channel


async def card_channels(services: Services, account_id: str) -> list[CardChannels]:
    """The account's linked cards, each with its channels (on unless turned off)."""
    async with services.unit_of_work() as uow:
        cards = await uow.accounts.linked_cards(account_id, limit=CARDS_SHOWN_MAX)
        found = await uow.reminders.preferences([card.id for card in cards])
    return [
        CardChannels(
            card,
            {channel.value: found.get((card.id, channel.value), True) for channel in CHANNELS},
        )
        for card in cards
    ]


async def save_card_channels(
    services: Services, account_id: str, chosen: Sequence[tuple[str, str]]
) -> int:
    """Set every linked card's channels: on for the (card id, channel) pairs ``chosen``, off
    for the others (a form's checkboxes). Pairs about other cards are refused."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        cards = await uow.accounts.linked_cards(account_id, limit=CARDS_SHOWN_MAX)
        linked = {card.id for card in cards}
        wanted = set(chosen)
        for card_id, channel in wanted:
            if card_id not in linked or channel not in {c.value for c in CHANNELS}:
                raise card_not_found()
        for card_id in sorted(linked):
            for channel in CHANNELS:
                await uow.reminders.set_preference(
                    card_id, channel.value, enabled=(card_id, channel.value) in wanted, at=now
                )
        await uow.commit()
    return len(linked)


def _subscription_invalid() -> InputError:
    return InputError(
        "this browser's push subscription is not valid",
        code="push_subscription_invalid",
        field="subscription",
    )


def check_subscription(endpoint: str, p256dh: str, auth: str) -> PushSubscription:
    """A browser's subscription as its PushSubscription.toJSON() gives it: an https endpoint
    (or http on this machine, for tests) and its two keys in base64url."""
    parts = urlsplit(endpoint)
    local = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    if (
        len(endpoint) > ENDPOINT_LENGTH_MAX
        or not parts.hostname
        or not (parts.scheme == "https" or (parts.scheme == "http" and local))
    ):
        raise _subscription_invalid()
    for key in (p256dh, auth):
        if (
            not key
            or len(key) > KEY_LENGTH_MAX
            or not key.replace("-", "").replace("_", "").isalnum()
        ):
            raise _subscription_invalid()
    return PushSubscription(endpoint=endpoint, p256dh=p256dh.rstrip("="), auth=auth.rstrip("="))


async def save_push_subscription(
    services: Services, account_id: str, subscription: PushSubscription
) -> None:
    async with services.unit_of_work() as uow:
        await uow.reminders.save_push_subscription(
            account_id, subscription, at=services.clock.now()
        )
        await uow.commit()


async def push_subscription(services: Services, account_id: str) -> PushSubscription | None:
    async with services.unit_of_work() as uow:
        return await uow.reminders.push_subscription(account_id)


async def forget_push_subscription(services: Services, account_id: str) -> bool:
    async with services.unit_of_work() as uow:
        forgotten = await uow.reminders.forget_push_subscription(account_id, endpoint=None)
        await uow.commit()
    return forgotten


async def forget_gone_subscription(services: Services, account_id: str, endpoint: str) -> None:
    """The push service says this subscription is gone: forget it (unless replaced since)."""
    async with services.unit_of_work() as uow:
        await uow.reminders.forget_push_subscription(account_id, endpoint=endpoint)
        await uow.commit()
