"""Run inside the overlay root by Debian's python3 (stdlib only; test_deb.py feeds it on
stdin): start the installed tray app offscreen, wait until its log says it is up, note
every shared library it loaded, quit it with SIGTERM, and find which Debian package each
library that Braid's own files link to comes from. Prints one JSON document."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

LIB = Path("/usr/lib/braid")
HOME = Path("/tmp/user")
LOG = HOME / "state" / "braid" / "braid.log"
# Loaded on a desktop, not offscreen: the X11 platform plugin and what only it needs.
DESKTOP_ONLY = ("plugins/platforms/libqxcb.so", "lib/libQt6XcbQpa.so.6")


def wait_for(text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = LOG.read_text() if LOG.exists() else ""
        if text in log:
            return log
        if proc.poll() is not None:
            raise SystemExit(f"braid app exited {proc.returncode} before {text!r}: {log}")
        time.sleep(0.05)
    raise SystemExit(f"no {text!r} in {LOG} after {timeout} s")


def needed(path: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def system_libs() -> dict[str, str]:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    for name, flags, path in re.findall(r"^\s+(\S+) \((.*?)\) => (\S+)$", out, re.M):
        if "x86-64" in flags or "64bit" in flags:
            found.setdefault(name, path)
    return found


def owners(paths: set[str]) -> dict[str, str]:
    """path -> the package that has it, by one `dpkg -S` for all (it reads the whole
    database each time). dpkg knows a file under the path its package gave, which with
    Debian 12's merged /usr may be /lib/... or /usr/lib/..., behind a link or not."""
    forms: dict[str, str] = {}
    for path in paths:
        for p in (path, os.path.realpath(path)):
            for form in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
                forms[form] = path
    out = subprocess.run(["dpkg", "-S", *sorted(forms)], capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        pkgs, _, form = line.partition(": ")
        if form in forms:
            found.setdefault(forms[form], pkgs.split(",")[0].split(":")[0].strip())
    return found


def main() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(HOME), "QT_QPA_PLATFORM": "offscreen",
           "XDG_STATE_HOME": str(HOME / "state"), "XDG_CONFIG_HOME": str(HOME / "config"),
           "XDG_RUNTIME_DIR": str(HOME / "run"), "LANG": "C.UTF-8"}
    (HOME / "run").mkdir(parents=True, mode=0o700)
    proc = subprocess.Popen(["/usr/bin/braid", "app", "--no-tray"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for("the app is up", proc)
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    log = wait_for("the app quit", proc) if proc.returncode == 0 else LOG.read_text()

    loaded = {line.split(None, 5)[5] for line in maps.splitlines()
              if len(line.split(None, 5)) == 6 and ".so" in line}
    ours = {p for p in loaded if p.startswith(f"{LIB}/")}
    qt = next(LIB.glob("venv/lib/python3*/site-packages/PySide6/Qt"))
    ours |= {str(qt / rel) for rel in DESKTOP_ONLY}
    bundled = {p.name for p in LIB.rglob("*.so*")}
    libs = system_libs()
    wanted = {(name, path) for path in sorted(ours) for name in needed(path)
              if name not in bundled}
    found = owners({libs[name] for name, _ in wanted if name in libs})
    packages: dict[str, list[str]] = {}
    unresolved: list[str] = []
    for name, path in sorted(wanted):
        pkg = found.get(libs.get(name, ""))
        if pkg is None:
            unresolved.append(f"{name} (needed by {path})")
        elif name not in packages.setdefault(pkg, []):
            packages[pkg].append(name)
    json.dump({"rc": proc.returncode, "stderr": err.decode(errors="replace"), "log": log,
               "ours_loaded": len(ours), "packages": packages, "unresolved": unresolved},
              sys.stdout)


if __name__ == "__main__":
    main()
