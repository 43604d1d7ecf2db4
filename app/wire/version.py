"""Braid's version, for `braid --version`, `braid-helper --version` and the app.

One source of truth: ``[project] version`` in pyproject.toml. An installed Braid (pip,
the .deb's venv, the PyInstaller bundle, which copies the metadata) reads it from its
package metadata; a bare checkout run with PYTHONPATH and never installed reads the
pyproject.toml beside the package, so it never shows a made-up number.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DIST = "braid"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def package_version() -> str:
    """The version string, e.g. "0.1.0"; "unknown" when neither source exists."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        pass
    try:
        with _PYPROJECT.open("rb") as f:
            version = tomllib.load(f)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
    return str(version)
