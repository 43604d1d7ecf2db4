"""WireGuard keys for the lab, made by `wg` with keys on stdin/stdout, never in argv."""

from __future__ import annotations

from app.lab.proc import run_tool


def genkey() -> str:
    return run_tool(["wg", "genkey"]).strip()


def pubkey(private_key: str) -> str:
    return run_tool(["wg", "pubkey"], private_key + "\n").strip()


def keypair() -> tuple[str, str]:
    """(private, public), both base64."""
    private = genkey()
    return private, pubkey(private)
