"""The profile store against the session's real Secret Service (tests/conftest.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from keyring.backends import SecretService

from app.core.errors import BraidError
from app.core.profiles.codec import profile_to_toml
from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile, Weights
from app.core.profiles.store import ProfileStore
from app.core.secrets import SERVICE, KeyStore, key_user, resolve_backend
from tests.conftest import KeyringSession
from tests.util import unique_name, wg_keypair, wg_psk

REPO = Path(__file__).resolve().parents[2]


def make_gateway(name: str, index: int = 0) -> tuple[Gateway, GatewaySecrets]:
    private, _ = wg_keypair()
    _, peer_public = wg_keypair()
    gw = Gateway(
        name=name, interface=f"br-{name}", addresses=(f"198.19.{index}.2/32",),
        dns=("198.19.0.1",), mtu=1380, listen_port=None,
        peer=Peer(public_key=peer_public, endpoint=f"198.18.0.1:{51000 + index}",
                  allowed_ips=("0.0.0.0/0",), persistent_keepalive=25),
        cost=1.0 + index,
    )
    return gw, GatewaySecrets(private_key=private, preshared_key=wg_psk())


def secret_service_get(user: str) -> str | None:
    """Read the Secret Service directly, not through Braid's code."""
    value: str | None = SecretService.Keyring().get_password(SERVICE, user)
    return value


@pytest.fixture
def pname() -> str:
    # The keyring is the session's: a unique profile name keeps tests' keys apart.
    return unique_name("t", 6)


@pytest.fixture
def store(config_dir: Path) -> ProfileStore:
    return ProfileStore()


def test_round_trip_through_toml_and_secret_service(
        store: ProfileStore, config_dir: Path, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    tk, tk_keys = make_gateway("tk", 1)
    profile = Profile(name=pname, gateways=(hk, tk), weights=Weights(0.5, 0.2, 0.2, 0.1),
                      lab="lab")
    store.save(profile, {"hk": hk_keys, "tk": tk_keys})

    assert store.config_dir == config_dir
    assert store.names() == [pname]
    assert store.load(pname) == profile
    assert store.load_secrets(profile) == {"hk": hk_keys, "tk": tk_keys}
    assert secret_service_get(f"{pname}/hk/private") == hk_keys.private_key
    assert secret_service_get(f"{pname}/tk/preshared") == tk_keys.preshared_key

    path = config_dir / "profiles" / f"{pname}.toml"
    text = path.read_text()
    for secret in (hk_keys.private_key, hk_keys.preshared_key, tk_keys.private_key,
                   tk_keys.preshared_key):
        assert secret and secret not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_default_config_dir_is_platformdirs(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv("BRAID_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert ProfileStore().config_dir == tmp_path / "braid"
    assert ProfileStore(tmp_path / "x").profiles_dir == tmp_path / "x" / "profiles"


def test_save_replaces_gateways_and_forgets_old_keys(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    tk, tk_keys = make_gateway("tk", 1)
    store.save(Profile(name=pname, gateways=(hk, tk)), {"hk": hk_keys, "tk": tk_keys})

    # A new hk without a preshared key; tk leaves the profile.
    hk2, hk2_keys = make_gateway("hk", 0)
    hk2_keys = replace(hk2_keys, preshared_key=None)
    store.save(Profile(name=pname, gateways=(hk2,)), {"hk": hk2_keys})

    assert store.load(pname).gateways == (hk2,)
    assert store.load_secrets(store.load(pname)) == {"hk": hk2_keys}
    assert secret_service_get(f"{pname}/hk/preshared") is None
    assert secret_service_get(f"{pname}/tk/private") is None
    assert secret_service_get(f"{pname}/tk/preshared") is None


def test_save_keeps_keys_of_gateways_given_no_secrets(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    store.save(Profile(name=pname, gateways=(replace(hk, cost=5.0),)), {})
    assert store.load(pname).gateways[0].cost == 5.0
    assert store.load_secrets(store.load(pname))["hk"] == hk_keys


def test_probe_address_is_kept_and_written_only_when_set(
        store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    sg, sg_keys = make_gateway("sg", 1)
    store.save(Profile(name=pname, gateways=(replace(hk, probe="10.8.0.1"), sg)),
               {"hk": hk_keys, "sg": sg_keys})
    loaded = store.load(pname)
    assert [gw.probe for gw in loaded.gateways] == ["10.8.0.1", None]
    text = store.path(pname).read_text()
    assert text.count("probe = ") == 1 and 'probe = "10.8.0.1"' in text


def test_failed_toml_write_rolls_the_keyring_back(config_dir: Path, pname: str) -> None:
    store = ProfileStore()
    hk, hk_keys = make_gateway("hk", 0)
    store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    new_hk, new_hk_keys = make_gateway("hk", 0)
    sg, sg_keys = make_gateway("sg", 2)
    # A real failure: the profiles dir becomes unwritable (root ignores modes, so make
    # the target a directory: os.replace cannot put a file over it).
    target = config_dir / "profiles" / f"{pname}.toml"
    before = target.read_bytes()
    target.unlink()
    target.mkdir()
    try:
        with pytest.raises(BraidError, match="cannot write profile"):
            store.save(Profile(name=pname, gateways=(new_hk, sg)),
                       {"hk": new_hk_keys, "sg": sg_keys})
    finally:
        target.rmdir()
        target.write_bytes(before)
    assert secret_service_get(f"{pname}/hk/private") == hk_keys.private_key
    assert secret_service_get(f"{pname}/hk/preshared") == hk_keys.preshared_key
    assert secret_service_get(f"{pname}/sg/private") is None
    assert secret_service_get(f"{pname}/sg/preshared") is None


def test_gateway_without_keys_anywhere_is_refused(store: ProfileStore, pname: str) -> None:
    hk, _ = make_gateway("hk", 0)
    with pytest.raises(BraidError, match="has no key in the keyring"):
        store.save(Profile(name=pname, gateways=(hk,)), {})
    assert store.names() == []


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda p: replace(p, name="Bad Name"), "is not a profile name"),
        (lambda p: replace(p, gateways=()), "has no gateways"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], interface="eth0"),)),
         "interface: 'eth0' is not a Braid interface name"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], addresses=("x",)),)),
         "addresses: 'x' is not an IP address"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], cost=-1.0),)),
         "cost: -1.0 is not a number >= 0"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], probe="gw.example"),)),
         "probe: 'gw.example' is not an IP address"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], probe="fd00::1"),)),
         "probe: 'fd00::1' is not an IPv4 address"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], probe="127.0.0.1"),)),
         "probe: '127.0.0.1' cannot answer probes"),
        (lambda p: replace(p, gateways=p.gateways * 2), "two gateways have the name 'hk'"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], source="a\x1b[2J.conf"),)),
         "source: 'a\\x1b[2J.conf' is not a file name"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], source="dir/hk.conf"),)),
         "is not a file name"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], addresses=("127.0.0.2/32",)),)),
         "addresses: '127.0.0.2/32' cannot be a tunnel's address"),
        (lambda p: replace(p, gateways=(replace(p.gateways[0], listen_port=51820),
                                        replace(p.gateways[0], name="tk", interface="br-tk",
                                                listen_port=51820))),
         "gateway 'hk' and gateway 'tk' both have ListenPort 51820"),
        (lambda p: replace(p, shared_exit=True, gateways=(
            p.gateways[0], replace(p.gateways[0], name="tk", interface="br-tk",
                                   addresses=("198.19.9.2/32",), source="tk.conf"))),
         "but gateway 'tk' (from tk.conf) has 198.19.9.2"),
        (lambda p: replace(p, weights=Weights(0, 0, 0, 0)), "all weights are 0"),
        (lambda p: replace(p, weights=Weights(loss=-1.0)),
         "weights.loss: -1.0 is not a number >= 0"),
    ],
)
def test_invalid_profiles_are_refused_before_any_write(
        store: ProfileStore, pname: str, change: Callable[[Profile], Profile], phrase: str
) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    with pytest.raises(BraidError) as err:
        store.save(change(Profile(name=pname, gateways=(hk,))), {"hk": hk_keys})
    assert phrase in err.value.what
    assert store.names() == []
    assert secret_service_get(f"{pname}/hk/private") is None


TK_DIFFERENT_ADDRESS = f"""
[[gateways]]
name = "tk"
interface = "br-tk"
addresses = ["198.19.7.2/32"]

[gateways.peer]
public_key = "{wg_keypair()[1]}"
allowed_ips = ["0.0.0.0/0"]
"""


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda t: t.replace("version = 1", "version = 9"), "format version 9"),
        (lambda t: t + "\n[oops\n", "is broken: "),
        (lambda t: t.replace("mtu = 1380", "mtu = 1380\nmtuu = 1"), "unknown key 'mtuu'"),
        (lambda t: t.replace("mtu = 1380", 'mtu = "big"'), "mtu must be a whole number"),
        (lambda t: t.replace("mtu = 1380", "mtu = 1380\nprobe = 10"), "probe must be a string"),
        (lambda t: t.replace('interface = "br-hk"', 'interface = "eth0"'),
         "not a Braid interface name"),
        (lambda t: t.replace('name = "', 'name = "x', 1), "names itself"),
        (lambda t: t.replace("version = 1", "version = 1\nshared_exit = 1"),
         "shared_exit must be true or false"),
        (lambda t: t.replace("version = 1", "version = 1\nshared_exit = true")
         + TK_DIFFERENT_ADDRESS, "shares an exit, so every gateway needs the same inner"),
        (lambda t: t.replace("mtu = 1380", "mtu = 1380\nsource = 7"),
         "source must be a string"),
    ],
)
def test_broken_profile_file_is_an_error_naming_it(
        store: ProfileStore, pname: str, edit: Callable[[str], str], phrase: str) -> None:
    hk, _ = make_gateway("hk", 0)
    path = store.path(pname)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(edit(profile_to_toml(Profile(name=pname, gateways=(hk,)))))
    with pytest.raises(BraidError) as err:
        store.load(pname)
    assert str(path) in err.value.what and phrase in err.value.what, err.value.what
    assert "braid profile delete" in err.value.fix


def test_source_is_kept_and_written_only_when_set(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    sg, sg_keys = make_gateway("sg", 1)
    store.save(Profile(name=pname, gateways=(replace(hk, source="HK #1.conf"), sg),
                       shared_exit=False), {"hk": hk_keys, "sg": sg_keys})
    assert [gw.source for gw in store.load(pname).gateways] == ["HK #1.conf", None]
    text = store.path(pname).read_text()
    assert text.count("source = ") == 1 and "shared_exit" not in text


def test_shared_exit_round_trips(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    tk, tk_keys = make_gateway("tk", 1)
    tk = replace(tk, addresses=("198.19.0.2/24",))  # the same host, with its subnet
    profile = Profile(name=pname, gateways=(hk, tk), shared_exit=True)
    store.save(profile, {"hk": hk_keys, "tk": tk_keys})
    assert store.load(pname) == profile
    assert "shared_exit = true" in store.path(pname).read_text()


def test_preshared_keys_are_known_without_reading_them(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    tk, tk_keys = make_gateway("tk", 1)
    store.save(Profile(name=pname, gateways=(hk, tk)),
               {"hk": hk_keys, "tk": replace(tk_keys, preshared_key=None)})
    assert ProfileStore().has_preshared_keys(store.load(pname)) == {"hk": True, "tk": False}


def test_profile_name_errors_say_what_to_write(store: ProfileStore) -> None:
    with pytest.raises(BraidError) as err:
        store.path("Work")
    assert "(names are lower case)" in err.value.what
    assert err.value.fix == "write it in lower case: work"
    with pytest.raises(BraidError) as err:
        store.path("my profile")
    assert err.value.fix == "choose a name such as work or home-2"


def test_profile_name_length_edges(store: ProfileStore) -> None:
    assert store.path("a" * 32).name == "a" * 32 + ".toml"
    with pytest.raises(BraidError, match="is not a profile name"):
        store.path("a" * 33)


def test_missing_profile(store: ProfileStore) -> None:
    with pytest.raises(BraidError, match="no profile named 'nope'"):
        store.load("nope")
    with pytest.raises(BraidError, match="no profile named 'nope'"):
        store.delete("nope")
    with pytest.raises(BraidError, match="is not a profile name"):
        store.load("../etc/passwd")


def test_delete_removes_file_and_keys(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    store.delete(pname)
    assert store.names() == []
    assert secret_service_get(f"{pname}/hk/private") is None
    assert secret_service_get(f"{pname}/hk/preshared") is None


def test_delete_of_a_broken_profile_still_removes_its_keys(
        store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    path = store.path(pname)
    path.write_text(path.read_text().replace("version = 1", "version = 7"))
    store.delete(pname)
    assert not path.exists()
    assert secret_service_get(f"{pname}/hk/private") is None


def test_missing_key_in_keyring_says_how_to_fix(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    profile = Profile(name=pname, gateways=(hk,))
    store.save(profile, {"hk": hk_keys})
    KeyStore().delete(key_user(pname, "hk", "private"))
    with pytest.raises(BraidError, match="no private key for gateway 'hk'") as err:
        store.load_secrets(profile)
    assert f"braid import FILE.conf --profile {pname} --name hk" in err.value.fix


# ---- choosing a keyring backend ---------------------------------------------------------

def test_session_uses_the_secret_service() -> None:
    assert type(resolve_backend()).__module__ == "keyring.backends.SecretService"


def test_no_secret_service_refuses_plaintext_fallback(monkeypatch: pytest.MonkeyPatch,
                                                      store: ProfileStore, pname: str) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    hk, hk_keys = make_gateway("hk", 0)
    with pytest.raises(BraidError) as err:
        store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    assert "unencrypted" in err.value.what or "no keyring backend" in err.value.what
    assert "gnome-keyring" in err.value.fix and "PYTHON_KEYRING_BACKEND" in err.value.fix
    assert store.names() == []


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring",
                                     "keyring.backends.null.Keyring"])
def test_fail_and_null_backends_are_refused(monkeypatch: pytest.MonkeyPatch,
                                            backend: str) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    with pytest.raises(BraidError, match="cannot store keys") as err:
        resolve_backend()
    assert "Secret Service" in err.value.fix


def test_unknown_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Backend")
    with pytest.raises(BraidError, match="cannot be loaded"):
        resolve_backend()


def test_plaintext_backend_chosen_explicitly_is_used(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: ProfileStore,
        pname: str) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    hk, hk_keys = make_gateway("hk", 0)
    profile = Profile(name=pname, gateways=(hk,))
    ProfileStore().save(profile, {"hk": hk_keys})
    assert ProfileStore().load_secrets(profile) == {"hk": hk_keys}
    assert secret_service_get(f"{pname}/hk/private") is None


def test_locked_keyring_says_unlock_it() -> None:
    """A private keyring (scripts/with-keyring.sh), locked, then asked for a key."""
    script = (
        "import secretstorage\n"
        "from app.core.errors import BraidError\n"
        "from app.core.secrets import KeyStore\n"
        "store = KeyStore()\n"
        "store.set('tlock/hk/private', 'x')\n"
        "secretstorage.get_default_collection(secretstorage.dbus_init()).lock()\n"
        "try:\n"
        "    store.get('tlock/hk/private')\n"
        "except BraidError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    out = subprocess.run(
        [str(REPO / "scripts" / "with-keyring.sh"), sys.executable, "-c", script],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "the keyring is locked" in out
    assert "unlock your keyring" in out


def test_with_keyring_reuses_a_running_secret_service(keyring_session: KeyringSession) -> None:
    """Under the session's keyring, scripts/with-keyring.sh starts nothing of its own."""
    out = subprocess.run(
        [str(REPO / "scripts" / "with-keyring.sh"), "sh", "-c",
         "echo $DBUS_SESSION_BUS_ADDRESS"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    assert out == keyring_session.bus_address


def test_hand_edited_values_load_in_canonical_form(store: ProfileStore, pname: str) -> None:
    hk, hk_keys = make_gateway("hk", 0)
    store.save(Profile(name=pname, gateways=(hk,)), {"hk": hk_keys})
    path = store.path(pname)
    path.write_text(path.read_text().replace('"198.19.0.2/32"', '"198.19.0.2"')
                    .replace('"0.0.0.0/0"', '"10.1.2.3/8"'))
    gw = store.load(pname).gateways[0]
    assert gw.addresses == ("198.19.0.2/32",)
    assert gw.peer.allowed_ips == ("10.0.0.0/8",)


def test_settings_round_trip_and_are_checked(config_dir: Path) -> None:
    from app.core.profiles.codec import profile_from_toml
    from app.core.profiles.model import ClassTuning, Settings
    from app.core.profiles.rules import validate_profile

    gw, _ = make_gateway("hk")
    chosen = Settings(always_on=True, lan_access=False, exclude=("10.50.0.0/16",),
                      copies="always", bulk_after_mb=20.0,
                      tuning=(("realtime", ClassTuning(0.05, 2.0, 8.0, 0.2)),))
    profile = Profile(name="set", gateways=(gw,), settings=chosen)
    import tomllib
    text = profile_to_toml(profile)
    assert "[settings]" in text and "[settings.classes.realtime]" in text
    assert profile_from_toml(tomllib.loads(text)).settings == chosen
    plain = profile_to_toml(Profile(name="set", gateways=(gw,)))
    assert "[settings]" not in plain  # defaults are not written out
    for bad, phrase in ((Settings(copies="twice"), "copies"),
                        (Settings(exclude=("0.0.0.0/0",)), "everything out"),
                        (Settings(tuning=(("bulk", ClassTuning(2.0, 1, 1, 1)),)), "margin")):
        with pytest.raises(BraidError, match=phrase):
            validate_profile(replace(profile, settings=bad))
