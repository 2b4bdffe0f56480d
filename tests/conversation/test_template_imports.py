"""Jinja2 is imported by one module only (DESIGN.md: each third-party library in one place)."""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

SOURCE_ROOT = Path(hubbub.__file__).parent


def imported_top_level_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_only_the_templates_module_imports_jinja2() -> None:
    importers = {
        str(path.relative_to(SOURCE_ROOT))
        for path in SOURCE_ROOT.rglob("*.py")
        if "jinja2" in imported_top_level_modules(path)
    }
    assert importers == {"conversation/project/templates.py"}
