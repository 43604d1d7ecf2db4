"""The packages, built once per session from this checkout by the project's own scripts
(packaging/build-deb.sh, packaging/build-bundle.sh) into temp dirs deleted afterwards
(together some 700 MB, which pytest's kept temp dirs would otherwise pile up).

Both builds start together, as soon as the first test that needs one of them runs: the
.deb's is mostly pip unpacking and disk, the bundle's mostly PyInstaller's analysis on
the CPU, so on two cores they overlap. A session that needs only one builds only that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {"deb": "packaging/build-deb.sh", "bundle": "packaging/build-bundle.sh"}


@dataclass
class Build:
    what: str
    out: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str) -> Build:
        out = Path(tempfile.mkdtemp(prefix=f"braid-{name}-out-"))
        with (out.parent / f"{out.name}.log").open("wb") as log:
            # The python running the tests runs pip (the .deb) and PyInstaller (the bundle).
            proc = subprocess.Popen(["bash", SCRIPTS[name], "--out", str(out)], cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHON": sys.executable})
        return cls(SCRIPTS[name], out, proc)

    @property
    def log(self) -> Path:
        return self.out.parent / f"{self.out.name}.log"

    def result(self) -> Path:
        """The file the script printed last, once it has finished."""
        rc = self.proc.wait(timeout=900)
        printed = self.log.read_text(errors="replace")
        if rc != 0:
            raise AssertionError(f"{self.what} failed ({rc}):\n{printed[-4000:]}")
        return Path(printed.strip().splitlines()[-1])

    def remove(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.out, ignore_errors=True)
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def builds(request: pytest.FixtureRequest) -> Iterator[dict[str, Build]]:
    wanted = sorted({name for item in request.session.items for name in SCRIPTS
                     if name in getattr(item, "fixturenames", ())})
    started = {name: Build.start(name) for name in wanted}
    try:
        yield started
    finally:
        for build in started.values():
            build.remove()


@pytest.fixture(scope="session")
def deb(builds: dict[str, Build]) -> Path:
    path = builds["deb"].result()
    assert path.is_file() and path.suffix == ".deb", path
    return path


@pytest.fixture(scope="session")
def bundle(builds: dict[str, Build]) -> Path:
    path = builds["bundle"].result()
    assert path.is_file() and os.access(path, os.X_OK), path
    return path
