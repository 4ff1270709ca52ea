"""What the adapters write under var/ (codes, links, settlements) is readable by its owner only,
even under the usual umask 022."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from topup.adapters.gateways.sandbox_settlement import (
    MovementType,
    SettlementJournal,
    SettlementRecord,
)
from topup.adapters.notify.mail_outbox import OutboxMailer
from topup.adapters.notify.sandbox_sms import SandboxSms
from topup.adapters.private_files import make_private_directory

NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.UTC)
OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIRECTORY = 0o700
LOOSE_UMASK = 0o022


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    previous = os.umask(LOOSE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


async def test_the_mail_outbox_and_its_messages_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "var" / "outbox"
    mailer = OutboxMailer(directory=outbox, sender="topup@example.com", clock=lambda: NOW)

    await mailer.send("payer@example.com", "Your code", "Code 123456")

    messages = list(outbox.glob("*.eml"))
    assert len(messages) == 1
    assert mode(messages[0]) == OWNER_ONLY_FILE
    assert mode(outbox) == OWNER_ONLY_DIRECTORY
    assert mode(tmp_path / "var") == OWNER_ONLY_DIRECTORY


async def test_the_sandbox_sms_outbox_and_its_directory_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "var" / "sandbox-sms.jsonl"
    sms = SandboxSms(outbox=outbox, clock=lambda: NOW)

    await sms.send("+60123456789", "Your link code is 123456")

    assert mode(outbox) == OWNER_ONLY_FILE
    assert mode(outbox.parent) == OWNER_ONLY_DIRECTORY


def test_the_settlement_journal_and_its_directory_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "sandbox-settlements.jsonl"
    journal = SettlementJournal(path)
    try:
        journal.append(
            SettlementRecord(
                type=MovementType.CHARGE,
                payment_id="pay_1",
                gateway_reference="ch_sbx_1",
                amount_minor=3000,
                currency="MYR",
                at=NOW,
            )
        )
    finally:
        journal.close()

    assert mode(path) == OWNER_ONLY_FILE
    assert mode(path.parent) == OWNER_ONLY_DIRECTORY


def test_a_directory_that_already_exists_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)

    make_private_directory(shared / "ours" / "deeper")

    assert mode(shared) == 0o755
    assert mode(shared / "ours") == OWNER_ONLY_DIRECTORY
    assert mode(shared / "ours" / "deeper") == OWNER_ONLY_DIRECTORY
