"""The layering rule: nothing below the HTTP edge imports FastAPI or Starlette."""

from __future__ import annotations

import ast
from pathlib import Path

import kbaudit

PACKAGE = Path(kbaudit.__file__).parent
EDGE = {PACKAGE / "api"}
WEB_FRAMEWORKS = ("fastapi", "starlette")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_edge_imports_the_web_framework() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if any(edge in path.parents for edge in EDGE):
            continue
        web = {name for name in imported_modules(path) if name.split(".")[0] in WEB_FRAMEWORKS}
        if web:
            offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(web)}")
    assert offenders == []


def test_the_check_sees_imports() -> None:
    assert "fastapi" in imported_modules(PACKAGE / "api" / "auth.py")
