from __future__ import annotations

from pytestqt.qtbot import QtBot

from app.core.model import ConnState
from app.ui.icons import icon_path, state_icon


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
