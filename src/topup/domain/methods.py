"""Payment methods: which ones an operator offers, where, and for how much.

A method is named by its code: ``credit_card``, ``debit_card``, ``ewallet:<provider>``, ``cash``,
``alipay``, ``wechat_pay``, ... The operator's configuration (one TOML file per profile, read by
``topup.adapters.methods``) says for each method whether it is enabled, on which channels and in
which regions (a kiosk or a store belongs to a region; the website and the app to none) it is
offered, and the smallest and largest amount of one payment. Adding a method is configuration.

Pure: parsing takes the TOML text; nothing here reads files or clocks. A wallet account is a
mobile number, brought to its canonical form here (``wallet_account_of``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType

from topup.domain.card_number import CardNumberKind, parse_card_number
from topup.domain.errors import ConflictError, InputError, NotFoundError, TopupError
from topup.domain.money import Money
from topup.domain.plans import CHANNELS
from topup.domain.profile import OperatorProfile

method_code_length_max = 64
method_name_length_max = 100
methods_max = 100
regions_max = 200
# A method configured without bounds takes 0.01 to 1,000,000.00 of the currency per payment.
amount_min_minor_default = 1
amount_max_minor_default = 100_000_000
# Channels whose terminals stand somewhere: a request from them names its region.
PHYSICAL_CHANNELS = frozenset({"kiosk", "store"})
_METHOD_CODE = re.compile(r"[a-z][a-z0-9_]*(?::[a-z][a-z0-9_]*)?")
_REGION_CODE = re.compile(r"[a-z][a-z0-9_]*")
_FIELDS = frozenset(
    {
        "kind",
        "names",
        "enabled",
        "channels",
        "regions",
        "amount_min_minor",
        "amount_max_minor",
        "daily_max_minor",
        "gateway",
        "activation_typical_delay_s",
        "activation_late_after_s",
    }
)
activation_delay_s_max = 7 * 24 * 3600  # a method's activation times are at most a week
# The gateway a kind of method uses unless its configuration names another.
_DEFAULT_GATEWAYS = {"card": "sandbox", "ewallet": "sandbox_wallet", "cash": "", "other": ""}
_GATEWAY_NAME = re.compile(r"[a-z][a-z0-9_]*")


class MethodKind(StrEnum):
    CARD = "card"  # credit and debit cards, through the card gateway
    EWALLET = "ewallet"  # approval in the wallet's app, completion by webhook
    CASH = "cash"  # taken by store staff
    OTHER = "other"  # e.g. Alipay, WeChat Pay: a gateway of their own


# The kinds of method topup takes itself, through a gateway. Cash is taken by store staff (the
# store console will record it): until then it is neither offered nor accepted for a renewal.
ONLINE_KINDS = frozenset({MethodKind.CARD, MethodKind.EWALLET})


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    code: str
    kind: MethodKind
    names: Mapping[str, str]  # by locale; "en" always present
    enabled: bool
    channels: frozenset[str]
    regions: frozenset[str]  # empty: every region
    amount_min: Money
    amount_max: Money
    gateway: str = ""  # the payment gateway that takes it ("" for cash: staff take it)
    daily_max: Money | None = None  # per payer account and day (e-wallets), or no limit
    # How long a renewal paid by this method usually takes to take effect, and after how long
    # it is late (the subscriber should contact customer service); None: the platform's limits.
    activation_typical_delay_s: int | None = None
    activation_late_after_s: int | None = None

    def name(self, locale: str = "en") -> str:
        return self.names.get(locale) or self.names["en"]

    def activation_times_s(self, *, typical_default_s: int, late_default_s: int) -> tuple[int, int]:
        """(usual delay, late after) of a renewal paid by this method: its own where its
        configuration gives them, else the platform's; late is never before usual."""
        typical = self.activation_typical_delay_s or typical_default_s
        late = self.activation_late_after_s or late_default_s
        return typical, max(late, typical)

    def offered(self, *, channel: str, region: str | None) -> bool:
        """Offered on this channel, and for kiosks and stores in this region."""
        if not self.enabled or channel not in self.channels:
            return False
        if channel not in PHYSICAL_CHANNELS or not self.regions:
            return True
        return region is not None and region in self.regions


@dataclass(frozen=True, slots=True)
class MethodRegistry:
    regions: frozenset[str]
    methods: tuple[PaymentMethod, ...]

    def get(self, code: str) -> PaymentMethod | None:
        return next((method for method in self.methods if method.code == code), None)

    def offered(
        self,
        *,
        channel: str,
        region: str | None,
        amount: Money | None = None,
        kinds: frozenset[MethodKind] = ONLINE_KINDS,
    ) -> list[PaymentMethod]:
        """The methods a payer may choose here, for this amount if one is given, in the
        configured order: only those of these kinds (by default, those topup takes itself)."""
        return [
            method
            for method in self.methods
            if method.kind in kinds
            and method.offered(channel=channel, region=region)
            and (amount is None or method.amount_min <= amount <= method.amount_max)
        ]

    def judge(self, code: str, *, channel: str, region: str | None) -> PaymentMethod:
        """The method asked for, judged before its details (card, token, wallet account) and
        before the amount is known: unknown, off, not offered here, or not taken by topup itself
        (cash) is refused with the methods available instead.

        A kiosk or store whose region is missing or unknown is judged by its channel alone: the
        region is refused at admission (``choose``), after the idempotency key, so that a key
        reused with another channel is still told so."""
        if region is not None and region not in self.regions:
            region = None
        method = self.get(code)
        offered_here = method is not None and self._offered_as_far_as_known(
            method, channel=channel, region=region
        )
        if method is not None and offered_here and method.kind in ONLINE_KINDS:
            return method  # the usual case: nothing to explain
        available = [
            candidate
            for candidate in self.methods
            if candidate.kind in ONLINE_KINDS
            and self._offered_as_far_as_known(candidate, channel=channel, region=region)
        ]
        if method is None or not offered_here:
            raise _unavailable(code, method, channel=channel, region=region, available=available)
        raise ConflictError(
            f"{method.name()} is taken by store staff or another service, not here. "
            f"{_choices(available)}",
            code="method_not_supported",
            field="payment.method",
            params={"method": method.name(), "available": _names(available)},
        )

    @staticmethod
    def _offered_as_far_as_known(
        method: PaymentMethod, *, channel: str, region: str | None
    ) -> bool:
        if region is None and channel in PHYSICAL_CHANNELS:
            return method.enabled and channel in method.channels
        return method.offered(channel=channel, region=region)

    def check_region(self, *, channel: str, region: str | None) -> None:
        if region is None:
            if channel in PHYSICAL_CHANNELS:
                raise InputError(
                    f"a {channel} names the region it stands in; regions: "
                    f"{', '.join(sorted(self.regions))}",
                    code="region_required",
                    field="region",
                    params={"channel": channel, "regions": ", ".join(sorted(self.regions))},
                )
            return
        if region not in self.regions:
            raise InputError(
                f"there is no region {region!r}; regions: {', '.join(sorted(self.regions))}",
                code="region_unknown",
                field="region",
                params={"region": region, "regions": ", ".join(sorted(self.regions))},
            )

    def choose(
        self, code: str, *, channel: str, region: str | None, amount: Money
    ) -> PaymentMethod:
        """The method asked for, if the payer may use it here for this amount; otherwise an
        error that says why and which methods are available instead."""
        self.check_region(channel=channel, region=region)
        method = self.get(code)
        if (
            method is not None
            and method.offered(channel=channel, region=region)
            and method.amount_min <= amount <= method.amount_max
        ):
            return method  # the usual case: nothing to explain
        available = self.offered(channel=channel, region=region, amount=amount)
        choices = _choices(available)
        if method is None or not method.offered(channel=channel, region=region):
            raise _unavailable(code, method, channel=channel, region=region, available=available)
        if amount < method.amount_min:
            raise ConflictError(
                f"{method.name()} takes payments of at least {method.amount_min}. {choices}",
                code="amount_below_method_minimum",
                field="payment.method",
                params={"method": method.name(), "minimum": str(method.amount_min)},
            )
        raise ConflictError(
            f"{method.name()} takes payments of at most {method.amount_max}. {choices}",
            code="amount_above_method_maximum",
            field="payment.method",
            params={"method": method.name(), "maximum": str(method.amount_max)},
        )


def _unavailable(
    code: str,
    method: PaymentMethod | None,
    *,
    channel: str,
    region: str | None,
    available: Sequence[PaymentMethod],
) -> TopupError:
    """Why a method cannot be used here at all: unknown, off, or not offered here."""
    choices = _choices(available)
    if method is None:
        return NotFoundError(
            f"There is no payment method {code!r}. {choices}",
            code="method_unknown",
            field="payment.method",
            params={"method": code, "available": _names(available)},
        )
    if not method.enabled:
        return ConflictError(
            f"{method.name()} is not available. {choices}",
            code="method_disabled",
            field="payment.method",
            params={"method": method.name(), "available": _names(available)},
        )
    where = f"{channel} in {region}" if region else f"the {channel} channel"
    return ConflictError(
        f"{method.name()} is not offered on {where}. {choices}",
        code="method_not_offered_here",
        field="payment.method",
        params={"method": method.name(), "available": _names(available)},
    )


# --- wallet accounts -----------------------------------------------------------------------------


def wallet_account_of(method: PaymentMethod, text: str | None, profile: OperatorProfile) -> str:
    """The wallet account a payer typed for an e-wallet, in its one canonical form: the E.164
    mobile number of the operator's region ("0123456781", "60123456781", "0060123456781" and
    "+60 12-345 6781" are all "+60123456781"). It is tokenised, limited and stored only in this
    form, so that each wallet account has one daily allowance however it is written."""
    account = (text or "").strip()
    if not account:
        raise InputError(
            f"{method.name()} needs the phone number registered with the wallet.",
            code="wallet_account_required",
            field="payment.wallet_account",
            params={"method": method.name()},
        )
    try:
        number = parse_card_number(account, profile)  # a card's number is a mobile number too
    except InputError:
        number = None
    if number is None or number.kind is not CardNumberKind.MSISDN:
        example = _mobile_example(profile)
        raise InputError(
            "A wallet account is the mobile number registered with the wallet, "
            f"for example {example}.",
            code="wallet_account_invalid",
            field="payment.wallet_account",
            params={"method": method.name(), "example": example},
        )
    return number.value


def _mobile_example(profile: OperatorProfile) -> str:
    number = phonenumbers.example_number_for_type(profile.phone_region, PhoneNumberType.MOBILE)
    if number is None:
        return f"+{profile.calling_code} ..."
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def _names(methods: Sequence[PaymentMethod]) -> str:
    names = [method.name() for method in methods]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _choices(methods: Sequence[PaymentMethod]) -> str:
    if not methods:
        return "No payment method is offered here for this amount."
    return f"You can pay by {_names(methods)}."


# --- configuration -------------------------------------------------------------------------------


def _invalid(field: str, problem: str) -> InputError:
    return InputError(
        f"payment methods: {field} {problem}",
        code="invalid_method_configuration",
        field=field,
        params={"detail": f"{field} {problem}"},
    )


def methods_from_toml(text: str, *, currency: str) -> MethodRegistry:
    """Parse an operator's payment-method configuration (see ``topup/methods/my.toml``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _invalid("file", f"is not valid TOML: {error}") from None
    unknown = set(data) - {"regions", "methods"}
    if unknown:
        raise _invalid(", ".join(sorted(unknown)), "is not a field (fields: regions, methods)")
    regions = data.get("regions", [])
    if not isinstance(regions, list) or len(regions) > regions_max:
        raise _invalid("regions", f"must be a list of at most {regions_max} region codes")
    for region in regions:
        if not isinstance(region, str) or not _REGION_CODE.fullmatch(region):
            raise _invalid("regions", f"has {region!r}; a region code is like 'klang_valley'")
    table = data.get("methods", {})
    if not isinstance(table, dict) or not table or len(table) > methods_max:
        raise _invalid("methods", f"must name 1 to {methods_max} methods")
    methods = tuple(
        _method(code, entry, currency=currency, regions=frozenset(regions))
        for code, entry in table.items()
    )
    return MethodRegistry(regions=frozenset(regions), methods=methods)


def _method(code: str, entry: Any, *, currency: str, regions: frozenset[str]) -> PaymentMethod:
    field = f"methods.{code}"
    if not _METHOD_CODE.fullmatch(code) or len(code) > method_code_length_max:
        raise _invalid(field, "is not a method code like 'credit_card' or 'ewallet:grabpay'")
    if not isinstance(entry, dict):
        raise _invalid(field, "must be a table")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise _invalid(
            f"{field}.{sorted(unknown)[0]}", f"is not a field ({', '.join(sorted(_FIELDS))})"
        )
    try:
        kind = MethodKind(entry.get("kind", ""))
    except ValueError:
        kinds = ", ".join(kind.value for kind in MethodKind)
        raise _invalid(f"{field}.kind", f"must be one of {kinds}") from None
    if code.startswith("ewallet:") != (kind is MethodKind.EWALLET):
        raise _invalid(f"{field}.kind", "is 'ewallet' exactly for codes 'ewallet:<provider>'")
    names = entry.get("names", {})
    if (
        not isinstance(names, dict)
        or not isinstance(names.get("en"), str)
        or not all(
            isinstance(name, str) and 0 < len(name) <= method_name_length_max
            for name in names.values()
        )
    ):
        raise _invalid(f"{field}.names", "must give a name per locale, 'en' included")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid(f"{field}.enabled", "must be true or false")
    channels = entry.get("channels", [])
    if not isinstance(channels, list) or not channels or not set(channels) <= set(CHANNELS):
        raise _invalid(f"{field}.channels", f"must list channels among {', '.join(CHANNELS)}")
    method_regions = entry.get("regions", [])
    if not isinstance(method_regions, list) or not set(method_regions) <= regions:
        raise _invalid(f"{field}.regions", "must list regions named in 'regions'")
    gateway = entry.get("gateway", _DEFAULT_GATEWAYS[kind.value])
    if not isinstance(gateway, str) or (gateway and not _GATEWAY_NAME.fullmatch(gateway)):
        raise _invalid(f"{field}.gateway", "must be a gateway name like 'sandbox_wallet'")
    daily_max = (
        _amount(entry, "daily_max_minor", field, currency, 0)
        if "daily_max_minor" in entry
        else None
    )
    amount_min = _amount(entry, "amount_min_minor", field, currency, amount_min_minor_default)
    amount_max = _amount(entry, "amount_max_minor", field, currency, amount_max_minor_default)
    if amount_min > amount_max:
        raise _invalid(f"{field}.amount_min_minor", "must not be above amount_max_minor")
    return PaymentMethod(
        code=code,
        kind=kind,
        names=dict(names),
        enabled=enabled,
        channels=frozenset(channels),
        regions=frozenset(method_regions),
        amount_min=amount_min,
        amount_max=amount_max,
        gateway=gateway,
        daily_max=daily_max,
        **_activation_times(entry, field),
    )


def _activation_times(entry: Mapping[str, Any], field: str) -> dict[str, int]:
    """A method's own activation times, when its configuration gives them (whole seconds,
    1 s to a week, the late one not before the typical one)."""
    found: dict[str, int] = {}
    for name in ("activation_typical_delay_s", "activation_late_after_s"):
        if name not in entry:
            continue
        value = entry[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(f"{field}.{name}", "must be a whole number of seconds")
        if not 1 <= value <= activation_delay_s_max:
            raise _invalid(f"{field}.{name}", f"must be between 1 and {activation_delay_s_max}")
        found[name] = value
    typical = found.get("activation_typical_delay_s")
    late = found.get("activation_late_after_s")
    if typical is not None and late is not None and late < typical:
        raise _invalid(f"{field}.activation_late_after_s", "must not be below the typical delay")
    return found


def _amount(entry: Mapping[str, Any], name: str, field: str, currency: str, default: int) -> Money:
    value = entry.get(name, default)
    if type(value) is not int or value < 1:
        raise _invalid(f"{field}.{name}", "must be a whole number of minor units, at least 1")
    return Money(value, currency)
