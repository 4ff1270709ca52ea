"""Sending e-mail through an SMTP server (``TOPUP_SMTP_URL``), with aiosmtplib.

    smtp://host:port                  STARTTLS when the server offers it
    smtp://user:password@host:port    STARTTLS required (a password never travels in clear)
    smtps://user:password@host:port   TLS from the first byte (usually port 465)
    ...?starttls=required|auto|off    override the STARTTLS choice of smtp://

Every failure of the server or the connection (refused, down, slow past the timeout, TLS) leaves
as a retryable ``TopupError`` ``mail_unavailable``; a test lists the errors that are translated.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from topup.domain.errors import InputError, TopupError

SMTP_PORT = 25
SMTPS_PORT = 465
SUBJECT_LENGTH_MAX = 200  # characters; a longer subject is cut
BODY_LENGTH_MAX = 100_000  # characters; every e-mail topup writes is far shorter
STARTTLS_CHOICES = ("auto", "required", "off")
# The failures of a send that say "the mail server or the way to it is not working".
TRANSLATED_ERRORS: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPException,
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    ssl.SSLError,
)


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to send: parsed from ``TOPUP_SMTP_URL``."""

    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: str  # one of STARTTLS_CHOICES

    def __repr__(self) -> str:  # the password never reaches a log
        return (
            f"SmtpServer({self.host}:{self.port}, user={self.username!r}, starttls={self.starttls})"
        )


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp[s]://[user[:password]@]host[:port][?starttls=...]``; InputError ``smtp_url_invalid``."""
    try:
        parts = urlsplit(url)
        port_given = parts.port
    except ValueError:
        parts, port_given = None, None
    if parts is None or parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise _url_invalid()
    options = parse_qs(parts.query)
    implicit_tls = parts.scheme == "smtps"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    default_starttls = "off" if implicit_tls else ("required" if username else "auto")
    starttls = options.get("starttls", [default_starttls])[-1]
    if starttls not in STARTTLS_CHOICES or (implicit_tls and starttls != "off"):
        raise _url_invalid()
    return SmtpServer(
        host=parts.hostname,
        port=port_given or (SMTPS_PORT if implicit_tls else SMTP_PORT),
        username=username,
        password=password,
        implicit_tls=implicit_tls,
        starttls=starttls,
    )


def _url_invalid() -> InputError:
    return InputError(
        "TOPUP_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465",
        code="smtp_url_invalid",
        field="smtp_url",
    )


# Headers a caller may add (``headers``): the rest are this module's to write.
EXTRA_HEADERS = frozenset(
    {"list-unsubscribe", "list-unsubscribe-post", "message-id", "auto-submitted", "x-entity-ref-id"}
)
HEADER_LENGTH_MAX = 900  # characters: within RFC 5322's 998 with the header's name
HEADER_POLICY = email.policy.default.clone(max_line_length=998)


def compose(
    *,
    sender: str,
    recipient: str,
    subject: str,
    body: str,
    at: dt.datetime,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A plain-text UTF-8 message with the headers every mail server expects, and the caller's
    ``headers`` among ``EXTRA_HEADERS`` (List-Unsubscribe, a Message-ID of its own...)."""
    extra = dict(headers or {})
    for name, value in extra.items():
        if name.lower() not in EXTRA_HEADERS or len(value) > HEADER_LENGTH_MAX:
            raise InputError(f"header {name!r} may not be set here", code="mail_header_invalid")
        if "\r" in value or "\n" in value:
            raise InputError(f"header {name!r} spans lines", code="mail_header_invalid")
    # Lines up to RFC 5322's 998 characters: a List-Unsubscribe address has no blank to fold
    # at, and folding it would encode it (RFC 2047), which mail programs do not read as a URL.
    message = EmailMessage(policy=HEADER_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = " ".join(subject.split())[:SUBJECT_LENGTH_MAX]
    message["Date"] = email.utils.format_datetime(at.astimezone(dt.UTC))
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "topup.invalid"
    given_id = next((value for name, value in extra.items() if name.lower() == "message-id"), None)
    message["Message-ID"] = given_id or email.utils.make_msgid(domain=domain)
    for name, value in extra.items():
        if name.lower() != "message-id":
            message[name] = value
    message.set_content(body[:BODY_LENGTH_MAX])
    return message


def mail_unavailable(reason: str) -> TopupError:
    return TopupError(
        f"the mail server did not take the message ({reason})",
        code="mail_unavailable",
        retryable=True,
        params={},
    )


class SmtpMailer:
    """The ``Mailer`` port over SMTP: one connection per message, bounded by ``timeout_s``."""

    def __init__(
        self,
        server: SmtpServer,
        *,
        sender: str,
        timeout_s: float,
        clock: Callable[[], dt.datetime],
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.sender = sender
        self.timeout_s = timeout_s
        self._clock = clock
        self._tls_context = tls_context

    async def send(
        self,
        recipient: str,
        subject: str,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        message = compose(
            sender=self.sender,
            recipient=recipient,
            subject=subject,
            body=body,
            at=self._clock(),
            headers=headers,
        )
        server = self.server
        starttls = {"auto": None, "required": True, "off": False}[server.starttls]
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=starttls,
                timeout=self.timeout_s,
                tls_context=self._tls_context,
            )
        except TRANSLATED_ERRORS as error:
            raise mail_unavailable(type(error).__name__) from error
