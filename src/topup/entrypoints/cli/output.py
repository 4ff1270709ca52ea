"""What every command shares: the console, common options, exit codes, one-line errors, JSON.

Start-up is kept short: this module and the command modules import only Typer and the domain's
errors at import time; rich, the settings, bootstrap (SQLAlchemy, the gateways) and the services
are imported inside the commands that use them, so `topup --help` loads none of them."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer

from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from rich.console import Console
    from rich.table import Table

    from topup.bootstrap import Application

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ChannelOption = Annotated[str, typer.Option(help="web, store, kiosk, app or api.")]
RegionOption = Annotated[
    str | None, typer.Option(help="Where the kiosk or store stands (see `topup methods`).")
]
EXIT_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
LANGUAGE_VARIABLE = "TOPUP_LANGUAGE"  # en, zh_Hans, ms or id; default: the profile's first locale


@functools.cache
def console() -> Console:
    """The console that prints what a command shows (rich markup; tables fit the terminal)."""
    from rich.console import Console

    return Console()


def table(*headers: str, whole: tuple[str, ...] = ()) -> Table:
    """A table with these column headers; the columns named in ``whole`` (card numbers, ids)
    are never wrapped or cut, and the others wrap (folding long words) to make room."""
    from rich import box
    from rich.table import Table

    shown = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in headers:
        if header in whole:
            shown.add_column(header, no_wrap=True, overflow="ignore")
        else:
            shown.add_column(header, overflow="fold")
    return shown


@functools.cache
def operator_zone() -> ZoneInfo:
    """The operator's time zone, in which tables show times."""
    from topup import bootstrap

    return ZoneInfo(bootstrap.operator_profile().time_zone)


def moment(text: str | None) -> str:
    """An ISO time from a service as ``YYYY-MM-DD HH:MM`` in the operator's time zone ("-" for
    none); tables say which zone in their caption."""
    if not text:
        return "-"
    return f"{dt.datetime.fromisoformat(text).astimezone(operator_zone()):%Y-%m-%d %H:%M}"


def times_caption() -> str:
    return f"times in {operator_zone().key}"


def language() -> str:
    """The language of error messages: TOPUP_LANGUAGE, else the operator profile's default."""
    from topup import bootstrap
    from topup.adapters import messages

    chosen = os.environ.get(LANGUAGE_VARIABLE, "").strip()
    if chosen:
        return chosen
    try:
        return bootstrap.operator_profile().default_locale
    except (TopupError, ValueError):  # a bad profile or setting: say so in English
        return messages.DEFAULT_LOCALE


def fail(
    code: str, message: str, exit_code: int, params: Mapping[str, str] | None = None
) -> typer.Exit:
    """Print ``error [code]: <message in the chosen language>``; ``message`` is the English text,
    used when the catalogue has no text for the code or ``params`` do not fill it."""
    return fail_with(TopupError(message, code=code, params=params), exit_code)


def fail_with(error: TopupError, exit_code: int) -> typer.Exit:
    from topup.adapters import messages

    try:
        text = messages.message_for(error, language())
    except (InvariantError, OSError):  # a broken catalogue must not hide the error itself
        text = error.message
    print(f"error [{error.code}]: {text}", file=sys.stderr)
    return typer.Exit(exit_code)


def run(work: Callable[[Application], Awaitable[T]], **build_options: Any) -> T:
    """Build the application, run ``work`` with it, close it; a TopupError or any other failure
    becomes one error line and an exit code."""
    from topup.bootstrap import build
    from topup.entrypoints import runtime

    async def main() -> T:
        application = build(**build_options)
        try:
            return await work(application)
        finally:
            await application.close()

    try:
        return runtime.run(main())
    except TopupError as error:
        exit_code = EXIT_INPUT if isinstance(error, InputError | NotFoundError) else EXIT_FAILED
        raise fail_with(error, exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as error:  # a bug or an unreachable database: one line, no traceback
        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise fail("internal_error", detail, EXIT_INTERNAL, {"detail": detail}) from None


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True))
