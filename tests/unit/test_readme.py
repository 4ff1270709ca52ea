"""README's examples run on a fresh Debian with what README installs, and show the safe way first."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
# What a fresh Debian has, plus what README asks to install (curl, jq) and the project's own.
COMMANDS_AVAILABLE = {"curl", "date", "jq", "python3", ".venv/bin/topup"}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_every_command_substituted_in_readme_is_installed_on_a_fresh_debian() -> None:
    substituted = set(re.findall(r"\$\(\s*([^\s)]+)", readme()))

    assert substituted <= COMMANDS_AVAILABLE, substituted - COMMANDS_AVAILABLE


def test_readme_shows_the_receipt_code_by_header_before_the_query_form() -> None:
    text = readme()

    assert "X-Verification-Code" in text
    assert "?verification_code=" in text
    assert text.index("X-Verification-Code") < text.index("?verification_code=")
