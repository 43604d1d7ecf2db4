"""Profiles on disk and their keys in the keyring, written all or nothing."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from app.core.errors import BraidError
from app.core.profiles.codec import profile_from_toml, profile_to_toml
from app.core.profiles.model import GatewaySecrets, Profile
from app.core.profiles.rules import check_profile_name, validate_profile, validate_secrets
from app.core.secrets import KeyKind, KeyStore, KeyTransaction, key_user
from app.wire.fields import PROFILE_NAME_RE
from app.wire.files import write_atomically

log = logging.getLogger(__name__)


@dataclass
class ProfileStore:
    """Profiles in ``<config_dir>/profiles/<name>.toml``; keys in the keyring.

    config_dir defaults to $BRAID_CONFIG_DIR, else platformdirs' user config dir for
    "braid" (~/.config/braid). The keyring is only touched by load_secrets, save and
    delete, so listing and showing profiles work without one.
    """

    config_dir: Path | None = None
    _keys: KeyStore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.config_dir is None:
            env = os.environ.get("BRAID_CONFIG_DIR")
            self.config_dir = Path(env) if env else Path(platformdirs.user_config_dir("braid"))

    @property
    def profiles_dir(self) -> Path:
        assert self.config_dir is not None
        return self.config_dir / "profiles"

    def path(self, name: str) -> Path:
        try:
            check_profile_name(name)
        except ValueError as exc:
            lower = name.lower()
            fix = (f"write it in lower case: {lower}" if PROFILE_NAME_RE.match(lower) else
                   "choose a name such as work or home-2")
            raise BraidError(str(exc), fix) from None
        return self.profiles_dir / f"{name}.toml"

    def missing(self, name: str) -> BraidError:
        """The error for a profile that does not exist."""
        known = ", ".join(self.names()) or "none yet"
        return BraidError(f"no profile named {name!r} (profiles: {known})",
                          "create it with `braid import FILE.conf --profile NAME`, or pick "
                          "one of `braid profiles`")

    def _keystore(self) -> KeyStore:
        if self._keys is None:
            self._keys = KeyStore()
        return self._keys

    def names(self) -> list[str]:
        if not self.profiles_dir.is_dir():
            return []
        return sorted(p.stem for p in self.profiles_dir.glob("*.toml")
                      if PROFILE_NAME_RE.match(p.stem))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> Profile:
        path = self.path(name)
        fix = f"import the gateways again (braid import FILE.conf --profile {name}) or " \
              f"delete the profile (braid profile delete {name})"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.missing(name) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BraidError(f"cannot read profile {path}: {exc}", fix) from None
        try:
            profile = profile_from_toml(tomllib.loads(text))
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise BraidError(f"profile file {path} is broken: {exc}", fix) from None
        if profile.name != name:
            raise BraidError(f"profile file {path} names itself {profile.name!r}", fix)
        try:
            return validate_profile(profile)
        except BraidError as exc:
            raise BraidError(f"profile file {path}: {exc.what}", fix) from None

    def load_secrets(self, profile: Profile) -> dict[str, GatewaySecrets]:
        keys = self._keystore()
        out: dict[str, GatewaySecrets] = {}
        for gw in profile.gateways:
            private = keys.get(key_user(profile.name, gw.name, "private"))
            if private is None:
                fix = ("rebuild the lab (braid lab up)" if profile.lab else
                       f"import its .conf again: braid import FILE.conf --profile "
                       f"{profile.name} --name {gw.name}")
                raise BraidError(f"the keyring has no private key for gateway {gw.name!r} "
                                 f"of profile {profile.name!r}", fix)
            secrets = GatewaySecrets(private_key=private, preshared_key=keys.get(
                key_user(profile.name, gw.name, "preshared")))
            validate_secrets(profile.name, gw.name, secrets)
            out[gw.name] = secrets
        return out

    def has_preshared_keys(self, profile: Profile) -> dict[str, bool]:
        """Which gateways have a preshared key, without reading any key (KeyStore.exists:
        cheap, and it works on a locked Secret Service). BraidError without a keyring
        (KeyringLockedError where a locked one cannot tell)."""
        keys = self._keystore()
        return {gw.name: keys.exists(key_user(profile.name, gw.name, "preshared"))
                for gw in profile.gateways}

    def _previous(self, name: str) -> Profile | None:
        """The saved version of a profile, if it is readable."""
        if not self.exists(name):
            return None
        try:
            return self.load(name)
        except BraidError as exc:
            log.warning("replacing unreadable profile %s: %s", name, exc.what)
            return None

    def save(self, profile: Profile, secrets: Mapping[str, GatewaySecrets]) -> None:
        """Write ``profile`` and its keys, all or nothing.

        ``secrets`` has an entry for each gateway whose keys change (a new import); a
        gateway without one keeps the keys the keyring already holds (and must have
        them). Keys of gateways the profile no longer has are removed.
        """
        profile = validate_profile(profile)
        names = {gw.name for gw in profile.gateways}
        for gw_name, gw_secrets in secrets.items():
            if gw_name not in names:
                raise BraidError(f"keys given for gateway {gw_name!r}, which profile "
                                 f"{profile.name!r} does not have", "this is a bug in the caller")
            validate_secrets(profile.name, gw_name, gw_secrets)
        path = self.path(profile.name)
        previous = self._previous(profile.name)
        keys = self._keystore()
        for gw in profile.gateways:
            if gw.name not in secrets and \
                    keys.get(key_user(profile.name, gw.name, "private")) is None:
                raise BraidError(f"gateway {gw.name!r} of profile {profile.name!r} has no key "
                                 f"in the keyring and none was given",
                                 f"import its .conf: braid import FILE.conf --profile "
                                 f"{profile.name} --name {gw.name}")
        txn = KeyTransaction(keys)
        try:
            for gw_name, gw_secrets in secrets.items():
                txn.set(key_user(profile.name, gw_name, "private"), gw_secrets.private_key)
                psk_user = key_user(profile.name, gw_name, "preshared")
                if gw_secrets.preshared_key is None:
                    txn.delete(psk_user)
                else:
                    txn.set(psk_user, gw_secrets.preshared_key)
            try:
                write_atomically(path, profile_to_toml(profile))
            except OSError as exc:
                raise BraidError(f"cannot write profile {path}: {exc}",
                                 "check that the config dir is writable (BRAID_CONFIG_DIR)") \
                    from None
        except BaseException:
            txn.rollback()
            raise
        if previous is not None:
            for gw in previous.gateways:
                if gw.name not in names:
                    self._forget_keys(profile.name, gw.name)

    def _forget_keys(self, profile: str, gateway: str) -> None:
        """Remove a gateway's keys after its profile no longer names it."""
        kinds: tuple[KeyKind, ...] = ("private", "preshared")
        for kind in kinds:
            try:
                self._keystore().delete(key_user(profile, gateway, kind))
            except BraidError as exc:
                log.warning("could not remove the %s key of %s/%s: %s", kind, profile,
                            gateway, exc.what)

    def _gateway_names(self, name: str) -> list[str]:
        """The gateways a profile names, even from a file too broken to load, so that
        deleting a broken profile still removes its keys."""
        try:
            return [gw.name for gw in self.load(name).gateways]
        except BraidError:
            pass
        try:
            doc = tomllib.loads(self.path(name).read_text(encoding="utf-8"))
            gateways = doc.get("gateways", [])
            return [g["name"] for g in gateways
                    if isinstance(g, dict) and isinstance(g.get("name"), str)]
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError, TypeError):
            log.warning("profile %s is unreadable; its keys (if any) stay in the keyring", name)
            return []

    def delete(self, name: str) -> None:
        """Remove a profile and its keys (the keys first, restored if the file stays)."""
        path = self.path(name)
        if not path.is_file():
            raise self.missing(name)
        txn = KeyTransaction(self._keystore())
        try:
            for gw_name in self._gateway_names(name):
                txn.delete(key_user(name, gw_name, "private"))
                txn.delete(key_user(name, gw_name, "preshared"))
            try:
                path.unlink()
            except OSError as exc:
                raise BraidError(f"cannot delete {path}: {exc}",
                                 "check that the config dir is writable") from None
        except BaseException:
            txn.rollback()
            raise
