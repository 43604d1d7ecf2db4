"""A throwaway root to install the .deb into, for real, without touching this machine.

The machine's own / is the lower layer of an overlay whose upper layer is a temp dir:
inside, dpkg sees this machine's package database (so the .deb's dependencies are
checked against what is really installed), runs the maintainer scripts, creates the
group, enables the unit; every write lands in the upper layer, which is deleted after.
Each command runs in a private mount namespace (unshare) where the overlay is mounted
and chrooted into, with its own /proc, /dev, and empty /run and /tmp; the host's mounts
and every other engineer's processes never see it. Commands run one at a time (one
overlay mount on the layers at once).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_ENTER = r"""
set -e
base=$1; shared=$2; shift 2
m=$base/merged
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$m"
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
mount --rbind /sys "$m/sys"
mount -t tmpfs -o mode=0755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
mount --bind "$shared" "$m/mnt"
exec chroot "$m" "$@"
"""


@dataclass
class OverlayRoot:
    base: Path
    shared: Path  # the host directory seen as /mnt inside
    env: dict[str, str] = field(default_factory=lambda: {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
    })

    @classmethod
    def create(cls, shared: Path) -> OverlayRoot:
        # The upper layer in memory (/dev/shm is a tmpfs): the install writes some 400 MB
        # in ten thousand files, which a disk makes slow to write and slower to delete.
        shm = Path("/dev/shm")
        base = Path(tempfile.mkdtemp(prefix="braid-overlay-", dir=shm if shm.is_dir() else None))
        for sub in ("upper", "work", "merged"):
            (base / sub).mkdir()
        return cls(base, shared)

    def argv(self, *cmd: str) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", _ENTER, "enter", str(self.base), str(self.shared), *cmd]

    def run(self, *cmd: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in self.env.items()),
                               *self.argv(*cmd)], capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in the overlay root exited "
                                 f"{done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def destroy(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
