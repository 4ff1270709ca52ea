"""For tests that need accounts: sign-up and password reset finish by links e-mailed to the
address, which the tests read from the in-memory mailer."""

from __future__ import annotations

import re

from topup.adapters.notify.mail_outbox import MemoryMailer, SentMail
from topup.domain.accounts import Account
from topup.services import account_emails
from topup.services.context import Services
from topup.services.receipts import mailings

TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


def memory_mailer(services: Services) -> MemoryMailer:
    mailer = services.mailer
    assert isinstance(mailer, MemoryMailer)
    return mailer


async def mails_to(services: Services, email: str) -> list[SentMail]:
    """The messages sent to ``email``, once every mailing under way is done."""
    await mailings(services).drain()
    return memory_mailer(services).to(email)


def token_in(mail: SentMail) -> str:
    found = TOKEN_IN_LINK.search(mail.body)
    assert found is not None, mail.body
    return found.group(1)


async def token_mailed_to(services: Services, email: str) -> str:
    """The token of the last link mailed to ``email``."""
    sent = await mails_to(services, email)
    assert sent, f"nothing was mailed to {email}"
    return token_in(sent[-1])


async def confirmed_account(
    services: Services, *, email: str, password: str, language: str = "en"
) -> Account:
    """Sign up and follow the confirmation link, as a subscriber would."""
    await account_emails.sign_up(
        services, email=email, password=password, language=language, locale=language
    )
    return await account_emails.confirm_email(services, await token_mailed_to(services, email))
