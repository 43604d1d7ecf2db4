"""The map's layering, guarded: app/core imports no Qt, ever; app/helper imports nothing
of the client but the desired-state model it defines itself."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import app.core
import app.helper

QT = ("PySide6", "pyqtgraph", "qasync", "shiboken6")
ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_app_core_source_names_no_qt() -> None:
    for path in sorted((ROOT / "app" / "core").glob("*.py")):
        qt = {m for m in imported_modules(path) if m.split(".")[0] in QT}
        assert not qt, f"{path.relative_to(ROOT)} imports {sorted(qt)}"


def test_importing_all_of_app_core_loads_no_qt() -> None:
    """Also catches Qt arriving indirectly, through another module."""
    mods = [f"app.core.{m.name}" for m in pkgutil.iter_modules(app.core.__path__)]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {QT!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout


def test_app_helper_imports_nothing_of_the_client_nor_qt() -> None:
    allowed_app = ("app.helper",)
    for m in pkgutil.iter_modules(app.helper.__path__):
        path = ROOT / "app" / "helper" / f"{m.name}.py"
        for name in imported_modules(path):
            if name.split(".")[0] == "app":
                assert name.startswith(allowed_app), f"{path.name} imports {name}"
            else:
                assert name.split(".")[0] not in QT, f"{path.name} imports {name}"
