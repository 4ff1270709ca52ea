"""What the e2e tests share: where the installed `topup` command is."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

COMMAND_TIMEOUT_S = 60


def topup_executable() -> str:
    beside_python = Path(sys.executable).with_name("topup")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("topup")
    if found is None:
        pytest.fail("the topup command is not installed (pip install -e .)")
    return found
