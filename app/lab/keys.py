"""WireGuard keys for the lab: the node roles' (`wg` with keys on stdin, never argv)."""

from __future__ import annotations

from app.node.keys import genkey, keypair, pubkey

__all__ = ["genkey", "keypair", "pubkey"]
