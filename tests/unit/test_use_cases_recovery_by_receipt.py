"""Finding a card's number from its receipt (R8), on fakes: the receipt's number and its
verification code give the card's number in full; anything else is the one ``receipt_unknown``."""

from __future__ import annotations

import pytest

from tests.unit.fakes import GOOD_CARD, on_fakes
from topup.domain.cards import CardKind
from topup.domain.errors import InputError, NotFoundError
from topup.ports import PaymentCardDetails
from topup.services.receipts import verification_code
from topup.services.recovery import card_number_by_receipt
from topup.services.renewals import RenewalRequest, renew

ACTIVE_CARD = "012-345 6789"


async def test_the_receipt_number_and_its_code_give_the_card_number_in_full() -> None:
    fakes = await on_fakes()
    renewal = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "pack_5gb_7d", GOOD_CARD))
    number = renewal.renewal.receipt_number
    assert number is not None
    code = verification_code(fakes.services, number)

    found = await card_number_by_receipt(fakes.services, number.lower(), code.lower())

    assert found.card_number == "+60 12-345 6789"
    assert found.card_kind is CardKind.PREPAID
    assert found.receipt_number == number
    assert found.plan_code == "pack_5gb_7d"
    assert found.plan_name("zh_Hans")


async def test_a_wrong_code_an_unknown_number_and_an_unpaid_renewal_get_the_same_answer() -> None:
    fakes = await on_fakes()
    renewal = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "pack_5gb_7d", GOOD_CARD))
    number = renewal.renewal.receipt_number
    assert number is not None
    unknown = "R-0000-0000-0000" if number != "R-0000-0000-0000" else "R-1111-1111-1111"
    declined = PaymentCardDetails("4000000000009995", 12, 2030, "123")
    refused = await renew(fakes.services, RenewalRequest(ACTIVE_CARD, "pack_5gb_7d", declined))
    unpaid = refused.renewal.receipt_number
    assert unpaid is not None

    for receipt, code in [
        (number, "00000-00000"),
        (unknown, verification_code(fakes.services, unknown)),
        (unpaid, verification_code(fakes.services, unpaid)),
        (number, ""),
    ]:
        with pytest.raises(NotFoundError) as caught:
            await card_number_by_receipt(fakes.services, receipt, code)
        assert caught.value.code == "receipt_unknown"


async def test_a_malformed_receipt_number_is_receipt_number_invalid() -> None:
    fakes = await on_fakes()
    with pytest.raises(InputError) as caught:
        await card_number_by_receipt(fakes.services, "12345", "00000-00000")
    assert caught.value.code == "receipt_number_invalid"
