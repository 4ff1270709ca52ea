"""The SMTP mailer against a real SMTP server (aiosmtpd) over a real connection on 127.0.0.1,
its URL setting, and the outbox mailer of the demo."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from topup.adapters.notify.mail_outbox import OutboxMailer
from topup.adapters.notify.smtp import SmtpMailer, SmtpServer, parse_smtp_url
from topup.domain.errors import InputError, TopupError

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SENDER = "topup <no-reply@topup.example>"


class SmtpSink:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    """A real SMTP server on 127.0.0.1 and a free port, and what it received."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def mailer_for(port: int, *, timeout_s: float = 5.0) -> SmtpMailer:
    return SmtpMailer(
        parse_smtp_url(f"smtp://127.0.0.1:{port}"),
        sender=SENDER,
        timeout_s=timeout_s,
        clock=lambda: NOW,
    )


async def test_a_message_reaches_the_smtp_server_with_its_headers_and_unicode_text() -> None:
    with running_smtp_server() as (sink, port):
        await mailer_for(port).send("aisyah@example.com", "您的收据 R-1234", "金额 MYR 10.00\n")
    [(recipients, message)] = sink.messages
    assert recipients == ["aisyah@example.com"]
    assert message["To"] == "aisyah@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "您的收据 R-1234"
    assert message["Date"] == "Wed, 25 Nov 2026 08:00:00 +0000"
    assert message["Message-ID"].endswith("@topup.example>")
    assert message.get_content().splitlines() == ["金额 MYR 10.00"]  # CRLF on the wire


async def test_a_server_that_is_down_is_a_retryable_mail_unavailable() -> None:
    port = free_port()  # nobody listens there
    with pytest.raises(TopupError) as caught:
        await mailer_for(port).send("aisyah@example.com", "subject", "body")
    assert caught.value.code == "mail_unavailable"
    assert caught.value.retryable is True


async def test_a_server_that_refuses_the_message_is_a_retryable_mail_unavailable() -> None:
    class Refusing:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            return "550 no such user here"

    port = free_port()
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.raises(TopupError) as caught:
            await mailer_for(port).send("nobody@example.com", "subject", "body")
    finally:
        controller.stop()
    assert caught.value.code == "mail_unavailable"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 25, None, None, False, "auto")),
        (
            "smtp://u%40x:p%3Ass@mail.example.com:587",
            SmtpServer("mail.example.com", 587, "u@x", "p:ss", False, "required"),
        ),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, None, None, True, "off")),
        (
            "smtp://127.0.0.1:2525?starttls=off",
            SmtpServer("127.0.0.1", 2525, None, None, False, "off"),
        ),
    ],
)
def test_the_smtp_url_gives_host_port_credentials_and_tls(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["", "mail.example.com", "http://mail.example.com", "smtp://", "smtp://h:notaport",
     "smtp://h?starttls=maybe", "smtps://h?starttls=required"],
)  # fmt: skip
def test_a_malformed_smtp_url_is_refused_with_its_code(url: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_smtp_url(url)
    assert caught.value.code == "smtp_url_invalid"


def test_the_password_of_the_smtp_url_is_never_in_its_repr() -> None:
    assert "secret" not in repr(parse_smtp_url("smtp://user:secret@mail.example.com"))


async def test_the_outbox_mailer_writes_each_message_as_an_eml_file(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    times = iter(NOW + dt.timedelta(seconds=index) for index in range(3))
    mailer = OutboxMailer(outbox, sender=SENDER, clock=lambda: next(times), files_max=2)
    for index in range(3):
        await mailer.send("aisyah@example.com", f"message {index}", "收据\n")
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2  # the oldest beyond files_max is deleted
    message = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "message 2"
    assert message.get_content() == "收据\n"
    assert list(outbox.glob(".*")) == []  # no partial file left behind
