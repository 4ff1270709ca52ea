"""Receipts: what a paid renewal's receipt says, who may read it, and sending it by e-mail.

A renewal gets its receipt number when it is made; it has a receipt once paid. The receipt's
verification code is derived from its number with the platform's secret key (never stored):
printed on the receipt, it lets someone without an account (the payer, a store clerk) open it
again. Staff, the card's owner and the holder of the code may read a receipt; anyone else, like
anyone asking for an unknown or unpaid number, gets the same ``receipt_unknown`` (404).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import re
from collections.abc import Coroutine
from typing import Any
from zoneinfo import ZoneInfo

from topup.domain.accounts import EMAIL_LENGTH_MAX, check_email
from topup.domain.callers import Caller
from topup.domain.card_number import CardNumber, CardNumberKind
from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError
from topup.domain.receipts import ALPHABET, parse_receipt_number
from topup.domain.records import ReceiptFacts, RenewalRecord
from topup.i18n import N_, resolve_or_default, translations
from topup.services.access import may_see_card
from topup.services.context import Services
from topup.services.views import ReceiptView

logger = logging.getLogger("topup.receipts")

VERIFICATION_CODE_LENGTH = 10  # Crockford base 32 characters: 50 bits
VERIFICATION_CODE_TYPED_LENGTH_MAX = 32  # what a caller may type, separators included
_READ_AS = {"I": "1", "L": "1", "O": "0"}
# One @, no blanks, and nothing that could make a header name a second recipient.
_EMAIL = re.compile(
    r"[^@\s,;:<>()\[\]\"\\]{1,64}@[^@\s,;:<>()\[\]\"\\.]+(\.[^@\s,;:<>()\[\]\"\\.]+)+"
)


# --- texts -----------------------------------------------------------------------------------

# What a receipt says of its card's kind and of its renewal's status (English: gettext's ids).
CARD_KIND_TEXTS = {"prepaid": N_("prepaid"), "postpaid": N_("postpaid")}
STATUS_TEXTS = {
    "activating": N_("paid, being activated"),
    "completed": N_("paid and activated"),
    "refunded": N_("refunded"),
}


# --- e-mail addresses ------------------------------------------------------------------------


def parse_email(text: str) -> str:
    """An e-mail address as accounts take it (``check_email``: trimmed, lower-case), and with
    nothing that a mail header would read as a second recipient; else ``email_invalid``."""
    address = check_email(text)
    if not _EMAIL.fullmatch(address):
        raise InputError(
            f"{text.strip()[:EMAIL_LENGTH_MAX]!r} is not an e-mail address",
            code="email_invalid",
            field="email",
            params={"email": text.strip()[:EMAIL_LENGTH_MAX]},
        )
    return address


# --- verification codes ----------------------------------------------------------------------


def verification_code(services: Services, receipt_number: str) -> str:
    """The receipt's code, ``XXXXX-XXXXX``: the first 50 bits of a keyed hash of its number."""
    return code_from_fingerprint(services.tokens.fingerprint("receipt:" + receipt_number))


def paid_receipt_code(services: Services, renewal: RenewalRecord) -> str | None:
    """The verification code of a renewal's receipt once it is paid; None before. For those
    who may read the renewal (the holder of its client secret, the card's owner, staff), so
    that a payer without an account can open the receipt."""
    if renewal.paid_at is None or not renewal.receipt_number:
        return None
    return verification_code(services, renewal.receipt_number)


def code_from_fingerprint(fingerprint: str) -> str:
    """``XXXXX-XXXXX`` in Crockford's base 32 from the first 50 bits of a hex fingerprint."""
    digest = bytes.fromhex(fingerprint)
    bits = int.from_bytes(digest[:8], "big") >> (64 - 5 * VERIFICATION_CODE_LENGTH)
    characters = [
        ALPHABET[(bits >> (5 * position)) & 31]
        for position in reversed(range(VERIFICATION_CODE_LENGTH))
    ]
    half = VERIFICATION_CODE_LENGTH // 2
    return "".join(characters[:half]) + "-" + "".join(characters[half:])


def _typed_code(text: str) -> str:
    """A code as typed (any case, blanks or dashes, I/L read as 1 and O as 0), bare."""
    cleaned = "".join(character for character in text.upper() if character not in " -")
    return "".join(_READ_AS.get(character, character) for character in cleaned)


def _code_matches(services: Services, receipt_number: str, typed: str | None) -> bool:
    if not typed:
        return False
    expected = verification_code(services, receipt_number).replace("-", "")
    typed_bare = _typed_code(typed[:VERIFICATION_CODE_TYPED_LENGTH_MAX])
    # As bytes: compare_digest refuses a str that is not ASCII (a typed "０" or "é").
    return hmac.compare_digest(typed_bare.encode(), expected.encode())


def code_matches(services: Services, receipt_number: str, typed: str | None) -> bool:
    """Whether ``typed`` is the verification code of receipt ``receipt_number`` (printed form)."""
    return _code_matches(services, receipt_number, typed)


# --- reading a receipt -----------------------------------------------------------------------


def receipt_unknown() -> NotFoundError:
    """The one answer for a number that does not exist, is not paid, or is not the caller's."""
    return NotFoundError(
        "no receipt with this number, or it cannot be shown without its verification code",
        code="receipt_unknown",
        field="receipt_number",
        params={},
    )


async def receipt_of(
    services: Services,
    caller: Caller,
    receipt_number: str,
    verification_code: str | None = None,
) -> ReceiptView:
    """The receipt with this number, if the caller may read it (staff, the card's owner, or with
    the receipt's verification code); else ``receipt_unknown``. It keeps the plan's and the
    method's names in every language. A malformed number is ``receipt_number_invalid`` (it
    reveals nothing)."""
    number = parse_receipt_number(receipt_number)
    async with services.unit_of_work() as uow:
        row = await uow.receipts.by_number(number)
        if row is None:
            raise receipt_unknown()
        allowed = (
            caller.is_staff
            or _code_matches(services, number, verification_code)
            or await may_see_card(uow, caller, row.card_id)
        )
    if not allowed:
        raise receipt_unknown()
    return _receipt(services, row)


def _receipt(services: Services, row: ReceiptFacts) -> ReceiptView:
    number = row.receipt_number
    if number is None:
        raise InvariantError(f"paid renewal {row.renewal_id} has no receipt number")
    method = services.methods.get(row.method) if row.method else None
    return ReceiptView(
        receipt_number=number,
        verification_code=verification_code(services, number),
        operator=services.profile.name,
        paid_at=row.paid_at,
        time_zone=services.profile.time_zone,
        card_number=CardNumber(CardNumberKind.MSISDN, row.msisdn).masked(),
        card_kind=row.card_kind,
        plan_code=row.plan_code,
        plan_names=dict(row.plan_names),
        amount=row.amount,
        method=row.method or "",
        method_names=dict(method.names) if method is not None else {},
        brand=row.brand or "",
        last4=row.last4 or "",
        renewal_id=row.renewal_id,
        status=row.status,
        refunded_at=row.refunded_at,
    )


def receipt_lines(receipt: ReceiptView, locale: str) -> list[tuple[str, str]]:
    """(label, value) pairs of a receipt in ``locale``, as the PDF and the e-mail print them."""
    texts = translations(locale)
    method_name = receipt.method_name(resolve_or_default(locale))
    paid = " ".join(part for part in (method_name, receipt.brand.upper(), receipt.last4) if part)
    zone = ZoneInfo(receipt.time_zone)
    local = receipt.paid_at.astimezone(zone)
    kind = receipt.card_kind.value
    amount = receipt.amount
    lines = [
        (texts.gettext("Receipt number"), receipt.receipt_number),
        (texts.gettext("Operator"), receipt.operator),
        (texts.gettext("Paid at"), f"{local:%Y-%m-%d %H:%M} ({receipt.time_zone})"),
        (
            texts.gettext("Card"),
            f"{receipt.card_number} ({_known(CARD_KIND_TEXTS, kind, locale)})",
        ),
        (texts.gettext("Plan"), f"{receipt.plan_name(texts.locale)} ({receipt.plan_code})"),
        (texts.gettext("Amount"), f"{amount.currency} {amount.decimal_text()}"),
        (texts.gettext("Payment"), paid),
        (texts.gettext("Renewal"), receipt.renewal_id),
        (texts.gettext("Status"), _known(STATUS_TEXTS, receipt.status.value, locale)),
    ]
    if receipt.refunded_at is not None:
        refunded = receipt.refunded_at.astimezone(zone)
        lines.append((texts.gettext("Refunded at"), f"{refunded:%Y-%m-%d %H:%M}"))
    lines.append((texts.gettext("Verification code"), receipt.verification_code))
    return lines


def _known(texts: dict[str, str], value: str, locale: str) -> str:
    """The text of a known value in ``locale``; an unknown value as it is."""
    return translations(locale).gettext(texts[value]) if value in texts else value


def receipt_document(services: Services, receipt: ReceiptView, locale: str) -> bytes:
    """The receipt as a document (PDF) in ``locale``, each line the drawer's font cannot draw in
    English; ``receipt_pdf_unavailable`` when no drawer is configured."""
    if services.receipt_drawer is None:
        raise NotFoundError(
            "receipts cannot be printed as PDF here", code="receipt_pdf_unavailable", params={}
        )
    local = [(receipt_title(locale), verification_hint(locale)), *receipt_lines(receipt, locale)]
    english = [(receipt_title("en"), verification_hint("en")), *receipt_lines(receipt, "en")]
    return services.receipt_drawer.draw(
        local,
        english,
        receipt_number=receipt.receipt_number,
        paid_at=receipt.paid_at.astimezone(dt.UTC),
    )


def receipt_title(locale: str) -> str:
    return translations(locale).gettext("Receipt")


def verification_hint(locale: str) -> str:
    return translations(locale).gettext(
        "Anyone holding this receipt can view it again with its number and verification code."
    )


# --- sending e-mail in the background ---------------------------------------------------------

DRAIN_TIMEOUT_S = 10.0  # how long ``drain`` waits for mailings under way
_MAILINGS = "mailings"  # their key in ``Services.batchers``


class BackgroundMailings:
    """Background tasks, at most ``in_flight_max`` at once; kept referenced until done."""

    def __init__(self, in_flight_max: int) -> None:
        self.in_flight_max = in_flight_max
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, object]) -> bool:
        """Run ``work`` in the background; False (``work`` closed unrun) if too many run."""
        if len(self._tasks) >= self.in_flight_max:
            work.close()
            return False
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until every task under way is done (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)


def mailings(services: Services) -> BackgroundMailings:
    """The background mailings (receipts, card-number recovery) of these services, made on
    first use and kept with the batchers (per-process state of the services)."""
    found = services.batchers.get(_MAILINGS)
    if not isinstance(found, BackgroundMailings):
        found = BackgroundMailings(services.limits.mail.mailings_in_flight_max)
        services.batchers[_MAILINGS] = found
    return found


# --- sending a receipt -----------------------------------------------------------------------


async def send_receipt(services: Services, renewal_id: str, email: str, locale: str) -> bool:
    """E-mail the receipt of a paid renewal to ``email``, in ``locale``. False (and a log line)
    when no mailer is configured; ``receipt_unknown`` if the renewal is not paid;
    ``email_invalid`` for a malformed address; ``mail_unavailable`` (retryable) if the mail
    server does not take it."""
    address = parse_email(email)
    async with services.unit_of_work() as uow:
        row = await uow.receipts.by_renewal(renewal_id)
    if row is None:
        raise receipt_unknown()
    receipt = _receipt(services, row)
    if services.mailer is None:
        logger.warning("no mailer configured: receipt %s not sent", receipt.receipt_number)
        return False
    subject = translations(locale).gettext(
        "Your receipt %(receipt_number)s", receipt_number=receipt.receipt_number
    )
    await services.mailer.send(address, subject, receipt_email_body(receipt, locale))
    return True


def receipt_email_body(receipt: ReceiptView, locale: str) -> str:
    intro = translations(locale).gettext("Thank you for your payment. Here is your receipt.")
    lines = [intro, ""]
    lines += [f"{label}: {value}" for label, value in receipt_lines(receipt, locale)]
    lines += ["", verification_hint(locale)]
    return "\n".join(lines) + "\n"


def send_receipt_later(services: Services, renewal_id: str, email: str, locale: str) -> bool:
    """``send_receipt`` in the background (bounded like every mailing): returns at once, False
    if too many mailings are under way and this one is dropped (with a log line). A failure
    to send is logged, never raised. ``email_invalid`` is raised at once."""
    address = parse_email(email)

    async def send() -> None:
        try:
            await send_receipt(services, renewal_id, address, locale)
        except TopupError as error:
            logger.warning("receipt of renewal %s not sent: %s", renewal_id, error.code)
        except Exception:  # a bug; logged with its traceback, and the server goes on
            logger.exception("receipt of renewal %s failed", renewal_id)

    started = mailings(services).start(send())
    if not started:
        logger.warning("receipt of renewal %s dropped: too many mailings under way", renewal_id)
    return started
