"""Directories and files under ``var/`` hold secrets (keys, tokens, verification and link codes):
they are made readable by their owner only, whatever the umask."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def make_private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents owner-only (0700). Directories that already exist
    are left as they are: a shared parent such as ``/tmp`` is not ours to change."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIRECTORY_MODE)


def write_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path``, created (or truncated) owner-only (0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        handle.write(content)
