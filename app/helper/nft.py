"""The nft table ``inet braid``: rendered here from a validated Marking, loaded atomically.

No string from a caller reaches nft: every number in the ruleset passed validation in
state.py, and names are never rendered.
"""

from __future__ import annotations

import subprocess

from app.helper.errors import KernelError
from app.helper.state import MARK_MASK, NFT_FAMILY, NFT_TABLE, Marking

TABLE = f"{NFT_FAMILY} {NFT_TABLE}"
DEFAULT_CLASS = "default"


def render(marking: Marking) -> str:
    """The table in nft's native syntax (nft 1.0.6 cannot express everything in JSON)."""
    mask = f"{MARK_MASK:#010x}"
    keep = f"{0xFFFFFFFF & ~MARK_MASK:#010x}"
    out = [
        f"table {TABLE} {{",
        "\tchain output {",
        # The route hook re-routes a packet whose mark changed here.
        "\t\ttype route hook output priority mangle; policy accept;",
        # WireGuard's own UDP sockets carry the bypass mark: never classify them.
        f"\t\tmeta mark & {mask} == {marking.bypass_mark:#010x} return",
        # Someone else's mark (another VPN, a container runtime): not ours to change.
        "\t\tmeta mark != 0x00000000 return",
        '\t\toifname "lo" return',
        # Replies of inbound connections must leave the way their requests came.
        "\t\tct direction reply return",
        # Stickiness: a flow keeps the path mark saved when it started.
        f"\t\tct mark & {mask} != 0x00000000 meta mark set ct mark & {mask} return",
        # Everything else is classified: new flows, but also flows that predate Braid and
        # packets conntrack has no entry for (untracked, or invalid such as the FIN of a
        # flow whose entry a flush removed). Letting those keep their route would send
        # them out through the main table, unencrypted: they go into a tunnel or meet the
        # class's unreachable rule instead. `ct mark set` is a no-op where there is no ct.
    ]
    for cls in marking.classes:
        # Until classifiers arrive, every flow is of class "default".
        if cls.name == DEFAULT_CLASS:
            mark = f"{cls.mark:#010x}"
            out.append(f"\t\tmeta mark set {mark} ct mark set ct mark & {keep} | {mark}")
    out.append("\t}")
    if marking.masquerade:
        out += [
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            # A flow routed into a tunnel after its source was chosen gets the tunnel's.
            '\t\toifname "br-*" masquerade',
            "\t}",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nft", *args], input=stdin, capture_output=True, text=True, check=False, timeout=30
    )


def exists() -> bool:
    return _nft(["list", "table", NFT_FAMILY, NFT_TABLE]).returncode == 0


def load(ruleset: str) -> None:
    """Replace the table in one transaction: declaring it first makes the delete valid
    whether or not it existed, and nothing is half-loaded if the new one is refused."""
    script = f"table {TABLE}\ndelete table {TABLE}\n{ruleset}"
    done = _nft(["-f", "-"], stdin=script)
    if done.returncode != 0:
        raise KernelError(f"nft refused table {TABLE}: {done.stderr.strip()}")


def delete() -> bool:
    """Remove the table if present; returns whether it was there."""
    if not exists():
        return False
    done = _nft(["delete", "table", NFT_FAMILY, NFT_TABLE])
    if done.returncode != 0:
        raise KernelError(f"nft could not delete table {TABLE}: {done.stderr.strip()}")
    return True
