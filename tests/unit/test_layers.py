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


# Where the engine may be told apart: in its own package, and where what is the engine's is
# chosen. Each migration is written once for both (and frozen: see below).
ENGINE_PACKAGES = ("store/sqlite/", "store/postgres/")
ENGINE_CHOICE = {"store/engine.py", "store/types.py"}  # the adapter; each column's type


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


def shared_store_code() -> list[tuple[str, Path]]:
    """Every module but those of the engine packages, the chooser and the migrations."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        where = path.relative_to(PACKAGE).as_posix()
        if where in ENGINE_CHOICE or where.startswith((*ENGINE_PACKAGES, "store/migrations/")):
            continue
        found.append((where, path))
    return found


def test_only_the_engine_packages_tell_the_engines_apart() -> None:
    """ "Where does SQLite differ?" has one answer: store/sqlite/ (and store/postgres/ for
    PostgreSQL). Shared code never branches on the engine."""
    offenders = []
    for where, path in shared_store_code():
        offenders += [f"{where}:{line}" for line in reads_of_the_dialect_name(path)]
    assert offenders == []


def test_only_the_chooser_reaches_into_an_engine_package() -> None:
    offenders = []
    for where, path in shared_store_code():
        engine_modules = {
            name
            for name in imported_modules(path)
            if name.startswith(("kbaudit.store.sqlite", "kbaudit.store.postgres"))
        }
        if engine_modules:
            offenders.append(f"{where}: {sorted(engine_modules)}")
    assert offenders == []


def test_the_engine_checks_see_a_branch_and_an_import() -> None:
    assert reads_of_the_dialect_name(PACKAGE / "store" / "engine.py") != []
    assert "kbaudit.store.sqlite.adapter" in imported_modules(PACKAGE / "store" / "engine.py")


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
    for path in (PACKAGE / "store").rglob("*.py"):
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


MIGRATIONS = PACKAGE / "store" / "migrations"


def unfrozen_imports(path: Path) -> list[str]:
    """What ``path`` imports of kbaudit beyond the migrations' frozen helpers."""
    return sorted(
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "kbaudit"
        and not name.startswith("kbaudit.store.migrations.frozen")
    )


def test_migrations_import_nothing_of_kbaudit_but_what_is_frozen() -> None:
    """A migration must do the same thing forever: live code changes, its copies do not."""
    offenders = []
    for path in [*(MIGRATIONS / "versions").glob("*.py"), *(MIGRATIONS / "frozen").glob("*.py")]:
        if found := unfrozen_imports(path):
            offenders.append(f"{path.name}: {found}")
    assert offenders == []


def test_the_migration_check_sees_live_code(tmp_path: Path) -> None:
    revision = tmp_path / "0099_live.py"
    revision.write_text(
        "from kbaudit.document import document_of\n"
        "from kbaudit.store.migrations.frozen import types\n"
    )
    assert unfrozen_imports(revision) == ["kbaudit.document"]


def routes_named(folder: Path) -> list[str]:
    """Lines under ``folder`` that spell a URL of kbaudit's (the API's or the console's)."""
    found = []
    for path in folder.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "/v1/" in line or "/console" in line:
                found.append(f"{path.relative_to(PACKAGE)}:{number}")
    return found


def test_services_name_no_routes() -> None:
    """An edge says which of its routes a call came in by (Caller.via); services log that,
    and never name a URL of their own."""
    assert routes_named(PACKAGE / "services") == []


def test_the_route_check_sees_a_url() -> None:
    assert routes_named(PACKAGE / "api" / "console") != []
