"""Forms: what a page shows when a service refuses what was typed.

A ``TopupError`` becomes ``FormErrors``: one message beside each field it names (an error that
gathers several, like ``card_details_invalid``, names one field each) and a summary at the top that
links to each field (the GOV.UK pattern: the summary takes the focus, each link moves it to its
field). The texts come from the error catalogue in the visitor's language; nothing of the typed
value is echoed unless the form gives it back itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from topup.domain.errors import TopupError
from topup.entrypoints.http.problems import error_text


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str | None  # the form's field name; None: about the whole form
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class FormErrors:
    errors: tuple[FieldError, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.errors)

    def of(self, name: str) -> str | None:
        """The message beside field ``name``, if any."""
        found = [error.message for error in self.errors if error.field == name]
        return " ".join(found) or None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(error.code for error in self.errors)


NO_ERRORS = FormErrors()


def form_errors(
    error: TopupError, locale: str, *, fields: Mapping[str, str] | None = None
) -> FormErrors:
    """The form's errors for ``error``. ``fields`` maps an error's own field name or code to the
    form's field name (``card_number`` -> ``number``); an error naming no known field is about
    the whole form."""
    known = dict(fields or {})
    problems = getattr(error, "problems", ())
    parts = [item for item in problems if isinstance(item, TopupError)] or [error]

    def field_of(part: TopupError) -> str | None:
        if part.field is not None:
            return known.get(part.field, part.field)
        return known.get(part.code)

    return FormErrors(
        tuple(FieldError(field_of(part), part.code, error_text(part, locale)) for part in parts)
    )
