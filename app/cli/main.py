"""`braid`: the command line. Each area registers its own subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import app.lab.register  # noqa: F401  (the lab's targets: app/core/targets.py)
from app.cli import app_cmd, class_cmd, engine_cmd, gateway_cmd, lab_cmd, profile_cmd
from app.cli.helptext import polish
from app.core import logs
from app.core.errors import BraidError
from app.wire.version import package_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="braid",
        description=(
            "Braid: several WireGuard tunnels at once, each class of traffic on the "
            "path or paths that serve it best. With no command, starts the tray app."
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help=f"log debug detail, to stderr and to the log file ({logs.log_path()}; "
        "info and above without -v)",
    )
    parser.add_argument("--version", action="version", version=f"braid {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (profile_cmd, engine_cmd, class_cmd, lab_cmd, gateway_cmd, app_cmd):
        module.register(sub)
    polish(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.verbose)
    handler = getattr(args, "handler", None)
    if handler is None:
        handler = app_cmd.run_tray
    try:
        rc: int = handler(args)
    except BraidError as exc:
        print(f"braid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `braid ... | head`: the reader left; say nothing more, as other tools do.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
