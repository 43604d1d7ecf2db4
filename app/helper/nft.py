"""The nft table ``inet braid``: rendered here from a validated Marking, loaded atomically.

No string from a caller reaches nft: every number in the ruleset passed validation in
state.py, and names are never rendered.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess

from app.helper.errors import KernelError
from app.wire.state import MARK_MASK, NFT_FAMILY, NFT_TABLE, Marking

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


class _Nft:
    """libnftables in-process (what the nft binary is a front end to): a ruleset load
    costs ~0.2 ms instead of a ~13 ms process. The same text, the same atomic batch.
    Falls back to the binary where the library cannot be loaded."""

    def __init__(self) -> None:
        self._ctx: int | None = None
        self._lib: ctypes.CDLL | None = None
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            return
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            fn.argtypes = [ctypes.c_void_p]
        for fn in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx:
            return
        # Output and errors into buffers rather than the helper's stdout/stderr.
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, script: str) -> tuple[bool, str]:
        """Run nft commands; returns (succeeded, error text)."""
        if self._lib is None:
            done = subprocess.run(
                ["nft", "-f", "-"], input=script, capture_output=True, text=True,
                check=False, timeout=30,
            )  # fmt: skip
            return done.returncode == 0, done.stderr.strip()
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
        self._lib.nft_ctx_get_output_buffer(self._ctx)  # read, so it does not pile up
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return rc == 0, err.decode(errors="replace").strip()


@functools.cache
def _nft() -> _Nft:
    # Made on first use, in the helper's network namespace (the context's socket is
    # bound to the namespace it was opened in).
    return _Nft()


def _run(script: str) -> tuple[bool, str]:
    return _nft().run(script)


def load(ruleset: str) -> None:
    """Replace the table in one transaction: declaring it first makes the delete valid
    whether or not it existed, and nothing is half-loaded if the new one is refused."""
    ok, err = _run(f"table {TABLE}\ndelete table {TABLE}\n{ruleset}")
    if not ok:
        raise KernelError(f"nft refused table {TABLE}: {err}")


def delete() -> bool:
    """Remove the table if present; returns whether it was there."""
    if not _run(f"list table {TABLE}\n")[0]:
        return False
    ok, err = _run(f"delete table {TABLE}\n")
    if not ok:
        raise KernelError(f"nft could not delete table {TABLE}: {err}")
    return True
