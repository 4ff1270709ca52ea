"""Read operator profiles: the ones shipped in ``topup/profiles/*.toml``, or a file of the operator's.

File-system errors become ``InputError``s here, so callers never see ``OSError``.
"""

from __future__ import annotations

import importlib.resources
import pathlib
from importlib.resources.abc import Traversable

from topup.domain.errors import InputError
from topup.domain.profile import OperatorProfile
from topup.domain.profile_loading import profile_from_toml

profile_file_size_max_bytes = 64 * 1024
_SUFFIX = ".toml"


def _shipped_directory() -> Traversable:
    return importlib.resources.files("topup").joinpath("profiles")


def available_profile_codes() -> tuple[str, ...]:
    """Codes of the shipped profiles, sorted (``("id", "my")``)."""
    return tuple(
        sorted(
            entry.name.removesuffix(_SUFFIX)
            for entry in _shipped_directory().iterdir()
            if entry.is_file() and entry.name.endswith(_SUFFIX)
        )
    )


def load_profile(code: str) -> OperatorProfile:
    """Load a shipped profile by its code, e.g. ``"my"``."""
    available = available_profile_codes()
    if code not in available:
        raise InputError(
            f"no operator profile {code!r}; available profiles: {', '.join(available)}",
            code="unknown_profile",
            field="profile",
        )
    text = _shipped_directory().joinpath(code + _SUFFIX).read_text(encoding="utf-8")
    profile = profile_from_toml(text)
    if profile.code != code:
        raise InputError(
            f"profile file {code + _SUFFIX!r} declares code {profile.code!r}",
            code="invalid_profile",
            field="code",
        )
    return profile


def load_profile_file(path: pathlib.Path) -> OperatorProfile:
    """Load an operator's own profile from a TOML file."""
    try:
        size_bytes = path.stat().st_size
        if size_bytes > profile_file_size_max_bytes:
            raise InputError(
                f"profile file {str(path)!r} is {size_bytes} bytes; "
                f"the limit is {profile_file_size_max_bytes}",
                code="invalid_profile",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"cannot read profile file {str(path)!r}: {error}", code="profile_file_unreadable"
        ) from None
    return profile_from_toml(text)
