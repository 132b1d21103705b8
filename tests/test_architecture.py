"""The layers point one way, files stay small, and nothing edits sys.path (DESIGN.md, "Layout")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

ENTRY_SCRIPTS = {"main_retrieval", "main_vqa", "banzhaf_estimator", "test", "test_qb_norm", "main_hapvr"}
PACKAGES = ("models", "dataloaders", "modules")
MAX_LINES = 400


def product_files() -> list[Path]:
    files = [p for pkg in (*PACKAGES, "scripts") for p in (ROOT / pkg).rglob("*.py")]
    return files + [ROOT / f"{name}.py" for name in ENTRY_SCRIPTS if (ROOT / f"{name}.py").is_file()]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (relative imports resolved within its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = path.relative_to(ROOT).parts[:-node.level]
                names.add(".".join((*package, node.module or "")).strip("."))
            else:
                names.add(node.module)
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("package, forbidden", [
    ("modules", ENTRY_SCRIPTS | {"scripts", "tests"}),
    ("models", ENTRY_SCRIPTS | {"modules", "dataloaders", "scripts", "tests"}),
    ("dataloaders", ENTRY_SCRIPTS | {"modules", "models", "scripts", "tests"}),
])
def test_layers_point_one_way(package, forbidden):
    wrong = {f"{p.relative_to(ROOT)} imports {name}" for p in (ROOT / package).rglob("*.py")
             for name in imported_modules(p) & forbidden}
    assert not wrong, sorted(wrong)


def test_no_entry_script_imports_another():
    wrong = {f"{p.name} imports {name}" for p in product_files() if p.stem in ENTRY_SCRIPTS
             for name in imported_modules(p) & (ENTRY_SCRIPTS - {p.stem})}
    assert not wrong, sorted(wrong)


def test_product_files_stay_under_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in product_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_nothing_edits_sys_path():
    files = product_files() + list((ROOT / "tests").rglob("*.py"))
    edits = [str(p.relative_to(ROOT)) for p in files if p != Path(__file__) and "sys.path" in p.read_text()]
    assert not edits, edits
