"""AES-128-GCM against WireGuard's ChaCha20-Poly1305 on this CPU (docs/crypto.md).

python3 -m benchmarks.bench_cipher [--seconds S]

With `openssl speed -evp` (OpenSSL's tuned code for both: AES-NI/VAES for AES, AVX2 or
AVX-512 for ChaCha20), per CPU second so that a loaded machine measures the same: the
AEAD throughput for a 64-byte packet (a voice frame, an ACK) and a 1420-byte one (a full
WireGuard packet at Braid's MTU), AES-GCM's ratio to ChaCha20-Poly1305, and what either
costs in % of one core at 100 Mbit/s. Then the same with AES-NI and PCLMULQDQ masked
(OPENSSL_ia32cap), as on a CPU without them (many ARM routers and phones, older
Atoms): AES falls to table code and ChaCha20 does not care. And the key exchanges:
X25519 (WireGuard's) against ECDH P-256 (what an AES-GCM IPsec or TLS set-up would use).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

AEADS = ("chacha20-poly1305", "aes-128-gcm")  # baseline first
SIZES = (64, 1420)
# Clears AESNI (bit 57) and PCLMULQDQ (bit 33) of CPUID leaf 1. The ":~0x0" keeps leaf 7
# as it is: without a second word OpenSSL zeroes it, and that takes AVX2 (and VAES) away
# from ChaCha20 too, which halved its figure here.
MASK_AESNI = "~0x200000200000000:~0x0"
LINK_BPS = 100e6
FLAGS = ("aes", "pclmulqdq", "vaes", "vpclmulqdq", "avx2", "avx512f")


def cpu() -> tuple[str, list[str]]:
    info = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    have = set(flags.group(1).split()) if flags else set()
    return (model.group(1) if model else "unknown"), [f for f in FLAGS if f in have]


def aead_bytes_per_cpu_s(name: str, size: int, seconds: int, env: dict[str, str]) -> float:
    out = subprocess.run(
        ["openssl", "speed", "-mr", "-aead", "-seconds", str(seconds), "-bytes", str(size), "-evp",
         name], capture_output=True, text=True, check=True, env=env).stdout
    # "+F:<i>:<NAME>:<bytes per second of CPU time>" (openssl times with CPU time)
    found = re.search(r"^\+F:\d+:[^:]+:([\d.]+)$", out, re.M)
    if not found:
        raise SystemExit(f"openssl speed {name}: no figure in {out!r}")
    return float(found.group(1))


def ecdh_ops(seconds: int) -> dict[str, float]:
    out = subprocess.run(["openssl", "speed", "-mr", "-seconds", str(seconds), "ecdhx25519",
                          "ecdhp256"], capture_output=True, text=True, check=True).stdout
    # "+F5:<i>:<bits>:<ops per second>:<seconds per op>"; x25519 is 253 bits, P-256 256
    ops = {bits: float(rate) for bits, rate in re.findall(r"^\+F5:\d+:(\d+):([\d.]+):", out,
                                                          re.M)}
    return {"X25519": ops.get("253", 0.0), "P-256": ops.get("256", 0.0)}


def table(title: str, env: dict[str, str], seconds: int) -> None:
    print(f"\n{title}")
    print(f"{'packet':>8}  {'ChaCha20-Poly1305':>18}  {'AES-128-GCM':>12}  {'AES/ChaCha':>10}  "
          f"{'core % at 100 Mbit/s (ChaCha, AES)':>35}")
    for size in SIZES:
        chacha, aes = (aead_bytes_per_cpu_s(n, size, seconds, env) for n in AEADS)
        cost = [100 * LINK_BPS / 8 / v for v in (chacha, aes)]
        print(f"{size:>6} B  {chacha / 1e6:>13.0f} MB/s  {aes / 1e6:>7.0f} MB/s  "
              f"{aes / chacha:>9.2f}x  {cost[0]:>24.2f} %, {cost[1]:.2f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="per figure (default 3)")
    args = parser.parse_args()
    model, flags = cpu()
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    print(f"CPU: {model}; flags: {' '.join(flags) or 'none of ' + ' '.join(FLAGS)}")
    print(f"AES-NI: {'yes' if 'aes' in flags else 'no'}; {version}")
    env = dict(os.environ)
    env.pop("OPENSSL_ia32cap", None)
    table("AEAD throughput per CPU second, this CPU as it is", env, args.seconds)
    table("the same with AES-NI and PCLMULQDQ masked (a CPU without them)",
          {**env, "OPENSSL_ia32cap": MASK_AESNI}, args.seconds)
    ops = ecdh_ops(args.seconds)
    print(f"\nkey exchange: X25519 {ops['X25519']:.0f} ops/s, P-256 {ops['P-256']:.0f} ops/s "
          f"(X25519/P-256 {ops['X25519'] / ops['P-256']:.2f}x); a WireGuard handshake every "
          "2 minutes per tunnel")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
