"""Card-number recovery (R8): a subscriber who forgot a card's number asks for it by the e-mail
address registered with the card, and receives the full numbers of every card registered with
that address — on the card itself (given by the operator or with a paid renewal) or through a
confirmed account that linked the card. The e-mail goes only to that address, which is the
proof: whoever can read its mail may know the numbers.

A receipt's holder (its number and verification code, both printed on it) may also read the full
number of the card it is for: ``card_number_by_receipt``.

Whoever asks by e-mail learns nothing about whether an address is registered: the request is answered at
once, the same way every time, and the look-up and the sending happen in a background task. At
most ``mailings_in_flight_max`` background mailings (receipts sent later included) run at once;
beyond that, a request is dropped with a log line (and still answered the same way).
"""

from __future__ import annotations

import logging

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from topup.domain.errors import TopupError
from topup.domain.receipts import parse_receipt_number
from topup.i18n import translations
from topup.services.context import Services
from topup.services.receipts import code_matches, mailings, parse_email, receipt_unknown
from topup.services.views import RecoveredCardView

logger = logging.getLogger("topup.recovery")

RECOVERY_WINDOW_S = 3600  # the rate limit's window: recovery_per_hour_max per address and e-mail
RECOVERY_CARDS_MAX = 50  # card numbers listed in one e-mail at most


def rate_key(services: Services, email: str) -> str:
    """What the per-address rate limit counts: a keyed hash, never the address itself."""
    return "email:" + services.tokens.fingerprint("recovery:" + email.lower())


def full_number(msisdn: str) -> str:
    """A card's number in full, written as its country writes it: ``+60 12-345 6789``."""
    try:
        number = phonenumbers.parse(msisdn)
    except NumberParseException:  # a stored number from before a metadata change
        return msisdn
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)


async def card_number_by_receipt(
    services: Services, receipt_number: str, verification_code: str
) -> RecoveredCardView:
    """The card of the paid receipt with this number, in full, if the verification code is
    the receipt's; else ``receipt_unknown`` (404), the same for an unknown or unpaid number and a
    wrong code. A malformed number is ``receipt_number_invalid``. Callers limit the attempts."""
    number = parse_receipt_number(receipt_number)
    async with services.unit_of_work() as uow:
        row = await uow.receipts.by_number(number)
    matches = code_matches(services, number, verification_code)
    if row is None or not matches:
        raise receipt_unknown()
    return RecoveredCardView(
        receipt_number=number,
        card_number=full_number(row.msisdn),
        card_kind=row.card_kind,
        paid_at=row.paid_at,
        plan_code=row.plan_code,
        plan_names=dict(row.plan_names),
    )


def request_card_numbers(services: Services, email: str, locale: str) -> None:
    """Start mailing the card numbers registered with ``email`` (checked by ``parse_email``)
    to it, in ``locale``; returns at once whether or not any card has that address."""
    address = parse_email(email)
    if not mailings(services).start(send_card_numbers(services, address, locale)):
        logger.warning(
            "card-number recovery dropped: %d mailings already under way",
            mailings(services).in_flight,
        )


async def send_card_numbers(services: Services, email: str, locale: str) -> bool:
    """Look up the cards registered with ``email`` and mail their full numbers to it; True if an
    e-mail went out. Never raises: it runs in the background, where nobody would hear."""
    try:
        async with services.unit_of_work() as uow:
            found = await uow.receipts.card_numbers_by_email(email, limit=RECOVERY_CARDS_MAX)
        if not found:
            return False
        if services.mailer is None:
            logger.warning("no mailer configured: card-number recovery not sent")
            return False
        numbers = "\n".join("  " + full_number(msisdn) for msisdn, _ in found)
        texts = translations(locale)
        await services.mailer.send(
            found[0][1],  # the address as registered, not as typed
            texts.gettext("The card numbers registered with this e-mail address"),
            texts.gettext(
                "Someone asked for the card numbers registered with this e-mail address. Here "
                "they are:\n\n%(numbers)s\n\nIf you did not ask, you can ignore this e-mail; "
                "nobody else receives these numbers.",
                numbers=numbers,
            ),
        )
    except TopupError as error:
        logger.warning("card-number recovery not sent: %s (%s)", error.code, error.message)
        return False
    except Exception:  # a bug; logged with its traceback, and the server goes on
        logger.exception("card-number recovery failed")
        return False
    return True
