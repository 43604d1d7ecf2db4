"""The map's layering, guarded (docs/internals.md, "Package layout"):

- app/core imports no Qt, ever (directly or through another module), and neither the
  helper nor the lab;
- app/helper imports only itself and the contract (app/wire);
- app/wire, the contract, imports only itself: both sides may import it;
- app/node, the gateway and exit roles, imports the contract and the helper's kernel
  modules (netlink, nft, uapi, procs), nothing of the client: a node runs no client code.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import app.core

QT = ("PySide6", "pyqtgraph", "qasync", "shiboken6")
ROOT = Path(__file__).resolve().parents[2]

# package -> the app.* packages it may import (besides itself)
ALLOWED: dict[str, tuple[str, ...]] = {
    "app.wire": (),
    "app.helper": ("app.wire",),
    "app.core": ("app.wire",),
    "app.node": ("app.wire", "app.helper"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(package: str, root: Path = ROOT) -> list[str]:
    """Imports of ``package``'s modules that the layering forbids."""
    allowed = (package, *ALLOWED[package])
    found = []
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in QT or (top == "app" and not any(name == a or name.startswith(a + ".")
                                          for a in allowed)):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_map_allows(package: str) -> None:
    assert violations(package) == []


def test_a_planted_core_to_helper_import_is_caught(tmp_path: Path) -> None:
    core = tmp_path / "app" / "core"
    core.mkdir(parents=True)
    (core / "planted.py").write_text("from app.helper.reconcile import Reconciler\n")
    (core / "fine.py").write_text("from app.wire.state import DesiredState\n")
    assert violations("app.core", tmp_path) == [
        "app/core/planted.py imports app.helper.reconcile"]


def test_importing_all_of_app_core_loads_no_qt_helper_or_lab() -> None:
    """Also catches a forbidden module arriving indirectly, through another module."""
    mods = [m.name for m in pkgutil.walk_packages(app.core.__path__, "app.core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {QT!r}"
        " or n.startswith(('app.helper', 'app.lab'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout
