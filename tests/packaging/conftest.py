"""The packages, built once per session from this checkout by the project's own scripts
(packaging/build-deb.sh, packaging/build-bundle.sh) into temp dirs deleted afterwards
(together some 700 MB, which pytest's kept temp dirs would otherwise pile up)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _build(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=env)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def deb() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="braid-deb-out-"))
    try:
        printed = _build(["bash", "packaging/build-deb.sh", "--out", str(out)],
                         "packaging/build-deb.sh", env={**os.environ, "PYTHON": sys.executable})
        path = Path(printed.strip().splitlines()[-1])
        assert path.is_file() and path.parent == out, printed
        yield path
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def bundle() -> Iterator[Path]:
    """The bundle, built with the python running the tests (which has pyinstaller: the
    test extras)."""
    out = Path(tempfile.mkdtemp(prefix="braid-bundle-out-"))
    try:
        printed = _build(["bash", "packaging/build-bundle.sh", "--out", str(out)],
                         "packaging/build-bundle.sh",
                         env={**os.environ, "PYTHON": sys.executable})
        path = Path(printed.strip().splitlines()[-1])
        assert path.is_file() and os.access(path, os.X_OK), printed
        yield path
    finally:
        shutil.rmtree(out, ignore_errors=True)
