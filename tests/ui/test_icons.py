from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.model import ConnState
from app.ui.icons import icon_path, state_icon

REPO = Path(__file__).resolve().parents[2]
ICON_NAMES = ["braid.svg", *(f"braid-{s.value}.svg" for s in ConnState)]


def test_every_state_has_its_own_icon(qtbot: QtBot) -> None:
    images = set()
    for state in ConnState:
        assert icon_path(state).is_file()
        icon = state_icon(state)
        assert not icon.isNull()
        image = icon.pixmap(32, 32).toImage()
        images.add(bytes(image.constBits()))
    assert len(images) == len(ConnState)
    assert not state_icon(None).isNull()


def test_the_icons_are_the_ones_under_resources() -> None:
    # resources/ is the one copy; the package reaches it through a symlink.
    for name in ICON_NAMES:
        assert (REPO / "resources" / "icons" / name).is_file()
    assert icon_path(None).parent.resolve() == (REPO / "resources" / "icons").resolve()


def test_an_installed_wheel_carries_and_loads_the_icons(tmp_path: Path) -> None:
    """Build the wheel as a user would (`pip wheel .`), install it by unpacking it, and
    load every icon from there: not from the source tree."""
    src = tmp_path / "src"
    src.mkdir()
    # A copy, so the build's own files (build/, *.egg-info) stay out of the shared tree.
    shutil.copytree(REPO / "app", src / "app", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "resources", src / "resources")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=240,
    )
    (wheel,) = tmp_path.glob("braid-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packed = set(zf.namelist())
        for name in ICON_NAMES:
            assert f"app/ui/resources/icons/{name}" in packed
        site = tmp_path / "site"
        zf.extractall(site)
    shutil.rmtree(src)  # nothing left to find the icons in but the install

    probe = (
        "from app.core.model import ConnState\n"
        "from app.ui.icons import icon_path, state_icon\n"
        "from PySide6.QtGui import QGuiApplication\n"
        "app = QGuiApplication([])\n"
        "for s in (None, *ConnState):\n"
        "    assert not state_icon(s).isNull(), s\n"
        "print(icon_path(None))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                         check=True, capture_output=True, text=True, timeout=60).stdout
    assert Path(out.strip()) == site / "app/ui/resources/icons/braid.svg"
