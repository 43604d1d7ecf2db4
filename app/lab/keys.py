"""WireGuard keys for the lab, made by `wg` with keys on stdin/stdout, never in argv."""

from __future__ import annotations

import base64
import subprocess


def _wg(args: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(
        ["wg", *args], input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def genkey() -> str:
    return _wg(["genkey"])


def pubkey(private_key: str) -> str:
    return _wg(["pubkey"], stdin=private_key + "\n")


def keypair() -> tuple[str, str]:
    """(private, public), both base64."""
    private = genkey()
    return private, pubkey(private)


def to_hex(key_b64: str) -> str:
    """wireguard-go's UAPI wants keys in hex."""
    return base64.b64decode(key_b64).hex()
