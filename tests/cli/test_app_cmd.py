from __future__ import annotations

import pytest

from app.cli.main import build_parser, main


def test_braid_app_options_parse() -> None:
    args = build_parser().parse_args(["app", "--lab", "--paths", "--no-tray"])
    assert (args.lab, args.paths, args.no_tray, args.connect) == ("lab", True, True, None)
    args = build_parser().parse_args(["app", "--lab", "t1"])
    assert args.lab == "t1"


def test_without_a_display_braid_says_what_to_use_instead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "no display to show the tray app on" in err and "braid up" in err


def test_connect_and_lab_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "--connect", "x", "--lab", "t1"]) == 2
    assert "give only one of them" in capsys.readouterr().err
