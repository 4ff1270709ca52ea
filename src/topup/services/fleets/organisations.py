"""Organisations: created by the operator, with members (owner, admin, viewer) and cards, added by
the operator (an import) or by an admin with the code sent by SMS to the card's number (the
account's card-link flow, ``accounts.send_link_code``/``take_link_code``), and taken out of
the fleet by an admin (``remove_card``: the organisation's auto-renewal of the card stops). The
fleet page: the organisation's cards by status, near expiry, data left, what it spent this
month."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from topup.domain.auto_renewal import PaymentSource, SetterKind
from topup.domain.card_number import CardNumberKind, parse_card_number
from topup.domain.cards import Card
from topup.domain.errors import ConflictError, InputError, NotFoundError, TopupError
from topup.domain.fleets import (
    FleetFilter,
    Member,
    MemberRole,
    Organisation,
    PolicyRequestStatus,
    check_organisation_name,
)
from topup.domain.money import Money
from topup.i18n.locales import LOCALES
from topup.ports import UnitOfWork
from topup.services import accounts
from topup.services.accounts import LinkCodeSent
from topup.services.auto_renewal.settings import LEFT_FLEET, SetBy, switch_off
from topup.services.context import Services
from topup.services.queries import card_summary
from topup.services.renewals.reads import find_card
from topup.services.saved_payment_cards import saved_payment_card_unknown
from topup.services.views import CardView

OPERATOR = "operator"  # who made a run from the command line
MEMBERSHIPS_MAX = 50
MEMBERS_MAX = 500
CARD_STATUSES = ("active", "grace", "expired", "suspended")


def organisation_unknown() -> NotFoundError:
    return NotFoundError(
        "there is no such organisation, or the account is not one of its members",
        code="organisation_unknown",
        field="organisation",
        params={},
    )


def role_forbidden(role: MemberRole) -> TopupError:
    return TopupError(
        "a viewer of an organisation sees its fleet but changes nothing; ask an admin",
        code="fleet_role_forbidden",
        params={"role": role.value},
    )


async def membership(uow: UnitOfWork, organisation_id: str, account_id: str) -> Member:
    """The account's membership of the organisation; organisation_unknown if it has none."""
    member = await uow.organisations.member(organisation_id[:64], account_id)
    if member is None:
        raise organisation_unknown()
    return member


async def manager(uow: UnitOfWork, organisation_id: str, account_id: str) -> Member:
    """As ``membership``, and the member may change things (owner or admin)."""
    member = await membership(uow, organisation_id, account_id)
    if not member.role.may_manage:
        raise role_forbidden(member.role)
    return member


# --- the operator's commands -----------------------------------------------------------------


def _check_language(services: Services, language: str) -> str:
    if language not in LOCALES or language not in services.profile.locales:
        raise InputError(
            f"an organisation's language is one of {', '.join(services.profile.locales)}",
            code="organisation_language_unknown",
            field="language",
            params={"languages": ", ".join(services.profile.locales)},
        )
    return language


async def _account_by_email(uow: UnitOfWork, email: str) -> str:
    account = await uow.accounts.by_email(email.strip().lower())
    if account is None:
        raise NotFoundError(
            "no account has this e-mail address; the member signs up first",
            code="account_unknown",
            field="email",
            params={},
        )
    return account.id


async def create_organisation(
    services: Services, *, name: str, owner_email: str, language: str
) -> Organisation:
    """An organisation with its first member, its owner (an account that exists)."""
    now = services.clock.now()
    organisation = Organisation(
        id=services.new_id(),
        name=check_organisation_name(name),
        language=_check_language(services, language),
        created_at=now,
    )
    async with services.unit_of_work() as uow:
        owner_id = await _account_by_email(uow, owner_email)
        await uow.organisations.add(organisation)
        await uow.organisations.put_member(Member(organisation.id, owner_id, MemberRole.OWNER, now))
        await uow.commit()
    return organisation


async def put_member(
    services: Services, organisation_id: str, *, email: str, role: MemberRole
) -> Member:
    """Add a member (or change a member's role), as the operator."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        if await uow.organisations.get(organisation_id) is None:
            raise organisation_unknown()
        account_id = await _account_by_email(uow, email)
        member = Member(organisation_id, account_id, role, now)
        await uow.organisations.put_member(member)
        await uow.commit()
    return member


@dataclass(frozen=True)
class CardImport:
    added: int
    already_here: int
    in_another_organisation: list[tuple[int, str]]  # (line, number)
    unknown: list[tuple[int, str, str]]  # (line, number, error code)


async def import_cards(services: Services, organisation_id: str, numbers: list[str]) -> CardImport:
    """Add the cards with these numbers (MSISDN or ICCID, one per line) to the organisation, as
    the operator; a number that names no card, or a card of another organisation, is reported by
    its line and the others are added."""
    now = services.clock.now()
    unknown: list[tuple[int, str, str]] = []
    parsed: list[tuple[int, str, CardNumberKind, str]] = []
    for line_no, text in enumerate(numbers, start=1):
        if not text.strip():
            continue
        try:
            number = parse_card_number(text, services.profile)
        except TopupError as error:
            unknown.append((line_no, text.strip(), error.code))
            continue
        parsed.append((line_no, text.strip(), number.kind, number.value))
    async with services.unit_of_work() as uow:
        if await uow.organisations.get(organisation_id) is None:
            raise organisation_unknown()
        cards = await uow.cards.by_numbers(
            msisdns=[value for _, _, kind, value in parsed if kind is CardNumberKind.MSISDN],
            iccids=[value for _, _, kind, value in parsed if kind is CardNumberKind.ICCID],
        )
        by_number = {card.msisdn: card for card in cards} | {card.iccid: card for card in cards}
        owners = await uow.organisations.owners_of_cards([card.id for card in cards])
        wanted: list[str] = []
        elsewhere: list[tuple[int, str]] = []
        here = 0
        for line_no, text, _, value in parsed:
            card = by_number.get(value)
            if card is None:
                unknown.append((line_no, text, "card_unknown"))
            elif owners.get(card.id, organisation_id) != organisation_id:
                elsewhere.append((line_no, text))
            elif card.id in owners:
                here += 1
            else:
                wanted.append(card.id)
        added = await uow.organisations.add_cards(organisation_id, wanted, at=now)
        await uow.commit()
    unknown.sort()
    return CardImport(added, here + len(set(wanted)) - added, elsewhere, unknown)


# --- members' use cases ----------------------------------------------------------------------


async def my_organisations(
    services: Services, account_id: str
) -> list[tuple[Organisation, Member]]:
    async with services.unit_of_work() as uow:
        return await uow.organisations.memberships(account_id, limit=MEMBERSHIPS_MAX)


async def my_membership(
    services: Services, account_id: str, organisation_id: str
) -> tuple[Organisation, Member]:
    """The organisation and the account's membership (organisation_unknown if it has none)."""
    async with services.unit_of_work() as uow:
        member = await membership(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
    if organisation is None:
        raise organisation_unknown()
    return organisation, member


async def start_card_add(
    services: Services, account_id: str, organisation_id: str, card_number: str
) -> LinkCodeSent:
    """An admin adds a card to the fleet: a code goes by SMS to the card's number (its text
    names the organisation, so whoever has the card knows who asks)."""
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
        card = await find_card(uow, services, card_number)
        owners = await uow.organisations.owners_of_cards([card.id])
    if organisation is None:
        raise organisation_unknown()
    if card.id in owners:
        raise _card_taken(owners[card.id] == organisation_id)
    return await accounts.send_link_code(
        services,
        account_id,
        card,
        organisation=organisation.name,
        scope=accounts.fleet_scope(organisation_id),
    )


def _card_taken(here: bool) -> ConflictError:
    if here:
        return ConflictError(
            "this card is in the organisation's fleet already",
            code="card_in_fleet_already",
            field="card_number",
            params={},
        )
    return ConflictError(
        "this card belongs to another organisation",
        code="card_in_another_organisation",
        field="card_number",
        params={},
    )


async def finish_card_add(
    services: Services, account_id: str, organisation_id: str, card_number: str, code: str
) -> CardView:
    """The admin gives back the code the card received: the card joins the fleet."""
    now = services.clock.now()
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        card = await accounts.take_link_code(
            uow,
            services,
            account_id,
            card_number,
            code,
            now=now,
            scope=accounts.fleet_scope(organisation_id),
        )
        owners = await uow.organisations.owners_of_cards([card.id])
        if card.id in owners:
            raise _card_taken(owners[card.id] == organisation_id)
        # One organisation at most is the database's (the card is the row's key): another
        # admin's add committed since the check leaves this insert a no-op, and this one lost.
        if not await uow.organisations.add_cards(organisation_id, [card.id], at=now):
            owner = (await uow.organisations.owners_of_cards([card.id])).get(card.id)
            raise _card_taken(owner == organisation_id)
        await uow.commit()
    return card_summary(card, services)


def card_not_in_fleet() -> NotFoundError:
    return NotFoundError(
        "this card is not in the organisation's fleet",
        code="card_not_in_organisation",
        field="card",
        params={},
    )


async def fleet_card(
    services: Services, account_id: str, organisation_id: str, card_id: str
) -> CardView:
    """One card of the organisation's fleet (any member); card_not_in_organisation if the card
    is not one of them (a forged id, or one removed since)."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        card = await _card_of_fleet(uow, organisation_id, card_id)
    return card_summary(card, services)


async def _card_of_fleet(
    uow: UnitOfWork, organisation_id: str, card_id: str, *, for_update: bool = False
) -> Card:
    """The card if it is in the fleet; locked first with ``for_update`` (the order
    ``set_auto_renewal`` takes for an organisation: the card, then its auto-renewal)."""
    card = await uow.cards.get(card_id[:64], for_update=for_update)
    owners = await uow.organisations.owners_of_cards([card.id] if card else [])
    if card is None or owners.get(card.id) != organisation_id:
        raise card_not_in_fleet()
    return card


@dataclass(frozen=True)
class CardRemoved:
    card: CardView
    auto_renewal_stopped: bool  # the organisation's auto-renewal of the card was turned off


async def remove_card(
    services: Services, account_id: str, organisation_id: str, card_id: str
) -> CardRemoved:
    """An owner or admin takes a card out of the fleet. Its auto-renewal, if the organisation set
    it (the policy, paid by the organisation), stops in the same transaction, on the card's
    timeline with the reason; so does one the operator set paid by a member's saved payment card
    (``_paid_by_fleet``). Any other, its subscriber's or the operator's, is theirs and stays.
    From then on the card's subscriber sets its auto-renewal again."""
    now = services.clock.now()
    by_organisation = SetBy(SetterKind.ORGANISATION, organisation_id[:64])
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        card = await _card_of_fleet(uow, organisation_id, card_id, for_update=True)
        running = await uow.policy_requests.latest_of(organisation_id)
        if running is not None and running.status is PolicyRequestStatus.RUNNING:
            raise _policy_running()
        if not await uow.organisations.remove_card(organisation_id, card.id):
            raise card_not_in_fleet()
        paid_by_fleet = await _paid_by_fleet(uow, organisation_id, card.id)
        stopped = await switch_off(
            uow,
            card.id,
            set_by=by_organisation,
            at=now,
            only_if_set_by=None if paid_by_fleet else by_organisation,
            reason=LEFT_FLEET,
        )
        await uow.commit()
    return CardRemoved(card_summary(card, services), stopped)


def _policy_running() -> ConflictError:
    """The policy walks the fleet by position, a batch at a time: a card taken out behind it
    would shift the others, and one would be left unreached."""
    return ConflictError(
        "the fleet's auto-renewal policy is being applied; take the card out once it has finished",
        code="fleet_card_remove_policy_running",
        retryable=True,
        field="card",
        params={},
    )


async def _paid_by_fleet(uow: UnitOfWork, organisation_id: str, card_id: str) -> bool:
    """The card's auto-renewal, whoever set it, charges a saved payment card of a member who
    has not linked the card: allowed only while the card is in the fleet (the operator's
    ``set_by_operator``), so it is the organisation's money and stops with the card."""
    kept = await uow.auto_renewals.get(card_id, for_update=True)
    if kept is None or kept.payment is not PaymentSource.SAVED_PAYMENT_CARD:
        return False
    payer = kept.payment_account_id or ""
    if await uow.accounts.owns_card(payer, card_id):
        return False
    return await uow.organisations.member(organisation_id, payer) is not None


async def choose_payment_card(
    services: Services, account_id: str, organisation_id: str, saved_id: str
) -> Organisation:
    """An owner or admin has bulk renewals charged to one of their own saved payment cards."""
    async with services.unit_of_work() as uow:
        await manager(uow, organisation_id, account_id)
        saved = await uow.saved_payment_cards.get(account_id, saved_id[:64])
        if saved is None:
            raise saved_payment_card_unknown()
        await uow.organisations.set_payment_card(
            organisation_id, saved_id=saved.id, account_id=account_id
        )
        organisation = await uow.organisations.get(organisation_id)
        await uow.commit()
    if organisation is None:
        raise organisation_unknown()
    return organisation


# --- the fleet page ----------------------------------------------------------------------------


def month_start(services: Services, at: dt.datetime) -> dt.datetime:
    """The start of ``at``'s month in the operator's time zone, in UTC."""
    local = at.astimezone(ZoneInfo(services.profile.time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def next_month_start(services: Services, start: dt.datetime) -> dt.datetime:
    return month_start(services, start + dt.timedelta(days=32))


@dataclass(frozen=True)
class FleetPage:
    organisation: Organisation
    role: MemberRole
    cards: list[CardView]
    matching: int  # cards that pass the filter
    offset: int
    page_size: int
    counts_by_status: dict[str, int]
    near_expiry: int  # active cards whose validity ends within the near-expiry days
    spend_this_month: Money
    near_expiry_days: int

    @property
    def total(self) -> int:
        return sum(self.counts_by_status.values())

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.cards) < self.matching


def fleet_filter(
    services: Services, *, status: str = "", near_expiry: bool = False, search: str = ""
) -> FleetFilter:
    statuses = (status,) if status in CARD_STATUSES else ()
    days = services.limits.fleets.fleet_near_expiry_days
    before = services.clock.now() + dt.timedelta(days=days) if near_expiry else None
    return FleetFilter(statuses=statuses, validity_before=before, number_contains=search[:40])


async def fleet_page(
    services: Services,
    account_id: str,
    organisation_id: str,
    chosen: FleetFilter,
    *,
    offset: int = 0,
) -> FleetPage:
    limits = services.limits.fleets
    now = services.clock.now()
    start = month_start(services, now)
    near = FleetFilter(
        statuses=("active",),
        validity_before=now + dt.timedelta(days=limits.fleet_near_expiry_days),
    )
    offset = max(0, offset)
    async with services.unit_of_work() as uow:
        member = await membership(uow, organisation_id, account_id)
        organisation = await uow.organisations.get(organisation_id)
        cards = await uow.organisations.fleet_cards(
            organisation_id, chosen, limit=limits.fleet_page_size, offset=offset
        )
        matching = await uow.organisations.count_cards(organisation_id, chosen)
        counts = await uow.organisations.card_counts_by_status(organisation_id)
        near_expiry = await uow.organisations.count_cards(organisation_id, near)
        spend = await uow.organisations.spend(
            organisation_id, since=start, until=next_month_start(services, start)
        )
    if organisation is None:
        raise organisation_unknown()
    return FleetPage(
        organisation=organisation,
        role=member.role,
        cards=[card_summary(card, services) for card in cards],
        matching=matching,
        offset=offset,
        page_size=limits.fleet_page_size,
        counts_by_status=counts,
        near_expiry=near_expiry,
        spend_this_month=Money(spend, services.profile.currency),
        near_expiry_days=limits.fleet_near_expiry_days,
    )


async def fleet_export(
    services: Services, account_id: str, organisation_id: str, chosen: FleetFilter
) -> list[CardView]:
    """Every card that passes the filter (at most ``fleet_export_rows_max``), for a CSV."""
    async with services.unit_of_work() as uow:
        await membership(uow, organisation_id, account_id)
        cards = await uow.organisations.fleet_cards(
            organisation_id, chosen, limit=services.limits.fleets.fleet_export_rows_max, offset=0
        )
    return [card_summary(card, services) for card in cards]


async def set_payment_token_as_operator(
    services: Services, organisation_id: str, token: str
) -> Organisation:
    """The operator saves a PSP token (from the PSP's tokeniser) as the organisation owner's
    saved payment card and has bulk renewals charged to it."""
    from topup.services.saved_payment_cards import save_payment_token

    async with services.unit_of_work() as uow:
        if await uow.organisations.get(organisation_id) is None:
            raise organisation_unknown()
        members = await uow.organisations.members(organisation_id, limit=MEMBERS_MAX)
    owners = [member for member in members if member.role is MemberRole.OWNER]
    if not owners:
        raise organisation_unknown()
    saved = await save_payment_token(services, owners[0].account_id, token)
    async with services.unit_of_work() as uow:
        await uow.organisations.set_payment_card(
            organisation_id, saved_id=saved.id, account_id=owners[0].account_id
        )
        organisation = await uow.organisations.get(organisation_id)
        await uow.commit()
    if organisation is None:
        raise organisation_unknown()
    return organisation
