"""The sandbox SMS provider: latency, injected failures, what it keeps in memory and in its
outbox file."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from topup.adapters.notify.sandbox_sms import SandboxSms, read_outbox
from topup.domain.errors import InvariantError, TopupError
from topup.entrypoints.cli import app

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
MSISDN = "+60123456789"


async def test_a_message_is_kept_in_memory_and_found_by_its_number() -> None:
    sms = SandboxSms(clock=lambda: NOW)
    await sms.send(MSISDN, "first")
    await sms.send("+60198765432", "other")
    await sms.send(MSISDN, "second")
    last = sms.last_to(MSISDN)
    assert last is not None
    assert (last.text, last.sent_at) == ("second", "2026-11-25T08:00:00+00:00")
    assert sms.last_to("+60100000000") is None
    assert [message.text for message in sms.sent()] == ["first", "other", "second"]


async def test_only_the_last_messages_are_kept_in_memory() -> None:
    sms = SandboxSms(kept_max=2)
    for number in range(3):
        await sms.send(MSISDN, f"message {number}")
    assert [message.text for message in sms.sent()] == ["message 1", "message 2"]


async def test_each_message_is_appended_to_the_outbox_as_a_json_line(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "sms.jsonl"
    sms = SandboxSms(outbox=outbox, clock=lambda: NOW)
    await sms.send(MSISDN, "Kod anda ialah 123456.")
    await sms.send(MSISDN, "您的验证码是 654321")
    lines = outbox.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == [
        "Kod anda ialah 123456.",
        "您的验证码是 654321",
    ]
    assert stat.S_IMODE(os.stat(outbox).st_mode) == 0o600
    assert [message.text for message in read_outbox(outbox, last=1)] == ["您的验证码是 654321"]


def test_reading_an_outbox_skips_a_line_cut_short_and_a_missing_file_is_empty(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "sms.jsonl"
    assert read_outbox(outbox, last=5) == []
    good = '{"msisdn":"+60123456789","text":"hello","sent_at":"2026-11-25T08:00:00+00:00"}'
    outbox.write_text(good + "\n" + good[:20] + "\n", encoding="utf-8")
    assert [message.text for message in read_outbox(outbox, last=5)] == ["hello"]


async def test_every_message_fails_retryably_at_a_failure_rate_of_one() -> None:
    sms = SandboxSms(failure_rate=1.0)
    with pytest.raises(TopupError) as caught:
        await sms.send(MSISDN, "hello")
    assert (caught.value.code, caught.value.retryable) == ("sms_unavailable", True)
    assert sms.sent() == []


async def test_the_same_seed_fails_the_same_messages() -> None:
    async def outcomes(seed: int) -> list[bool]:
        sms = SandboxSms(failure_rate=0.5, seed=seed)
        found = []
        for _ in range(40):
            try:
                await sms.send(MSISDN, "hello")
                found.append(True)
            except TopupError:
                found.append(False)
        return found

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert True in first and False in first


async def test_sending_takes_the_configured_latency() -> None:
    sms = SandboxSms(latency_s=0.2)
    started = time.perf_counter()
    await sms.send(MSISDN, "hello")
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(
    ("msisdn", "text"), [("0123456789", "hello"), (MSISDN, ""), (MSISDN, "x" * 481)]
)
async def test_a_number_not_in_e164_form_or_an_oversized_text_is_a_bug(
    msisdn: str, text: str
) -> None:
    with pytest.raises(InvariantError):
        await SandboxSms().send(msisdn, text)


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        SandboxSms(failure_rate=1.5)
    with pytest.raises(ValueError, match="latency_s"):
        SandboxSms(latency_s=-1)


async def test_the_command_line_prints_the_last_messages_of_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "sms.jsonl"
    sms = SandboxSms(outbox=outbox, clock=lambda: NOW)
    for code in ("111111", "222222", "333333"):
        await sms.send(MSISDN, f"Your topup code is {code}.")
    monkeypatch.setenv("TOPUP_SANDBOX_SMS_OUTBOX", str(outbox))
    result = CliRunner().invoke(app, ["sandbox-sms", "--last", "2", "--json"])
    assert result.exit_code == 0, result.output
    texts = [message["text"] for message in json.loads(result.stdout)["messages"]]
    assert texts == ["Your topup code is 222222.", "Your topup code is 333333."]


def test_the_command_line_says_when_the_outbox_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPUP_SANDBOX_SMS_OUTBOX", "")
    monkeypatch.setenv("TOPUP_LANGUAGE", "en")
    result = CliRunner().invoke(app, ["sandbox-sms"])
    assert result.exit_code == 2
    assert "sms_outbox_off" in result.output
