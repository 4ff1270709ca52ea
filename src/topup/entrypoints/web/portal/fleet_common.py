"""What the fleet pages share: rendering from ``templates/portal/fleet/`` (never cached), the
organisation's id as the URL gives it, an error code's message in the visitor's language, and
the fleet's own navigation. The services check that the signed-in account is a member (a
forged organisation or run id is not found) and what its role may do; a page only hides the
buttons a viewer cannot use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from topup.domain.errors import TopupError
from topup.entrypoints.http.problems import error_text
from topup.entrypoints.web.portal.account_common import NO_STORE, card_number_shown
from topup.entrypoints.web.shared.rendering import renderer_of
from topup.i18n import N_, translations

ID_LENGTH_MAX = 64
ORGANISATIONS_PATH = "/organisations"


def fleet_path(organisation_id: str, tail: str = "") -> str:
    return f"{ORGANISATIONS_PATH}/{organisation_id}{tail}"


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> Response:
    """A page of ``templates/portal/fleet/`` (its own Babel domain, portal_fleet)."""
    values = {"card_number": card_number_shown, "fleet_path": fleet_path, **(context or {})}
    return renderer_of(request).render(
        request, f"portal/fleet/{template}", values, status_code=status, headers=NO_STORE
    )


# Said of a line whose code has no message the catalogue can fill (never the bare code).
LINE_NOT_DONE = N_("This line was not renewed (the reason is in the error code column).")
_UNFILLED = "\x00unfilled"


def code_text(code: str, params: Mapping[str, str], locale: str, **known: str) -> str:
    """The message of an error code (a line's problem) in ``locale``, filled with the error's
    params; ``known`` fills what a line stored without them lacks (its plan, its number). A
    code the catalogue cannot say is told by a sentence, never shown bare."""
    filled = {**known, **params}
    text = error_text(TopupError(_UNFILLED, code=code, params=filled), locale)
    if text == _UNFILLED:
        return translations(locale).gettext(LINE_NOT_DONE)
    return text
