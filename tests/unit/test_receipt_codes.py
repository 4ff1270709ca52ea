"""Verification codes of receipts and the e-mail addresses receipts and recovery accept."""

from __future__ import annotations

import pytest

from topup.adapters.secrets import TokenVault
from topup.domain.errors import InputError
from topup.domain.receipts import ALPHABET
from topup.services.receipts import code_from_fingerprint, parse_email

VAULT = TokenVault(TokenVault.new_key())


def test_a_code_is_ten_unambiguous_characters_in_two_groups() -> None:
    code = code_from_fingerprint(VAULT.fingerprint("receipt:R-0000-0000-0001"))
    first, second = code.split("-")
    assert len(first) == len(second) == 5
    assert set(first + second) <= set(ALPHABET)


def test_the_code_depends_on_the_receipt_number_and_on_the_key() -> None:
    other_vault = TokenVault(TokenVault.new_key())
    codes = {
        code_from_fingerprint(VAULT.fingerprint("receipt:R-0000-0000-0001")),
        code_from_fingerprint(VAULT.fingerprint("receipt:R-0000-0000-0002")),
        code_from_fingerprint(other_vault.fingerprint("receipt:R-0000-0000-0001")),
    }
    assert len(codes) == 3


def test_the_code_is_the_first_fifty_bits_of_the_fingerprint() -> None:
    assert code_from_fingerprint("00" * 32) == "00000-00000"
    assert code_from_fingerprint("ff" * 32) == "ZZZZZ-ZZZZZ"
    assert code_from_fingerprint("08" + "00" * 31) == "10000-00000"  # 00001 000..


@pytest.mark.parametrize(
    ("typed", "address"),
    [("aisyah@example.com", "aisyah@example.com"), ("  Aisyah@Example.COM ", "aisyah@example.com"),
     ("a.b+tag@sub.example.my", "a.b+tag@sub.example.my")],
)  # fmt: skip
def test_an_address_is_taken_trimmed_and_in_lower_case(typed: str, address: str) -> None:
    assert parse_email(typed) == address


@pytest.mark.parametrize(
    "typed",
    ["", "aisyah", "aisyah@", "@example.com", "a@b", "a b@example.com", "a,b@example.com",
     "a;b@example.com", "<a>@example.com", "a@example.com\r\nBcc: x@example.com",
     "x" * 65 + "@example.com", "a@" + "b" * 250 + ".com"],
)  # fmt: skip
def test_anything_that_is_not_one_address_is_email_invalid(typed: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_email(typed)
    assert caught.value.code == "email_invalid"
    assert caught.value.field == "email"
