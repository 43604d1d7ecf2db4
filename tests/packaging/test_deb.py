"""The .deb, built from this checkout and installed for real with dpkg, into a throwaway
overlay of this machine's root (tests/packaging/overlay.py): what it puts where, that
the installed commands run, that the tray app starts from the installed paths, that
every library it links to comes from a package it depends on, and that removing it
leaves nothing."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.overlay import OverlayRoot

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
UNIT = "/lib/systemd/system/braid-helper.service"


@dataclass
class Installed:
    root: OverlayRoot
    deb: Path
    dpkg_output: str


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Installed]:
    root = OverlayRoot.create(shared=deb.parent)
    try:
        # As on a machine that never had Braid: the postinst must make the group.
        root.run("sh", "-c", "! getent group braid >/dev/null || groupdel braid")
        done = root.run("dpkg", "-i", f"/mnt/{deb.name}", timeout=300)
        yield Installed(root, deb, done.stdout + done.stderr)
    finally:
        root.destroy()


def control_field(root: OverlayRoot, name: str) -> str:
    return root.run("dpkg-query", "-W", f"-f=${{{name}}}", "braid").stdout


def depends(root: OverlayRoot) -> set[str]:
    return {re.split(r"[\s(]", d.strip())[0]
            for d in control_field(root, "Depends").replace("|", ",").split(",")}


def test_the_package_installs_with_its_dependencies_and_the_group(installed: Installed) -> None:
    root = installed.root
    assert control_field(root, "Status") == "install ok installed"
    assert control_field(root, "Version") == VERSION
    assert {"python3", "wireguard-go", "wireguard-tools", "nftables", "iproute2"} <= depends(root)
    assert root.run("getent", "group", "braid").stdout.startswith("braid:")
    # Enabled as Debian enables a service (started where systemd runs: not in a chroot).
    wants = "/etc/systemd/system/multi-user.target.wants/braid-helper.service"
    assert root.run("readlink", wants).stdout.strip() == UNIT


def test_the_commands_run_from_the_installed_paths(installed: Installed) -> None:
    root = installed.root
    assert root.run("/usr/bin/braid", "--version").stdout == f"braid {VERSION}\n"
    assert root.run("/usr/bin/braid-helper", "--version").stdout == f"braid-helper {VERSION}\n"
    helper_help = root.run("/usr/bin/braid-helper", "--help").stdout
    assert "privileged helper" in helper_help and "--cleanup" in helper_help
    # They are the venv's, on Debian's python3, and import nothing from the checkout.
    assert root.run("readlink", "-f", "/usr/bin/braid").stdout.strip() == \
        "/usr/lib/braid/venv/bin/braid"
    where = root.run("/usr/lib/braid/venv/bin/python", "-c",
                     "import app, sys; print(app.__file__); print(sys.base_prefix)").stdout
    assert where.splitlines()[0].startswith("/usr/lib/braid/venv/lib/python3")
    assert where.splitlines()[1] == "/usr"
    # The real helper, from its installed path, against a network namespace of its own.
    cleanup = root.run("unshare", "--net", "/usr/bin/braid-helper", "--cleanup")
    assert cleanup.stdout.strip() == "nothing of Braid's was left", cleanup.stderr


def test_the_unit_runs_the_installed_helper_and_its_docs_are_there(
        installed: Installed) -> None:
    root = installed.root
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(root.run("cat", UNIT).stdout)
    program = shlex.split(unit["Service"]["ExecStart"])[0]
    assert program == "/usr/bin/braid-helper"
    doc = unit["Unit"]["Documentation"]
    assert doc.startswith("file://") and root.exists(doc.removeprefix("file://"))
    verify = root.run("systemd-analyze", "verify", UNIT, check=False)
    assert verify.returncode == 0 and not verify.stdout.strip(), verify.stdout + verify.stderr
    for name in ("README.md", "install.md", "crypto.md", "copyright", "screenshots/tray.png"):
        assert root.exists(f"/usr/share/doc/braid/{name}"), name


def test_the_desktop_file_and_the_icon(installed: Installed) -> None:
    root = installed.root
    desktop = "/usr/share/applications/braid.desktop"
    done = root.run("desktop-file-validate", desktop, check=False)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout
    entry = root.run("cat", desktop).stdout
    assert "Exec=braid app\n" in entry and "Icon=braid\n" in entry
    assert root.exists("/usr/share/icons/hicolor/scalable/apps/braid.svg")


def test_the_installed_app_starts_and_every_library_it_links_is_a_dependency(
        installed: Installed) -> None:
    """Started offscreen from /usr/bin/braid: up (its log says so), quit on SIGTERM.
    Every shared library Braid's own files load (and the X11 platform plugin a desktop
    loads) that is not inside the package comes from a package the .deb depends on."""
    root = installed.root
    script = (Path(__file__).parent / "installed_app.py").read_text()
    done = root.run("python3", "-", input=script, timeout=180)
    report = json.loads(done.stdout)
    assert report["rc"] == 0, report["stderr"]
    assert "the app is up (in a window: no system tray)" in report["log"]
    assert report["ours_loaded"] > 10  # Qt, numpy, ... really came from /usr/lib/braid
    assert report["unresolved"] == []
    missing = set(report["packages"]) - depends(root)
    assert not missing, {p: report["packages"][p] for p in missing}


def test_removing_it_leaves_nothing(installed: Installed) -> None:
    """Last in this module: it takes away what the tests above look at."""
    root = installed.root
    root.run("/usr/bin/braid", "--version")
    root.run("dpkg", "--purge", "braid")
    for path in ("/usr/bin/braid", "/usr/bin/braid-helper", "/usr/lib/braid", UNIT,
                 "/usr/share/applications/braid.desktop", "/usr/share/doc/braid",
                 "/etc/systemd/system/multi-user.target.wants/braid-helper.service"):
        assert not root.exists(path), path
    assert root.run("dpkg-query", "-W", "-f=${Status}", "braid",
                    check=False).stdout in ("", "unknown ok not-installed")
