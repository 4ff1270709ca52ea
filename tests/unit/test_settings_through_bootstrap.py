"""Settings reach the code only through `topup.bootstrap` (STYLE.md: the one place that wires
settings to adapters): no other module reads them from the environment itself."""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "topup"
READS_SETTINGS = re.compile(r"\bSettings\(\s*\)")
ALLOWED = {"bootstrap.py", "settings.py"}


def test_only_bootstrap_builds_the_settings() -> None:
    readers = sorted(
        path.relative_to(SOURCE).as_posix()
        for path in SOURCE.rglob("*.py")
        if path.relative_to(SOURCE).as_posix() not in ALLOWED
        and READS_SETTINGS.search(path.read_text(encoding="utf-8"))
    )
    assert readers == [], f"ask topup.bootstrap.load_settings() instead in {readers}"


def test_the_scan_sees_a_module_that_builds_the_settings() -> None:
    assert READS_SETTINGS.search("profile = load_profile(Settings().profile)")
    assert READS_SETTINGS.search((SOURCE / "bootstrap.py").read_text(encoding="utf-8"))
