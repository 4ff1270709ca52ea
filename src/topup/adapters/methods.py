"""Read an operator's payment-method configuration: the one shipped for a profile
(``topup/methods/<profile>.toml``) or a file of the operator's (``TOPUP_METHODS_FILE``)."""

from __future__ import annotations

import importlib.resources
import pathlib

from topup.domain.errors import InputError
from topup.domain.methods import MethodRegistry, methods_from_toml
from topup.domain.profile import OperatorProfile

methods_file_size_max_bytes = 256 * 1024


def load_methods(profile: OperatorProfile, path: pathlib.Path | None = None) -> MethodRegistry:
    if path is None:
        shipped = importlib.resources.files("topup").joinpath("methods", f"{profile.code}.toml")
        if not shipped.is_file():
            raise InputError(
                f"no payment methods are shipped for profile {profile.code!r}; "
                "name a file with TOPUP_METHODS_FILE",
                code="methods_missing",
            )
        text = shipped.read_text(encoding="utf-8")
    else:
        try:
            if path.stat().st_size > methods_file_size_max_bytes:
                raise InputError(
                    f"payment-method file {str(path)!r} is larger than "
                    f"{methods_file_size_max_bytes} bytes",
                    code="invalid_method_configuration",
                )
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(
                f"cannot read payment-method file {str(path)!r}: {type(error).__name__}",
                code="methods_file_unreadable",
            ) from None
    return methods_from_toml(text, currency=profile.currency)
