"""WireGuard keys, made by `wg` (wireguard-tools) with keys on stdin/stdout, never argv."""

from __future__ import annotations

import subprocess

from app.node.errors import NodeError


def _wg(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(["wg", *argv], input=stdin, capture_output=True, text=True,
                              check=False, timeout=10)
    except FileNotFoundError:
        raise NodeError("wg is not installed (it makes and reads WireGuard keys)",
                        "apt-get install --no-install-recommends wireguard-tools") from None
    if done.returncode != 0:
        # wg's complaint names no key: it gets the key on stdin and says "Key is not ..."
        raise NodeError(f"wg {argv[0]} failed: {done.stderr.strip()}", "is the key valid?")
    return done.stdout.strip()


def genkey() -> str:
    return _wg(["genkey"])


def pubkey(private_key: str) -> str:
    return _wg(["pubkey"], private_key + "\n")


def keypair() -> tuple[str, str]:
    """(private, public), both base64."""
    private = genkey()
    return private, pubkey(private)
