"""What a subscriber types as a card number: the card's mobile number (MSISDN) or the SIM's ICCID.

``parse_card_number`` accepts any local or international way of writing a mobile number of the
operator's region ("012-345 6789", "+60 12 345 6789", "60123456789") and the 18 to 20 digit ICCID
printed on the SIM card holder. Each way of getting it wrong is an ``InputError`` with its own code
(field ``card_number``), in the order they are checked:

    card_number_empty               nothing but blanks and separators
    card_number_invalid_characters  letters or symbols other than spaces, dashes, dots, (), leading +
    card_number_wrong_length        too few or too many digits
    card_number_bad_check_digit     an ICCID whose Luhn check digit does not match (a typo)
    card_number_wrong_country       a valid mobile number of another country
    card_number_not_mobile          a valid number of the region, but a landline or service number
    card_number_invalid             anything else that is not a mobile number of the region
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType, ValidationResult

from topup.domain.errors import InputError, require
from topup.domain.profile import OperatorProfile

card_number_digits_max = 20  # the longest ICCID; E.164 numbers have at most 15 digits
iccid_digits_min = 18
iccid_digits_max = 20
iccid_prefix = "89"  # ISO/IEC 7812 major industry identifier for telecommunications

_ASCII_DIGITS = frozenset("0123456789")
PARSED_NUMBERS_REMEMBERED_MAX = 65_536  # mobile numbers whose parsing is remembered
# Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus.
_SEPARATORS = frozenset("-‐‑‒–—―−.()")
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
_WRONG_LENGTH_REASONS = frozenset(
    {
        ValidationResult.TOO_SHORT,
        ValidationResult.TOO_LONG,
        ValidationResult.INVALID_LENGTH,
        ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    }
)
_WRONG_LENGTH_PARSE_ERRORS = frozenset(
    {
        NumberParseException.TOO_SHORT_AFTER_IDD,
        NumberParseException.TOO_SHORT_NSN,
        NumberParseException.TOO_LONG,
        # Only raised for digit strings too short to hold a national number ("1", "+60").
        NumberParseException.NOT_A_NUMBER,
    }
)


class CardNumberKind(StrEnum):
    MSISDN = "msisdn"
    ICCID = "iccid"


@dataclass(frozen=True, slots=True)
class CardNumber:
    """A card number in canonical form: E.164 ("+60123456789") or the ICCID's bare digits."""

    kind: CardNumberKind
    value: str

    def __post_init__(self) -> None:
        if self.kind is CardNumberKind.MSISDN:
            digits = self.value[1:]
            require(
                self.value.startswith("+") and _is_ascii_digits(digits) and len(digits) <= 15,
                f"an MSISDN must be in E.164 form, got {self.value!r}",
            )
        else:
            require(
                _is_ascii_digits(self.value)
                and iccid_digits_min <= len(self.value) <= iccid_digits_max,
                f"an ICCID must be {iccid_digits_min} to {iccid_digits_max} digits",
            )

    def masked(self) -> str:
        """The number with its middle hidden, for receipts and logs: ``"+60 12-*** 6789"``."""
        if self.kind is CardNumberKind.ICCID:
            return self.value[:4] + "*" * (len(self.value) - 8) + self.value[-4:]
        try:
            number = phonenumbers.parse(self.value)
        except NumberParseException:  # a stored number from before a metadata change
            return self.value[:3] + "*" * (len(self.value) - 7) + self.value[-4:]
        national = phonenumbers.national_significant_number(number)
        shown_start, shown_end = (2, 4) if len(national) > 6 else (0, 2)
        hidden = len(national) - shown_start - shown_end
        start = national[:shown_start] + "-" if shown_start else ""
        return f"+{number.country_code} {start}{'*' * hidden} {national[-shown_end:]}"


def luhn_check_digit(digits: str) -> int:
    """The Luhn check digit to append to ``digits`` (ASCII digits, without the check digit)."""
    require(_is_ascii_digits(digits), "Luhn digits must be ASCII digits")
    total = 0
    # The rightmost payload digit is doubled, since the check digit will sit to its right.
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return (10 - total % 10) % 10


def luhn_is_valid(digits: str) -> bool:
    """Whether the last of ``digits`` (ASCII digits) is the Luhn check digit of the others."""
    require(_is_ascii_digits(digits), "Luhn digits must be ASCII digits")
    return len(digits) >= 2 and luhn_check_digit(digits[:-1]) == int(digits[-1])


def parse_card_number(text: str, profile: OperatorProfile) -> CardNumber:
    """Parse what a subscriber typed as a card number, under the operator's phone region."""
    has_plus, digits = _clean(text)
    if len(digits) > card_number_digits_max:
        raise _wrong_length(profile)
    if (
        not has_plus
        and digits.startswith(iccid_prefix)
        and iccid_digits_min <= len(digits) <= iccid_digits_max
    ):
        if not luhn_is_valid(digits):
            raise InputError(
                "This SIM card number (ICCID) has a typo: its digits do not add up. "
                "Check them against the card holder and try again.",
                code="card_number_bad_check_digit",
                field="card_number",
            )
        return CardNumber(CardNumberKind.ICCID, digits)
    return _parse_msisdn(has_plus, digits, profile)


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _clean(text: str) -> tuple[bool, str]:
    """Split typed text into (began with +, digits), dropping spaces and separators."""
    # NFKC turns full-width digits and signs (as typed with a Chinese input method) into ASCII.
    kept = [
        character
        for character in unicodedata.normalize("NFKC", text)
        if not character.isspace() and character not in _SEPARATORS
    ]
    has_plus = bool(kept) and kept[0] == "+"
    digits = "".join(kept[1:] if has_plus else kept)
    if not digits:
        raise InputError(
            "Enter your card number: the mobile number of the card, "
            "or the SIM card number (ICCID) printed on the card holder.",
            code="card_number_empty",
            field="card_number",
        )
    for character in digits:
        if character not in _ASCII_DIGITS:
            raise InputError(
                f"A card number has only digits (spaces, dashes and a leading + are fine), "
                f"but it contains {character!r}.",
                code="card_number_invalid_characters",
                field="card_number",
                params={"character": character},
            )
    return has_plus, digits


def _parse_msisdn(has_plus: bool, digits: str, profile: OperatorProfile) -> CardNumber:
    e164 = _mobile_e164(has_plus, digits, profile.phone_region)
    if e164 is not None:
        return CardNumber(CardNumberKind.MSISDN, e164)
    region = profile.phone_region
    try:  # not a mobile number of the region: find out what it is, to say so precisely
        number = phonenumbers.parse(("+" if has_plus else "") + digits, region)
    except NumberParseException as error:
        if error.error_type in _WRONG_LENGTH_PARSE_ERRORS:
            raise _wrong_length(profile) from None
        raise _invalid(profile) from None
    raise _classify_rejected(number, profile)


@functools.lru_cache(maxsize=PARSED_NUMBERS_REMEMBERED_MAX)
def _mobile_e164(has_plus: bool, digits: str, region: str) -> str | None:
    """The E.164 form of a mobile number of ``region`` written this way, or None. Pure, and
    asked for every renewal of the same numbers: its answers are remembered (bounded)."""
    try:
        number = phonenumbers.parse(("+" if has_plus else "") + digits, region)
    except NumberParseException:
        return None
    mobile = _is_mobile_of(number, region)
    if not mobile and not has_plus:
        # "62812345678" under ID is both the mobile +62 812-345-678 written without its plus and
        # the valid landline +62 628-1234-5678; a data card is a mobile line, so prefer the mobile.
        alternative = _parse_or_none("+" + digits)
        if alternative is not None and _is_mobile_of(alternative, region):
            number, mobile = alternative, True
    if not mobile:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _parse_or_none(text: str) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text)
    except NumberParseException:
        return None


def _is_mobile_of(number: PhoneNumber, region: str) -> bool:
    """A valid mobile number of ``region``. (Valid for the region means: the region's country
    code and a known type in its numbering plan, so one type look-up answers both.)"""
    return (
        phonenumbers.region_code_for_number(number) == region
        and phonenumbers.number_type(number) in _MOBILE_TYPES
    )


def _classify_rejected(number: PhoneNumber, profile: OperatorProfile) -> InputError:
    """The error for a parsed number that is not a mobile number of the profile's region."""
    if phonenumbers.is_valid_number(number):
        if phonenumbers.is_valid_number_for_region(number, profile.phone_region):
            return InputError(
                "This is a landline or service number, not a mobile number. Enter the number "
                f"of your data card, for example {_example(profile)}.",
                code="card_number_not_mobile",
                field="card_number",
                params={"example": _example(profile)},
            )
        return InputError(
            f"This is a number from another country (+{number.country_code}). Enter the number "
            f"of your data card with this operator, for example {_example(profile)}.",
            code="card_number_wrong_country",
            field="card_number",
            params={"calling_code": str(number.country_code), "example": _example(profile)},
        )
    if number.country_code == profile.calling_code:
        reason = phonenumbers.is_possible_number_for_type_with_reason(
            number, PhoneNumberType.MOBILE
        )
    else:
        reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _WRONG_LENGTH_REASONS:
        return _wrong_length(profile)
    return _invalid(profile)


def _example(profile: OperatorProfile) -> str:
    """A mobile number of the region, written as a subscriber of that region writes it."""
    number = phonenumbers.example_number_for_type(profile.phone_region, PhoneNumberType.MOBILE)
    if number is None:
        return f"+{profile.calling_code} ..."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def _wrong_length(profile: OperatorProfile) -> InputError:
    return InputError(
        "This card number has too few or too many digits. Enter the mobile number of the card, "
        f"for example {_example(profile)}, or the {iccid_digits_min} to {iccid_digits_max} "
        f"digit SIM card number (ICCID) starting with {iccid_prefix}.",
        code="card_number_wrong_length",
        field="card_number",
        params={
            "example": _example(profile),
            "iccid_digits_min": str(iccid_digits_min),
            "iccid_digits_max": str(iccid_digits_max),
            "iccid_prefix": iccid_prefix,
        },
    )


def _invalid(profile: OperatorProfile) -> InputError:
    return InputError(
        "This is not a mobile number we recognise. Check the digits and try again, "
        f"for example {_example(profile)}.",
        code="card_number_invalid",
        field="card_number",
        params={"example": _example(profile)},
    )
