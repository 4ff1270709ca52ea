"""Who is calling: nobody in particular, a signed-in account, or an API key of a store, kiosk,
partner or the operator's staff. The channel of a renewal follows from the caller, never from what
the caller claims (a kiosk cannot say it is a store)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from topup.domain.errors import ConflictError, InputError

PUBLIC_CHANNELS: tuple[str, ...] = ("web", "app")  # what anonymous and account callers may use


class CallerKind(StrEnum):
    ANONYMOUS = "anonymous"
    ACCOUNT = "account"
    API_KEY = "api_key"


class ApiKeyRole(StrEnum):
    STAFF = "staff"  # the operator's customer service: reads every card, renewal and receipt
    STORE = "store"  # an authorised store's console (R3)
    KIOSK = "kiosk"  # a self-service kiosk (R4)
    PARTNER = "partner"  # a reseller's or partner's server (channel ``api``)


# The channel each kind of key sells through.
CHANNEL_OF_ROLE: dict[ApiKeyRole, str] = {
    ApiKeyRole.STAFF: "store",
    ApiKeyRole.STORE: "store",
    ApiKeyRole.KIOSK: "kiosk",
    ApiKeyRole.PARTNER: "api",
}


@dataclass(frozen=True, slots=True)
class Caller:
    kind: CallerKind
    account_id: str | None = None
    api_key_id: str | None = None
    role: ApiKeyRole | None = None
    outlet: str | None = None  # the store or kiosk an API key belongs to
    region: str | None = None  # where that store or kiosk stands

    @property
    def scope(self) -> str:
        """What idempotency keys and rate limits are counted against."""
        if self.kind is CallerKind.ACCOUNT:
            return f"account:{self.account_id}"
        if self.kind is CallerKind.API_KEY:
            return f"key:{self.api_key_id}"
        return "anonymous"

    @property
    def is_staff(self) -> bool:
        """Reads any card, renewal or receipt: the operator's customer service only. A store's
        or kiosk's key is scoped to its outlet: it sells, and reads what it sold (by the
        renewal's client secret), never every subscriber's data."""
        return self.role is ApiKeyRole.STAFF

    def channel_for(self, requested: str | None) -> str:
        """The channel a renewal by this caller goes through; ``requested`` is what the body said.
        Keys sell through their own channel only; everyone else through the web or the app."""
        if self.role is not None:
            own = CHANNEL_OF_ROLE[self.role]
            if requested is not None and requested != own:
                raise ConflictError(
                    f"this API key sells through the {own} channel, not {requested}",
                    code="channel_not_allowed",
                    field="channel",
                    params={"channel": requested, "allowed": own},
                )
            return own
        chosen = requested or "web"
        if chosen not in PUBLIC_CHANNELS:
            raise InputError(
                f"channel {chosen} needs an API key of a store, kiosk or partner; "
                f"use one of {', '.join(PUBLIC_CHANNELS)}",
                code="channel_not_allowed",
                field="channel",
                params={"channel": chosen, "allowed": ", ".join(PUBLIC_CHANNELS)},
            )
        return chosen


ANONYMOUS = Caller(CallerKind.ANONYMOUS)
