"""Receipt numbers: short, unambiguous when read aloud or typed (Crockford's base 32: no I, L, O,
U), and unguessable (60 random bits), so a receipt cannot be found by counting."""

from __future__ import annotations

from topup.domain.errors import InputError, require

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 3
GROUP_LENGTH = 4
RECEIPT_NUMBER_LENGTH = 2 + GROUPS * (GROUP_LENGTH + 1) - 1  # "R-XXXX-XXXX-XXXX": 16
_READ_AS = {"I": "1", "L": "1", "O": "0"}


def receipt_number_from(random_bits: int) -> str:
    """``R-`` and 12 characters made from 60 random bits."""
    require(0 <= random_bits < 1 << 60, "a receipt number takes 60 random bits")
    characters = []
    for _ in range(GROUPS * GROUP_LENGTH):
        random_bits, digit = divmod(random_bits, 32)
        characters.append(ALPHABET[digit])
    groups = [
        "".join(characters[index : index + GROUP_LENGTH])
        for index in range(0, len(characters), GROUP_LENGTH)
    ]
    return "R-" + "-".join(groups)


def parse_receipt_number(text: str) -> str:
    """A receipt number as typed (any case, spaces or dashes, I/L read as 1 and O as 0), in its
    printed form; InputError ``receipt_number_invalid`` if it cannot be one."""
    cleaned = "".join(character for character in text.upper() if character not in " -")
    cleaned = cleaned.removeprefix("R")
    cleaned = "".join(_READ_AS.get(character, character) for character in cleaned)
    if len(cleaned) != GROUPS * GROUP_LENGTH or any(c not in ALPHABET for c in cleaned):
        raise InputError(
            "A receipt number looks like R-XXXX-XXXX-XXXX.",
            code="receipt_number_invalid",
            field="receipt_number",
        )
    groups = [
        cleaned[index : index + GROUP_LENGTH] for index in range(0, len(cleaned), GROUP_LENGTH)
    ]
    return "R-" + "-".join(groups)
