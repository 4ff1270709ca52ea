"""What every command shares: the console, common options, exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from topup.adapters import messages
from topup.adapters.profiles import load_profile
from topup.bootstrap import Application, build
from topup.domain.errors import InputError, InvariantError, NotFoundError, TopupError
from topup.entrypoints import runtime
from topup.settings import Settings

console = Console()
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ChannelOption = Annotated[str, typer.Option(help="web, store, kiosk, app or api.")]
RegionOption = Annotated[
    str | None, typer.Option(help="Where the kiosk or store stands (see `topup methods`).")
]
EXIT_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERNAL = 70
LANGUAGE_VARIABLE = "TOPUP_LANGUAGE"  # en, zh_Hans, ms or id; default: the profile's first locale


def language() -> str:
    """The language of error messages: TOPUP_LANGUAGE, else the operator profile's default."""
    chosen = os.environ.get(LANGUAGE_VARIABLE, "").strip()
    if chosen:
        return chosen
    try:
        return load_profile(Settings().profile).default_locale
    except (TopupError, ValueError):  # a bad profile or setting: say so in English
        return messages.DEFAULT_LOCALE


def fail(
    code: str, message: str, exit_code: int, params: Mapping[str, str] | None = None
) -> typer.Exit:
    """Print ``error [code]: <message in the chosen language>``; ``message`` is the English text,
    used when the catalogue has no text for the code or ``params`` do not fill it."""
    return fail_with(TopupError(message, code=code, params=params), exit_code)


def fail_with(error: TopupError, exit_code: int) -> typer.Exit:
    try:
        text = messages.message_for(error, language())
    except (InvariantError, OSError):  # a broken catalogue must not hide the error itself
        text = error.message
    print(f"error [{error.code}]: {text}", file=sys.stderr)
    return typer.Exit(exit_code)


def run(work: Callable[[Application], Awaitable[T]], **build_options: Any) -> T:
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
        raise typer.Exit(130) from None
    except Exception as error:  # a bug or an unreachable database: one line, no traceback
        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise fail("internal_error", detail, EXIT_INTERNAL, {"detail": detail}) from None


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=True))
