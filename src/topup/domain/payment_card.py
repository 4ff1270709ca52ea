"""Payment card details a payer typed, checked field by field before any gateway sees them.

(A *payment card* pays; a *card* in topup's glossary is the subscription line being renewed.)

``check_card_details`` checks every field and raises one ``PaymentCardDetailsInvalid`` (code
``card_details_invalid``) whose ``problems`` hold one ``InputError`` per bad field, so a form can
mark every field at once. Each field reports its first problem, in this order:

    field                 code                                     when
    payment.card_number   payment_card_number_empty                nothing but blanks and dashes
                          payment_card_number_invalid_characters   anything but digits, spaces, dashes
                          payment_card_number_wrong_length         not a length of the card's brand
                          payment_card_number_bad_check_digit      the Luhn check digit does not match
    payment.expiry        expiry_month_invalid                     month not 1 to 12
                          expiry_year_invalid                      year not 20xx, or too far ahead
                          payment_card_expired                     expiry month before today's month
    payment.cvc           cvc_invalid_characters                   anything but digits
                          cvc_wrong_length                         not 3 digits (4 for Amex)
    payment.holder_name   holder_name_missing                      required but blank
                          holder_name_invalid                      control characters, or too long

A card of a brand we do not know is not refused: it must still be 12 to 19 digits and pass the
Luhn check, and the gateway decides. IIN tables are never complete (domestic schemes, new ranges),
and refusing a good card is worse than a decline the gateway explains.

What the leading digits say about a card (brand, funding, issuing country; ``CardFacts``) comes
from an IIN table (``topup.adapters.iin_table``). With those facts:

    check_method_matches   method "credit_card" with a debit or prepaid card -> card_is_debit,
                           method "debit_card" with a credit card -> card_is_credit
    check_international    a card issued abroad whose issuer refuses payments abroad
                           -> international_payments_not_allowed (a ``PaymentError``; the gateway's
                           own refusal maps to the same error: ``international_payments_refused()``)

Pure: "today" is an argument; nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from topup.domain.card_number import luhn_is_valid
from topup.domain.errors import InputError, PaymentError, require

payment_card_digits_min = 12
payment_card_digits_max = 19
expiry_years_ahead_max = 20  # no card is issued for longer; a later year is a typo
holder_name_characters_max = 26  # the embossing limit of a card's name line
operator_country_length = 2

CREDIT_CARD_METHOD = "credit_card"
DEBIT_CARD_METHOD = "debit_card"
INTERNATIONAL_PAYMENTS_NOT_ALLOWED = "international_payments_not_allowed"

FIELD_CARD_NUMBER = "payment.card_number"
FIELD_EXPIRY = "payment.expiry"
FIELD_CVC = "payment.cvc"
FIELD_HOLDER_NAME = "payment.holder_name"
FIELD_METHOD = "payment.method"

# Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus.
_DASHES = frozenset("-‐‑‒–—―−")


class CardBrand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    UNIONPAY = "unionpay"
    JCB = "jcb"
    DISCOVER = "discover"
    UNKNOWN = "unknown"


class CardFunding(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"
    PREPAID = "prepaid"
    UNKNOWN = "unknown"


_BRAND_NAMES: dict[CardBrand, str] = {
    CardBrand.VISA: "Visa",
    CardBrand.MASTERCARD: "Mastercard",
    CardBrand.AMEX: "American Express",
    CardBrand.UNIONPAY: "UnionPay",
    CardBrand.JCB: "JCB",
    CardBrand.DISCOVER: "Discover",
}
_LENGTHS: dict[CardBrand, tuple[int, ...]] = {
    CardBrand.VISA: (13, 16, 19),
    CardBrand.MASTERCARD: (16,),
    CardBrand.AMEX: (15,),
    CardBrand.UNIONPAY: (16, 17, 18, 19),
    CardBrand.JCB: (16, 17, 18, 19),
    CardBrand.DISCOVER: (16, 17, 18, 19),
    CardBrand.UNKNOWN: tuple(range(payment_card_digits_min, payment_card_digits_max + 1)),
}


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What an IIN table knows about a card from its leading digits."""

    brand: CardBrand = CardBrand.UNKNOWN
    funding: CardFunding = CardFunding.UNKNOWN
    issuer_country: str = ""  # ISO 3166 alpha-2, or "" when unknown
    international_payments: bool | None = None  # None: unknown

    def __post_init__(self) -> None:
        require(
            self.issuer_country == "" or _is_country_code(self.issuer_country),
            f"an issuer country is an upper-case ISO alpha-2 code, got {self.issuer_country!r}",
        )


UNKNOWN_CARD_FACTS = CardFacts()


class EnteredCardDetails(Protocol):
    """The fields of ``topup.ports.PaymentCardDetails`` this module reads."""

    @property
    def number(self) -> str: ...

    @property
    def expiry_month(self) -> int: ...

    @property
    def expiry_year(self) -> int: ...

    @property
    def cvc(self) -> str: ...


class PaymentCardDetailsInvalid(InputError):  # noqa: N818 -- the name the issue and callers use
    """One or more card details are wrong; ``problems`` has one ``InputError`` per bad field."""

    code = "card_details_invalid"

    def __init__(self, problems: tuple[InputError, ...]) -> None:
        require(bool(problems), "PaymentCardDetailsInvalid needs at least one problem")
        super().__init__(
            "Some card details need correcting. " + " ".join(p.message for p in problems),
            params={"fields": ", ".join(p.field or "" for p in problems)},
        )
        self.problems = problems


def normalize_card_number(text: str) -> str:
    """The typed number without spaces and dashes (full-width digits become ASCII).

    The result may still hold other characters; ``check_card_details`` reports them. Pass this,
    not the typed text, to the IIN table and the gateway.
    """
    if text.isascii() and text.isdigit():  # the usual case, already clean
        return text
    return "".join(
        character
        for character in unicodedata.normalize("NFKC", text)
        if not character.isspace() and character not in _DASHES
    )


def brand_from_digits(digits: str) -> CardBrand:
    """The brand the leading digits (a prefix is enough) belong to, or ``UNKNOWN``."""
    if not _is_ascii_digits(digits):
        return CardBrand.UNKNOWN
    if digits.startswith("4"):
        return CardBrand.VISA
    first_two, first_three, first_four = digits[:2], digits[:3], digits[:4]
    if first_two in {"34", "37"}:
        return CardBrand.AMEX
    if first_two in {"51", "52", "53", "54", "55"}:
        return CardBrand.MASTERCARD
    if len(first_four) == 4 and 2221 <= int(first_four) <= 2720:
        return CardBrand.MASTERCARD
    if len(first_four) == 4 and 3528 <= int(first_four) <= 3589:
        return CardBrand.JCB
    if first_two == "62":
        return CardBrand.UNIONPAY
    if first_four == "6011" or first_two == "65":
        return CardBrand.DISCOVER
    if len(first_three) == 3 and 644 <= int(first_three) <= 649:
        return CardBrand.DISCOVER
    return CardBrand.UNKNOWN


def check_card_details(
    details: EnteredCardDetails,
    *,
    today: dt.date,
    holder_name_required: bool,
    holder_name: str | None,
    facts: CardFacts,
) -> None:
    """Check every field; raise one ``PaymentCardDetailsInvalid`` listing each bad field's problem.

    ``facts`` are the IIN table's facts for this number: their brand decides the valid lengths
    and the CVC length (when the table does not know the brand, the leading digits do).
    """
    digits = normalize_card_number(details.number)
    brand = facts.brand if facts.brand is not CardBrand.UNKNOWN else brand_from_digits(digits)
    found = (
        _number_problem(digits, brand),
        _expiry_problem(details.expiry_month, details.expiry_year, today),
        _cvc_problem(details.cvc, brand),
        _holder_name_problem(holder_name, required=holder_name_required),
    )
    problems = tuple(problem for problem in found if problem is not None)
    if problems:
        raise PaymentCardDetailsInvalid(problems)


def check_method_matches(method: str, facts: CardFacts) -> None:
    """Refuse a debit or prepaid card paid as ``credit_card`` and a credit card as ``debit_card``.

    Unknown funding passes, and so does any method that is not one of those two.
    """
    if method == CREDIT_CARD_METHOD and facts.funding in {CardFunding.DEBIT, CardFunding.PREPAID}:
        raise InputError(
            "This is a debit or prepaid card, not a credit card. Choose “Debit card” as the "
            "payment method, or pay with a credit card.",
            code="card_is_debit",
            field=FIELD_METHOD,
        )
    if method == DEBIT_CARD_METHOD and facts.funding is CardFunding.CREDIT:
        raise InputError(
            "This is a credit card, not a debit card. Choose “Credit card” as the payment "
            "method, or pay with a debit card.",
            code="card_is_credit",
            field=FIELD_METHOD,
        )


def check_international(facts: CardFacts, operator_country: str) -> None:
    """Refuse a card issued outside ``operator_country`` whose issuer refuses payments abroad.

    Cards of the operator's country, of an unknown country, or whose issuer's rule is unknown pass
    (the gateway's refusal, if any, becomes ``international_payments_refused()``).
    """
    country = operator_country.upper()
    require(_is_country_code(country), f"not an ISO alpha-2 country code: {operator_country!r}")
    if (
        facts.international_payments is False
        and facts.issuer_country
        and facts.issuer_country != country
    ):
        raise international_payments_refused()


def international_payments_refused() -> PaymentError:
    """The error for a card whose issuer does not allow payments abroad (ours or the gateway's)."""
    return PaymentError(
        "The bank that issued this card does not allow payments abroad. Use another card, "
        "or pay with an e-wallet.",
        code=INTERNATIONAL_PAYMENTS_NOT_ALLOWED,
        retryable=False,
        field=FIELD_CARD_NUMBER,
    )


# --- one field each -----------------------------------------------------------------------------


def _number_problem(digits: str, brand: CardBrand) -> InputError | None:
    if not digits:
        return InputError(
            "Enter the card number: the 12 to 19 digits on your payment card.",
            code="payment_card_number_empty",
            field=FIELD_CARD_NUMBER,
        )
    for character in digits:
        if not _is_ascii_digits(character):
            return InputError(
                "A card number has only digits (spaces and dashes are fine), "
                f"but this one contains {character!r}.",
                code="payment_card_number_invalid_characters",
                field=FIELD_CARD_NUMBER,
                params={"character": character},
            )
    lengths = _LENGTHS[brand]
    if len(digits) not in lengths:
        brand_name = _BRAND_NAMES.get(brand, "")
        article = "An" if brand is CardBrand.AMEX else "A"
        return InputError(
            f"{article} {brand_name or 'payment card'} number has {_lengths_text(lengths)} digits, "
            f"but this one has {len(digits)}. Check the number on the card.",
            code="payment_card_number_wrong_length",
            field=FIELD_CARD_NUMBER,
            params={
                "brand": brand.value,
                "brand_name": brand_name,
                "lengths": _lengths_text(lengths),
                "length": str(len(digits)),
            },
        )
    if not luhn_is_valid(digits):
        return InputError(
            "This card number has a typo: its digits do not add up. "
            "Check them against the card and try again.",
            code="payment_card_number_bad_check_digit",
            field=FIELD_CARD_NUMBER,
        )
    return None


def _expiry_problem(month: int, year: int, today: dt.date) -> InputError | None:
    if not 1 <= month <= 12:
        return InputError(
            "The expiry month is a number from 01 to 12, as printed on the card (MM/YY).",
            code="expiry_month_invalid",
            field=FIELD_EXPIRY,
        )
    full_year = 2000 + year if 0 <= year < 100 else year
    if not 2000 <= full_year <= today.year + expiry_years_ahead_max:
        return InputError(
            "The expiry year is not valid. Enter the year printed on the card, "
            f"for example {today.year % 100:02d} or {today.year}.",
            code="expiry_year_invalid",
            field=FIELD_EXPIRY,
            params={"example_short": f"{today.year % 100:02d}", "example_long": str(today.year)},
        )
    # A card is valid through the last day of its expiry month.
    if (full_year, month) < (today.year, today.month):
        return InputError(
            f"This card expired at the end of {month:02d}/{full_year % 100:02d}. "
            "Check the expiry date, or use another card.",
            code="payment_card_expired",
            field=FIELD_EXPIRY,
            params={"expiry": f"{month:02d}/{full_year % 100:02d}"},
        )
    return None


def _cvc_problem(cvc: str, brand: CardBrand) -> InputError | None:
    typed = unicodedata.normalize("NFKC", cvc).strip()
    if typed and not _is_ascii_digits(typed):
        return InputError(
            "The security code (CVC) has only digits.",
            code="cvc_invalid_characters",
            field=FIELD_CVC,
        )
    if brand is CardBrand.AMEX:
        if len(typed) != 4:
            return InputError(
                "The security code (CVC) of an American Express card has 4 digits, printed on "
                "the front of the card.",
                code="cvc_wrong_length",
                field=FIELD_CVC,
                params={"digits": "4", "brand": brand.value},
            )
    elif len(typed) != 3:
        return InputError(
            "The security code (CVC) has 3 digits, printed on the back of the card.",
            code="cvc_wrong_length",
            field=FIELD_CVC,
            params={"digits": "3", "brand": brand.value},
        )
    return None


def _holder_name_problem(holder_name: str | None, *, required: bool) -> InputError | None:
    name = unicodedata.normalize("NFC", holder_name or "").strip()
    if not name:
        if not required:
            return None
        return InputError(
            "Enter the cardholder's name as printed on the card.",
            code="holder_name_missing",
            field=FIELD_HOLDER_NAME,
        )
    has_control = any(unicodedata.category(character).startswith("C") for character in name)
    if has_control or len(name) > holder_name_characters_max:
        return InputError(
            f"Enter the cardholder's name as printed on the card: at most "
            f"{holder_name_characters_max} letters, spaces and punctuation.",
            code="holder_name_invalid",
            field=FIELD_HOLDER_NAME,
            params={"maximum": str(holder_name_characters_max)},
        )
    return None


def _lengths_text(lengths: tuple[int, ...]) -> str:
    if len(lengths) == 1:
        return str(lengths[0])
    if len(lengths) > 2 and lengths == tuple(range(lengths[0], lengths[-1] + 1)):
        return f"{lengths[0]} to {lengths[-1]}"
    return ", ".join(str(length) for length in lengths[:-1]) + f" or {lengths[-1]}"


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_country_code(text: str) -> bool:
    return (
        len(text) == operator_country_length
        and text.isascii()
        and text.isalpha()
        and text.isupper()
    )
