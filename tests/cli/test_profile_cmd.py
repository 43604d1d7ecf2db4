"""`braid import`, `braid profiles`, `braid profile show|delete`, end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import select
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from keyring.backends import SecretService

from app.cli.main import main
from app.core.profiles.store import ProfileStore
from app.core.secrets import SERVICE
from tests.core.test_wgconf import Keys, broken_files, key_material
from tests.util import unique_name, wait_until, wg_keypair, wg_psk

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Conf:
    path: Path
    private: str
    psk: str
    peer_public: str


def write_conf(directory: Path, name: str, index: int, *, extra: str = "",
               address: str | None = None, file_name: str | None = None) -> Conf:
    private, _ = wg_keypair()
    _, peer_public = wg_keypair()
    psk = wg_psk()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (file_name or f"{name}.conf")
    path.write_text(
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        f"Address = {address or f'198.19.{index}.2/32'}\n"
        "DNS = 198.19.0.1\n"
        "Table = off\n"
        f"{extra}"
        "[Peer]\n"
        f"PublicKey = {peer_public}\n"
        f"PresharedKey = {psk}\n"
        f"Endpoint = 198.18.0.1:{51000 + index}\n"
        "AllowedIPs = 0.0.0.0/0\n"
    )
    return Conf(path, private, psk, peer_public)


def keyring_get(profile: str, gateway: str, kind: str) -> str | None:
    value: str | None = SecretService.Keyring().get_password(
        SERVICE, f"{profile}/{gateway}/{kind}")
    return value


@pytest.fixture
def pname() -> str:
    return unique_name("t", 6)


@pytest.fixture
def confs(tmp_path: Path) -> dict[str, Conf]:
    return {name: write_conf(tmp_path, name, i) for i, name in enumerate(("hk", "tk", "sg"))}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_import_list_show_delete(capsys: pytest.CaptureFixture[str], config_dir: Path,
                                 confs: dict[str, Conf], pname: str) -> None:
    rc, out, err = run(capsys, "import", *(str(c.path) for c in confs.values()),
                       "--profile", pname)
    assert rc == 0, err
    assert out.splitlines()[0] == f"created profile {pname} (3 gateways)"
    assert "  added gateway hk (from hk.conf): br-hk -> 198.18.0.1:51000" in out
    assert "br-tk -> 198.18.0.1:51001" in out
    assert "Braid ignores Table" in err  # a warning, with file and line
    assert f"{confs['hk'].path}:5:" in err

    rc, out, _ = run(capsys, "profiles")
    assert rc == 0 and out == f"{pname}  hk, tk, sg\n"

    rc, text, _ = run(capsys, "profile", "show", pname)
    assert rc == 0 and "gateway sg" in text and confs["sg"].peer_public in text
    rc, js, _ = run(capsys, "profile", "show", pname, "--json")
    doc = json.loads(js)
    assert [g["name"] for g in doc["gateways"]] == ["hk", "tk", "sg"]
    assert doc["gateways"][1]["peer"]["endpoint"] == "198.18.0.1:51001"
    toml_text = (config_dir / "profiles" / f"{pname}.toml").read_text()
    for conf in confs.values():
        for secret in (conf.private, conf.psk):
            assert secret not in text and secret not in js and secret not in toml_text
        assert keyring_get(pname, conf.path.stem, "private") == conf.private
        assert keyring_get(pname, conf.path.stem, "preshared") == conf.psk

    rc, out, _ = run(capsys, "profile", "delete", pname, "--yes")
    assert rc == 0 and "deleted" in out
    assert run(capsys, "profiles")[1] == ""
    assert keyring_get(pname, "hk", "private") is None


def test_import_into_existing_profile_adds_and_replaces(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
        confs: dict[str, Conf], pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname, "--cost", "3")[0] == 0
    new_hk = write_conf(tmp_path / "new", "hk", 0)
    rc, out, _ = run(capsys, "import", str(new_hk.path), str(confs["tk"].path),
                     "--profile", pname)
    assert rc == 0
    assert out.splitlines()[0] == f"updated profile {pname} (2 gateways)"
    assert "  replaced gateway hk (from hk.conf)" in out and "added gateway tk" in out
    doc = json.loads(run(capsys, "profile", "show", pname, "--json")[1])
    assert [(g["name"], g["cost"]) for g in doc["gateways"]] == [("hk", 3.0), ("tk", 1.0)]
    assert doc["gateways"][0]["peer"]["public_key"] == new_hk.peer_public
    assert keyring_get(pname, "hk", "private") == new_hk.private

    # What a .conf cannot say (cost, the probe address) survives a re-import.
    store = ProfileStore()
    prof = store.load(pname)
    hk = dataclasses.replace(prof.gateways[0], probe="10.8.0.1")
    store.save(dataclasses.replace(prof, gateways=(hk, *prof.gateways[1:])), {})
    assert run(capsys, "import", str(new_hk.path), "--profile", pname)[0] == 0
    kept = store.load(pname).gateways[0]
    assert (kept.name, kept.cost, kept.probe) == ("hk", 3.0, "10.8.0.1")

    rc, out, _ = run(capsys, "import", str(confs["sg"].path), "--profile", pname,
                     "--name", "sg2")
    assert rc == 0 and "added gateway sg2" in out


def test_broken_file_saves_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   config_dir: Path, confs: dict[str, Conf],
                                   pname: str) -> None:
    broken = tmp_path / "bad.conf"
    broken.write_text(confs["sg"].path.read_text().replace("[Peer]\n", "[Peer]\n[Peer]\n"))
    rc, out, err = run(capsys, "import", str(confs["hk"].path), str(broken), "--profile", pname)
    assert rc == 2 and out == ""
    assert f"braid: error: {broken}:7: a second [Peer]" in err
    assert "what to do:" in err
    assert not (config_dir / "profiles").exists()
    assert keyring_get(pname, "hk", "private") is None


def test_broken_file_leaves_an_existing_profile_as_it_was(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
        confs: dict[str, Conf], pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname)[0] == 0
    path = config_dir / "profiles" / f"{pname}.toml"
    before = path.read_bytes()
    newer = write_conf(tmp_path / "x", "hk", 0)
    broken = tmp_path / "tk.conf"
    broken.write_text(confs["tk"].path.read_text().replace("Address = 198.19.1.2/32",
                                                           "Address = 198.19.1.2/33"))
    rc, _, err = run(capsys, "import", str(newer.path), str(broken), "--profile", pname)
    assert rc == 2 and f"{broken}:3: Address: '198.19.1.2/33'" in err
    assert path.read_bytes() == before
    assert keyring_get(pname, "hk", "private") == confs["hk"].private


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["--name", "x"], "1 --name for 2 files"),
        (["--name", "x", "--name", "y", "--name", "z"], "3 --name for 2 files"),
        (["--name", "x", "--name", "x"], "are both given the name 'x'"),
        (["--name", "x", "--name", "Y"], "'Y' is not a gateway name"),
        (["--cost", "-1"], "--cost -1.0 is not a number >= 0"),
    ],
)
def test_bad_options_save_nothing(capsys: pytest.CaptureFixture[str], config_dir: Path,
                                  confs: dict[str, Conf], pname: str, argv: list[str],
                                  phrase: str) -> None:
    rc, _, err = run(capsys, "import", str(confs["hk"].path), str(confs["tk"].path),
                     "--profile", pname, *argv)
    assert rc == 2 and phrase in err
    assert not (config_dir / "profiles").exists()


def test_bad_profile_name_and_same_gateway_twice(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, confs: dict[str, Conf]) -> None:
    rc, _, err = run(capsys, "import", str(confs["hk"].path), "--profile", "Work Stuff")
    assert rc == 2 and "'Work Stuff' is not a profile name" in err
    assert "choose a name such as work" in err
    rc, _, err = run(capsys, "import", str(confs["hk"].path), "--profile", "Work")
    assert rc == 2 and "'Work' is not a profile name (names are lower case)" in err
    assert "what to do: write it in lower case: work" in err and "braid profiles" not in err
    # Two files of one name: the second is told apart, not refused.
    other = write_conf(tmp_path / "o", "HK", 5)
    rc, out, err = run(capsys, "import", str(confs["hk"].path), str(other.path),
                       "--profile", unique_name("t", 6))
    assert rc == 0, err
    assert "  added gateway hk-2 (from HK.conf; the name hk is taken by hk.conf)" in out


def test_show_and_delete_missing_profile(capsys: pytest.CaptureFixture[str],
                                         config_dir: Path) -> None:
    rc, _, err = run(capsys, "profile", "show", "nope")
    assert rc == 2 and "no profile named 'nope'" in err and "braid import" in err
    rc, _, err = run(capsys, "profile", "delete", "nope")
    assert rc == 2 and "no profile named 'nope'" in err  # before asking anything


def test_profiles_lists_a_broken_profile_as_broken(capsys: pytest.CaptureFixture[str],
                                                   config_dir: Path) -> None:
    (config_dir / "profiles").mkdir()
    (config_dir / "profiles" / "junk.toml").write_text("this is not toml")
    rc, out, _ = run(capsys, "profiles")
    assert rc == 0 and out.startswith("junk  broken: profile file")
    summary = json.loads(run(capsys, "profiles", "--json")[1])
    assert summary[0]["name"] == "junk" and "error" in summary[0]


def braid(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_missing_keyring_says_how_to_fix_and_saves_nothing(
        config_dir: Path, confs: dict[str, Conf], pname: str) -> None:
    """A real `braid` process with no Secret Service on its bus."""
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    proc = braid("import", str(confs["hk"].path), "--profile", pname, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "braid: error: no Secret Service answers" in proc.stderr
    assert "gnome-keyring" in proc.stderr and "PYTHON_KEYRING_BACKEND" in proc.stderr
    assert not (config_dir / "profiles").exists()
    # Listing and showing need no keyring.
    assert braid("profiles", env=env).returncode == 0


def test_help_texts() -> None:
    env = dict(os.environ)
    for argv in (["import", "--help"], ["profiles", "--help"], ["profile", "show", "--help"],
                 ["profile", "delete", "--help"]):
        proc = braid(*argv, env=env)
        assert proc.returncode == 0 and "usage: braid" in proc.stdout, proc.stderr
    assert "keyring" in braid("import", "--help", env=env).stdout


# ---- providers' files, folders, names --------------------------------------------------

PROVIDER_FILES = ("se-got-wg-001.conf", "wg-JP-FREE-12.conf", "JP-FREE#12.conf")


def test_a_folder_of_providers_files(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     config_dir: Path, pname: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "Downloads"
    confs = [write_conf(folder, "", i, file_name=f) for i, f in enumerate(PROVIDER_FILES)]
    (folder / "README.txt").write_text("not a .conf\n")
    (folder / "old.conf.bak").write_text("not a .conf either\n")
    monkeypatch.chdir(folder)
    rc, out, err = run(capsys, "import", ".", "--profile", pname)
    assert rc == 0, err
    # In name order: "J" < "s" < "w".
    assert out.splitlines() == [
        f"created profile {pname} (3 gateways)",
        "  added gateway jp-free-12 (from JP-FREE#12.conf): br-jp-free-12 -> 198.18.0.1:51002",
        "  added gateway se-got-wg001 (from se-got-wg-001.conf): br-se-got-wg001 -> "
        "198.18.0.1:51000",
        "  added gateway wg-jp-free12 (from wg-JP-FREE-12.conf): br-wg-jp-free12 -> "
        "198.18.0.1:51001",
    ]
    assert keyring_get(pname, "se-got-wg001", "private") == confs[0].private
    show = run(capsys, "profile", "show", pname)[1]
    assert "  from file    se-got-wg-001.conf" in show

    # The same folder again: each file replaces the gateway it gave.
    rc, out, _ = run(capsys, "import", str(folder), "--profile", pname)
    assert rc == 0 and out.count("replaced gateway") == 3
    assert out.splitlines()[0] == f"updated profile {pname} (3 gateways)"


def test_folder_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
                       confs: dict[str, Conf], pname: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x\n")
    rc, _, err = run(capsys, "import", str(empty), "--profile", pname)
    assert rc == 2 and f"the folder {empty} has no .conf files" in err
    rc, _, err = run(capsys, "import", str(tmp_path), str(confs["hk"].path), "--profile", pname)
    assert rc == 2 and "is given twice" in err
    rc, _, err = run(capsys, "import", str(tmp_path), "--name", "x", "--profile", pname)
    assert rc == 2 and f"--name names files, but {tmp_path} is a folder" in err
    assert not (config_dir / "profiles").exists()


def test_name_once_per_file(capsys: pytest.CaptureFixture[str], config_dir: Path,
                            confs: dict[str, Conf], pname: str) -> None:
    rc, out, err = run(capsys, "import", str(confs["hk"].path), str(confs["tk"].path),
                       "--name", "hongkong", "--name", "tokyo", "--profile", pname)
    assert rc == 0, err
    assert "added gateway hongkong (from hk.conf)" in out
    assert "added gateway tokyo (from tk.conf)" in out
    assert keyring_get(pname, "tokyo", "private") == confs["tk"].private


def test_a_different_file_with_a_taken_name_is_added_beside_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
        confs: dict[str, Conf], pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname)[0] == 0
    other = write_conf(tmp_path / "x", "", 7, file_name="HK#1.conf")  # gives hk-1: free
    clash = write_conf(tmp_path / "y", "", 8, file_name="hk!.conf")  # gives hk: taken
    rc, out, _ = run(capsys, "import", str(other.path), str(clash.path), "--profile", pname)
    assert rc == 0
    assert "  added gateway hk-1 (from HK#1.conf)" in out
    assert "  added gateway hk-2 (from hk!.conf; the name hk is taken by hk.conf)" in out
    assert keyring_get(pname, "hk", "private") == confs["hk"].private  # untouched


@pytest.mark.parametrize(("mtu", "ok"), [(1279, False), (1280, True), (9000, True),
                                         (9001, False)])
def test_mtu_edges_at_import(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             config_dir: Path, pname: str, mtu: int, ok: bool) -> None:
    conf = write_conf(tmp_path, "hk", 0, extra=f"MTU = {mtu}\n")
    rc, _, err = run(capsys, "import", str(conf.path), "--profile", pname)
    if ok:
        assert rc == 0 and ProfileStore().load(pname).gateways[0].mtu == mtu
    else:
        assert rc == 2 and f"{conf.path}:6: MTU: {mtu} is out of range 1280..9000" in err
        assert "write it like MTU = 1420" in err
        assert not (config_dir / "profiles").exists()


def test_encodings_at_import(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             config_dir: Path, confs: dict[str, Conf], pname: str) -> None:
    text = confs["hk"].path.read_text().replace("\n", "\r\n")
    (tmp_path / "bom.conf").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "utf16.conf").write_bytes(text.encode("utf-16"))  # with its BOM
    rc, _, err = run(capsys, "import", str(tmp_path / "bom.conf"),
                       str(tmp_path / "utf16.conf"), "--profile", pname)
    assert rc == 0, err
    (tmp_path / "latin1.conf").write_bytes(("# Zürich\n" + text).encode("latin-1"))
    rc, _, err = run(capsys, "import", str(tmp_path / "latin1.conf"), "--profile", pname)
    assert rc == 2 and "latin1.conf:1: is not UTF-8 text (column 4 cannot be read)" in err
    assert "save the file as UTF-8" in err


# ---- shared exit ---------------------------------------------------------------------------

def test_shared_exit(capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
                     pname: str) -> None:
    one = "10.99.0.2/32"
    hk, tk = (write_conf(tmp_path, n, i, address=one) for i, n in enumerate(("hk", "tk")))
    rc, out, err = run(capsys, "import", str(hk.path), str(tk.path), "--profile", pname,
                       "--shared-exit")
    assert rc == 0, err
    assert out.splitlines()[0] == f"created profile {pname} (2 gateways, shared exit)"
    assert "shared exit: yes" in run(capsys, "profile", "show", pname)[1]
    assert json.loads(run(capsys, "profile", "show", pname, "--json")[1])["shared_exit"] is True
    toml_file = config_dir / "profiles" / f"{pname}.toml"
    assert "shared_exit = true" in toml_file.read_text()

    # More gateways keep it shared; one with another address is refused, by file.
    sg = write_conf(tmp_path, "sg", 2, address=one)
    assert run(capsys, "import", str(sg.path), "--profile", pname)[0] == 0
    assert ProfileStore().load(pname).shared_exit
    before = toml_file.read_bytes()
    us = write_conf(tmp_path, "us", 3)
    rc, _, err = run(capsys, "import", str(us.path), "--profile", pname)
    assert rc == 2
    assert "shares an exit, so every gateway needs the same inner address as gateway 'hk' " \
           "(from hk.conf) (10.99.0.2), but gateway 'us' (from us.conf) has 198.19.3.2" in err
    assert toml_file.read_bytes() == before and keyring_get(pname, "us", "private") is None

    # --no-shared-exit: each gateway its own exit again.
    rc, out, _ = run(capsys, "import", str(us.path), "--profile", pname, "--no-shared-exit")
    assert rc == 0 and out.splitlines()[0] == f"updated profile {pname} (4 gateways)"
    assert "shared exit: no" in run(capsys, "profile", "show", pname)[1]


def test_shared_exit_refused_for_a_new_profile_names_the_files(
        capsys: pytest.CaptureFixture[str], config_dir: Path, confs: dict[str, Conf],
        pname: str) -> None:
    rc, _, err = run(capsys, "import", *(str(c.path) for c in confs.values()),
                     "--profile", pname, "--shared-exit")
    assert rc == 2
    assert "gateway 'tk' (from tk.conf) has 198.19.1.2; gateway 'sg' (from sg.conf) has " \
           "198.19.2.2" in err
    assert not (config_dir / "profiles").exists()


# ---- profile show: probe target, preshared key -------------------------------------------

def test_show_says_probe_target_and_preshared_key(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
        confs: dict[str, Conf], pname: str) -> None:
    no_psk = tmp_path / "np" / "tk.conf"
    no_psk.parent.mkdir()
    no_psk.write_text("\n".join(line for line in confs["tk"].path.read_text().splitlines()
                                if not line.startswith("PresharedKey")) + "\n")
    assert run(capsys, "import", str(confs["hk"].path), str(no_psk), "--profile", pname)[0] == 0
    store = ProfileStore()
    prof = store.load(pname)
    store.save(dataclasses.replace(prof, gateways=(
        dataclasses.replace(prof.gateways[0], probe="198.19.0.1"), prof.gateways[1])), {})

    text = run(capsys, "profile", "show", pname)[1]
    hk, tk = text.split("gateway tk")
    assert "  probe        198.19.0.1" in hk and "  preshared    yes (in the keyring)" in hk
    assert "  probe        default (first host of the tunnel network)" in tk
    assert "  preshared    no" in tk
    doc = json.loads(run(capsys, "profile", "show", pname, "--json")[1])
    assert [(g["probe"], g["has_preshared_key"]) for g in doc["gateways"]] == [
        ("198.19.0.1", True), (None, False)]
    for secret in (confs["hk"].private, confs["hk"].psk, confs["tk"].private):
        assert secret not in text and secret not in json.dumps(doc)

    # Without a keyring, still shown, with what is not known said so.
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    proc = braid("profile", "show", pname, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("  preshared    unknown (no keyring)") == 2
    proc = braid("profile", "show", pname, "--json", env=env)
    assert [g["has_preshared_key"] for g in json.loads(proc.stdout)["gateways"]] == [None, None]


def test_show_knows_of_a_preshared_key_while_the_keyring_is_locked(
        tmp_path: Path, confs: dict[str, Conf]) -> None:
    """Asking whether a key exists needs no unlocked keyring, and unlocks nothing."""
    script = (
        "import secretstorage, sys\n"
        "from app.cli.main import main\n"
        f"assert main(['import', {str(confs['hk'].path)!r}, '--profile', 'tlocked']) == 0\n"
        "collection = secretstorage.Collection(secretstorage.dbus_init())\n"
        "collection.lock()\n"
        "sys.exit(main(['profile', 'show', 'tlocked']) + 10 * (not collection.is_locked()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["BRAID_CONFIG_DIR"] = str(tmp_path / "cfg")
    proc = subprocess.run([str(REPO / "scripts" / "with-keyring.sh"), sys.executable, "-c",
                           script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "  preshared    yes (in the keyring)" in proc.stdout


# ---- profile delete asks first --------------------------------------------------------------

def on_terminal(argv: list[str], answer: str) -> tuple[int, str]:
    """Run `braid ARGV` with a pseudo-terminal as its stdin/stdout, answer its question."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", *argv], cwd=REPO,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""

    def read() -> bool:
        """Take what the terminal has; True once it is closed (the process is gone)."""
        nonlocal output
        if not select.select([leader], [], [], 0.05)[0]:
            return False
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: nothing holds the other end any more
            return True
        output += chunk
        return not chunk

    try:
        wait_until(lambda: read() or b"[y/N]" in output, timeout=30, message="nothing asked")
        os.write(leader, answer.encode() + b"\n")
        wait_until(read, timeout=30, message="braid did not finish")
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_delete_asks_on_a_terminal(capsys: pytest.CaptureFixture[str], config_dir: Path,
                                   confs: dict[str, Conf], pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), str(confs["tk"].path),
               "--profile", pname)[0] == 0
    rc, out = on_terminal(["profile", "delete", pname], "n")
    assert f"delete profile {pname} (2 gateways: hk, tk) and its keys in the keyring? [y/N]" \
        in out
    assert rc == 1 and f"kept profile {pname}" in out
    assert ProfileStore().exists(pname) and keyring_get(pname, "hk", "private")
    rc, out = on_terminal(["profile", "delete", pname], "y")
    assert rc == 0 and f"deleted profile {pname} and its keys" in out
    assert not ProfileStore().exists(pname) and keyring_get(pname, "hk", "private") is None


def test_delete_without_a_terminal_needs_yes(capsys: pytest.CaptureFixture[str],
                                             config_dir: Path, confs: dict[str, Conf],
                                             pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname)[0] == 0
    proc = braid("profile", "delete", pname, env=dict(os.environ))  # stdin: not a terminal
    assert proc.returncode == 2
    assert "there is no terminal to ask on" in proc.stderr
    assert f"braid profile delete {pname} --yes" in proc.stderr
    assert ProfileStore().exists(pname)
    rc, _, _ = run(capsys, "profile", "delete", pname, "-y")
    assert rc == 0 and not ProfileStore().exists(pname)


# ---- no key in anything `braid import` prints ------------------------------------------------

def test_no_key_in_any_import_output(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     config_dir: Path, pname: str) -> None:
    """Every broken file of the corpus (tests/core/test_wgconf.py), through the CLI:
    stdout, stderr and the warnings, scanned for the file's keys and any key-like run."""
    keys = Keys(private=wg_keypair()[0], peer_public=wg_keypair()[1], psk=wg_psk())
    outputs = []
    for name, text in broken_files(keys).items():
        path = tmp_path / f"{name}.conf"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        rc, out, err = run(capsys, "import", str(path), "--profile", pname)
        outputs.append((name, rc, out + err))
    assert sum(rc == 2 for _, rc, _ in outputs) >= len(outputs) - 3
    for name, _, text in outputs:
        assert not key_material(text, keys.private, keys.psk), (name, text)


@pytest.mark.parametrize(("dns", "phrase"), [
    ("127.0.0.53", "DNS: '127.0.0.53' cannot be a gateway's DNS server"),
    ("fe80::1%eth0", "DNS: "),
    ("198.19.0.1, corp example", "DNS: 'corp example' is neither an IP address nor a search "
                                 "domain"),
    ("198.19.0.1, -corp.example", "is neither an IP address nor a search domain"),
])
def test_bad_dns_names_the_field_and_changes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, config_dir: Path,
        confs: dict[str, Conf], pname: str, dns: str, phrase: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname)[0] == 0
    path = config_dir / "profiles" / f"{pname}.toml"
    before = path.read_bytes()
    rc, text, _ = run(capsys, "profile", "show", pname)
    assert rc == 0 and "dns while connected: 198.19.0.1 for every name" in text
    bad = tmp_path / "tk.conf"
    bad.write_text(confs["tk"].path.read_text().replace("DNS = 198.19.0.1", f"DNS = {dns}"))
    rc, out, err = run(capsys, "import", str(bad), "--profile", pname)
    assert rc == 2 and out == "", err
    assert f"{bad}:4: {phrase}" in err or (f"{bad}:4: " in err and phrase in err), err
    assert path.read_bytes() == before
    assert keyring_get(pname, "tk", "private") is None


def test_a_hand_edited_profile_with_bad_dns_is_refused_naming_the_field(
        capsys: pytest.CaptureFixture[str], config_dir: Path, confs: dict[str, Conf],
        pname: str) -> None:
    assert run(capsys, "import", str(confs["hk"].path), "--profile", pname)[0] == 0
    path = config_dir / "profiles" / f"{pname}.toml"
    text = path.read_text()
    assert '"198.19.0.1"' in text
    path.write_text(text.replace('"198.19.0.1"', '"nameserver 6.6.6.6"'))
    before = path.read_bytes()
    rc, out, err = run(capsys, "profile", "show", pname)
    assert rc == 2 and out == ""
    assert "dns" in err and "'nameserver 6.6.6.6' is neither an IP address nor a search " \
        "domain" in err, err
    assert path.read_bytes() == before
