"""Unsubscribing from reminder e-mails in one click (RFC 8058): the mail program posts
``List-Unsubscribe=One-Click`` to the List-Unsubscribe address, whose signed token says which
card and channel to turn off. No sign-in, no form, no cookie. A person who opens the address
instead is sent to the page that asks first (the portal's ``/reminders/unsubscribe``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import RedirectResponse, Response

from topup.entrypoints.api.dependencies import ServicesDependency
from topup.entrypoints.api.schemas import problems
from topup.entrypoints.http.problems import encode
from topup.services.reminders import choices

router = APIRouter(tags=["reminders"])

Token = Annotated[str, Query(min_length=1, max_length=choices.TOKEN_LENGTH_MAX)]


class UnsubscribedOut(BaseModel):
    unsubscribed: bool
    channel: str


@router.post(choices.ONE_CLICK_PATH, response_model=UnsubscribedOut, responses=problems(400))
async def unsubscribe_one_click(token: Token, services: ServicesDependency) -> Response:
    """Turn off the reminders of the token's card on the token's channel (RFC 8058 one-click).
    Doing it again changes nothing."""
    _, channel = await choices.unsubscribe(services, token)
    return Response(
        encode({"unsubscribed": True, "channel": channel.value}),
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


@router.get(
    choices.ONE_CLICK_PATH,
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "The page that asks first"}, **problems(422)},
)
async def unsubscribe_page(token: Token) -> Response:
    """A person opened the one-click address: the page that shows what it turns off."""
    return RedirectResponse(
        choices.UNSUBSCRIBE_PAGE + "?" + urlencode({"token": token}), status_code=303
    )
