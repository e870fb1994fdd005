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


def offenders(folder: str, forbidden: str) -> list[str]:
    """Modules under ``folder`` that import ``forbidden`` or anything below it."""
    found = []
    for path in (PACKAGE / folder).rglob("*.py"):
        names = imported_modules(path)
        if any(name == forbidden or name.startswith(forbidden + ".") for name in names):
            found.append(str(path.relative_to(PACKAGE)))
    return found


def test_the_command_line_goes_through_services_never_the_store() -> None:
    assert offenders("cli", "kbaudit.store") == []


def test_workers_are_handed_their_dependencies_not_the_container() -> None:
    assert offenders("workers", "kbaudit.container") == []


def test_services_work_with_typed_models_never_the_database_library() -> None:
    """The store maps rows to models (kbaudit.store.models); services never see a row."""
    assert offenders("services", "sqlalchemy") == []


def test_services_and_the_store_never_reach_up_to_the_edges() -> None:
    for folder in ("services", "store", "crypto", "blobs"):
        for edge in ("kbaudit.api", "kbaudit.cli", "kbaudit.container"):
            assert offenders(folder, edge) == [], (folder, edge)


def test_the_rule_checks_see_a_violation() -> None:
    assert offenders("api", "kbaudit.container") != []


# Where the engine may be told apart: the adapters choose, column types adapt themselves
# (SQLAlchemy's hook for it), and each migration is written once for both.
ENGINE_CHOICE = {"store/adapters.py", "store/types.py"}


def reads_of_the_dialect_name(path: Path) -> list[int]:
    """The lines of ``path`` that read ``<something>.dialect.name`` or ``dialect.name``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Attribute) and node.attr == "name"):
            continue
        owner = node.value
        if (isinstance(owner, ast.Attribute) and owner.attr == "dialect") or (
            isinstance(owner, ast.Name) and owner.id == "dialect"
        ):
            lines.append(node.lineno)
    return lines


def test_the_engine_is_chosen_once_by_its_adapter() -> None:
    """No engine branches inside shared code: what differs per engine is in one adapter
    (store/adapters.py), chosen once for the store."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        where = str(path.relative_to(PACKAGE))
        if where in ENGINE_CHOICE or where.startswith("store/migrations/"):
            continue
        offenders += [f"{where}:{line}" for line in reads_of_the_dialect_name(path)]
    assert offenders == []


def test_the_engine_check_sees_a_branch() -> None:
    assert reads_of_the_dialect_name(PACKAGE / "store" / "adapters.py") != []


def column_dict_parameters(path: Path) -> list[str]:
    """Public repository methods in ``path`` that take a dict keyed by column names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.ClassDef) and node.name.endswith("Repository")):
            continue
        for method in node.body:
            if not isinstance(method, ast.FunctionDef) or method.name.startswith("_"):
                continue
            for argument in method.args.args + method.args.kwonlyargs:
                if argument.annotation and "dict[" in ast.unparse(argument.annotation):
                    found.append(f"{node.name}.{method.name}({argument.arg})")
    return found


def test_repositories_take_models_not_column_dicts() -> None:
    """Services hand the store typed models (kbaudit.store.models) to write, never dicts
    keyed by column names: the schema's names stay inside the store."""
    offenders = []
    for path in (PACKAGE / "store").glob("*.py"):
        offenders += column_dict_parameters(path)
    assert offenders == []


def test_the_column_dict_check_sees_one(tmp_path: Path) -> None:
    source = tmp_path / "repository.py"
    source.write_text(
        "class ThingRepository:\n"
        "    def add(self, values: dict[str, Any]) -> None: ...\n"
        "    def _private(self, values: dict[str, Any]) -> None: ...\n"
    )
    assert column_dict_parameters(source) == ["ThingRepository.add(values)"]


def test_the_export_pipeline_never_knows_delivery_exists() -> None:
    """Exports announce that a job ended to the followers they were handed; delivery is one
    (the container wires it), and reads the export, never the other way round."""
    assert offenders("services/exports", "kbaudit.services.delivery") == []


def test_the_delivery_check_sees_an_import() -> None:
    assert offenders("services/delivery", "kbaudit.services.exports") != []
