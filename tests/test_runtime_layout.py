"""The layout rules of the run runtime, read from the source with ``ast``: the two task packages never import each
other, no module outside them imports either (the shared run package, the sweep, the card command...), the shared
run package imports only the library core, and no function of a recipe's ``run.py`` is longer than 120 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_squareloss"
TASK_PACKAGES = ("hf_squareloss.glue", "hf_squareloss.vision")
APPLICATIONS = (
    *TASK_PACKAGES,
    "hf_squareloss.compare",
    "hf_squareloss.speechbrain",
    "hf_squareloss.cli",
    "hf_squareloss.demo",
    "hf_squareloss.folder_card",
)
"""What the shared run package may not import: it sits under them all, beside the library core."""
MAX_RECIPE_FUNCTION = 120
MAX_RUNTIME_FUNCTION = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(name: str, source: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the module ``name``) imports, anywhere in it (functions and ``TYPE_CHECKING``
    blocks too), relative imports resolved; ``from X import y`` counts as ``X`` and ``X.y``."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _within(module: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(modules: dict[str, set[str]]) -> list[str]:
    """The import rules, broken: ``"importer -> imported (rule)"``."""
    out = []
    for importer, imported in sorted(modules.items()):
        for target in sorted(imported):
            home = next((p for p in TASK_PACKAGES if _within(importer, p)), None)
            if home is not None and _within(target, TASK_PACKAGES) and not _within(target, home):
                out.append(f"{importer} -> {target} (a task package imports another)")
            elif home is None and _within(target, TASK_PACKAGES):
                out.append(f"{importer} -> {target} (a shared module imports a task package)")
            if _within(importer, "hf_squareloss.runs") and _within(target, APPLICATIONS):
                out.append(f"{importer} -> {target} (the run runtime imports more than the library core)")
    return out


def package_imports() -> dict[str, set[str]]:
    return {
        module_name(path): imports_of(
            module_name(path), path.read_text(encoding="utf-8"), path.name == "__init__.py"
        )
        for path in PACKAGE.rglob("*.py")
    }


def test_the_import_reader_sees_what_it_must() -> None:
    source = "from ..glue import tasks\nfrom .. import glue\ndef f():\n    import hf_squareloss.glue.run\n"
    found = imports_of("hf_squareloss.vision.x", source)
    assert {"hf_squareloss.glue", "hf_squareloss.glue.tasks", "hf_squareloss.glue.run"} <= found
    assert "hf_squareloss.runs.folder" in imports_of("hf_squareloss.runs", "from .folder import x", True)
    assert violations(
        {
            "hf_squareloss.vision.x": {"hf_squareloss.glue.tasks", "hf_squareloss.vision.data"},
            "hf_squareloss.compare.grid": {"hf_squareloss.vision"},
            "hf_squareloss.runs.skeleton": {"hf_squareloss.compare.runner", "hf_squareloss.registry"},
            "hf_squareloss.glue.run": {"hf_squareloss.runs.skeleton"},
        }
    ) == [
        "hf_squareloss.compare.grid -> hf_squareloss.vision (a shared module imports a task package)",
        "hf_squareloss.runs.skeleton -> hf_squareloss.compare.runner (the run runtime imports more than the "
        "library core)",
        "hf_squareloss.vision.x -> hf_squareloss.glue.tasks (a task package imports another)",
    ]


def test_task_packages_and_shared_modules_keep_their_imports_apart() -> None:
    modules = package_imports()
    assert (
        "hf_squareloss.runs.skeleton" in modules
        and "hf_squareloss.runs.skeleton" in modules["hf_squareloss.glue.run"]
    )
    assert violations(modules) == []


def _function_lengths(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        f"{path.name}:{node.name}:{node.lineno}": node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


@pytest.mark.parametrize("recipe", ["glue", "vision"])
def test_no_function_of_a_recipe_run_module_is_longer_than_120_lines(recipe: str) -> None:
    lengths = _function_lengths(PACKAGE / recipe / "run.py")
    assert len(lengths) > 5 and max(lengths.values()) > 10  # the module was read
    assert {k: n for k, n in lengths.items() if n > MAX_RECIPE_FUNCTION} == {}


def test_the_functions_of_the_run_runtime_are_short() -> None:
    lengths = {k: n for path in (PACKAGE / "runs").glob("*.py") for k, n in _function_lengths(path).items()}
    assert len(lengths) > 40
    assert {k: n for k, n in lengths.items() if n > MAX_RUNTIME_FUNCTION} == {}
