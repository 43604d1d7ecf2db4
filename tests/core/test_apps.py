"""Apps with network activity, from the kernel's sock_diag and /proc (no `ss`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.core.apps import inet_sockets, list_apps, process_class
from tests.util import wait_until

HOLDER = ("import socket, sys, time\n"
          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
          "s.connect(('127.0.0.1', 9))\n"
          "print(s.getsockname()[1], flush=True)\n"
          "sys.stdin.read()\n")


def test_an_app_with_an_open_socket_is_listed_with_its_peer() -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert any(s.local.endswith(f":{port}") and s.remote == "127.0.0.1:9"
                   for s in inet_sockets())
        exe = str(Path(sys.executable).resolve())
        app = wait_until(lambda: next((a for a in list_apps(os.getuid())
                                       if proc.pid in a.pids), None), timeout=5)
        assert app.exe == exe and app.name == Path(exe).name
        assert app.sockets >= 1 and "127.0.0.1:9" in app.remotes
        assert app.cls is None and process_class(proc.pid) is None
    finally:
        proc.kill()
        proc.wait()
