"""What a channel gives the web application: its router, templates and static files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter


@dataclass(frozen=True, slots=True)
class Channel:
    name: str  # ``portal``: its templates are ``portal/...``, its files ``/static/portal/...``
    router: APIRouter  # mounted with the channel's own authentication dependencies
    templates: Path  # the folder holding ``<name>/`` templates
    static: Path  # the folder served at ``/static/<name>/`` (``static/<name>`` in the channel)
