"""`braid import`, `braid profiles`, `braid profile show|delete`, end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from keyring.backends import SecretService

from app.cli.main import main
from app.core.profiles.store import ProfileStore
from app.core.secrets import SERVICE
from tests.util import unique_name, wg_keypair, wg_psk

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Conf:
    path: Path
    private: str
    psk: str
    peer_public: str


def write_conf(directory: Path, name: str, index: int, *, extra: str = "") -> Conf:
    private, _ = wg_keypair()
    _, peer_public = wg_keypair()
    psk = wg_psk()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.conf"
    path.write_text(
        "[Interface]\n"
        f"PrivateKey = {private}\n"
        f"Address = 198.19.{index}.2/32\n"
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
    assert "added gateway hk from" in out and "br-tk -> 198.18.0.1:51001" in out
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

    rc, out, _ = run(capsys, "profile", "delete", pname)
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
    assert "replaced gateway hk" in out and "added gateway tk" in out
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
        (["--name", "x"], "--name names one gateway"),
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
    other = write_conf(tmp_path / "o", "HK", 5)
    rc, _, err = run(capsys, "import", str(confs["hk"].path), str(other.path),
                     "--profile", unique_name("t", 6))
    assert rc == 2 and "both give gateway 'hk'" in err


def test_show_and_delete_missing_profile(capsys: pytest.CaptureFixture[str],
                                         config_dir: Path) -> None:
    rc, _, err = run(capsys, "profile", "show", "nope")
    assert rc == 2 and "no profile named 'nope'" in err and "braid import" in err
    assert run(capsys, "profile", "delete", "nope")[0] == 2


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
