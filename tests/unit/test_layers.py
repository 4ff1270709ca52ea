"""The domain imports the standard library only, and phonenumbers (the documented exception):
an exact check next to import-linter's contracts in pyproject.toml, which name the packages the
domain must not import."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import topup.domain

DOMAIN = Path(topup.domain.__file__).parent
ALLOWED_OUTSIDE_STANDARD_LIBRARY = {"phonenumbers", "topup"}


def _imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_domain_imports_the_standard_library_and_phonenumbers_only() -> None:
    foreign = {
        f"{path.name}: {name}"
        for path in sorted(DOMAIN.rglob("*.py"))
        for name in _imported_top_level_names(path)
        if name not in sys.stdlib_module_names and name not in ALLOWED_OUTSIDE_STANDARD_LIBRARY
    }
    assert not foreign


def test_the_domain_imports_nothing_of_topup_outside_the_domain() -> None:
    reaching_out = set()
    for path in sorted(DOMAIN.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
                if module.startswith("topup.") and not module.startswith("topup.domain"):
                    reaching_out.add(f"{path.name}: {module}")
    assert not reaching_out
