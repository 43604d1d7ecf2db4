"""The PyInstaller bundle's entry point: `braid`, as the installed console script runs it.

Braid starts parts of itself as ``sys.executable -m MODULE ...`` (a background
`braid up`, the lab's relay, servers and helper). In the bundle ``sys.executable`` is
the bundle itself, so ``-m MODULE`` is done here the way python does it: the module
runs as ``__main__`` with the rest of the arguments. Every ``app`` module is in the
bundle (build-bundle.sh: --collect-submodules app) for that.
"""

from __future__ import annotations

import runpy
import sys


def run() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from app.cli.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
