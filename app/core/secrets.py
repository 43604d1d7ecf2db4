"""WireGuard keys in the system keyring: choosing a backend that is safe, and writes that
can be undone.

Keys live under service ``braid``, username ``<profile>/<gateway>/private`` and
``<profile>/<gateway>/preshared``. The backend is the one keyring would pick, with two
refusals: keyring's ``fail`` and ``null`` backends (they keep nothing), and an
unencrypted plaintext backend (keyrings.alt's PlaintextKeyring) unless the user chose it
explicitly with PYTHON_KEYRING_BACKEND or keyringrc.cfg. No fallback happens behind the
user's back: if the Secret Service is gone, Braid says so instead of writing keys to a
plaintext file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import keyring.backend
import keyring.core
import keyring.errors
from keyring.backends import SecretService

from app.core.errors import BraidError

log = logging.getLogger(__name__)

SERVICE = "braid"
KeyKind = Literal["private", "preshared"]
T = TypeVar("T")

_FIX_NO_KEYRING = (
    "install and unlock a Secret Service in your session (gnome-keyring: "
    "`apt-get install gnome-keyring`, or KWallet), or run Braid under "
    "scripts/with-keyring.sh on a headless machine; or choose a keyring backend "
    "explicitly with PYTHON_KEYRING_BACKEND (for example "
    "keyrings.alt.file.PlaintextKeyring, if you accept unencrypted keys on disk)"
)
_FIX_LOCKED = (
    "unlock your keyring (log in to the desktop session, or unlock the default "
    "keyring in Passwords and Keys / KWallet Manager), then try again"
)
# Backends that store nothing, or only exist to wrap others.
_NEVER = frozenset({
    "keyring.backends.fail.Keyring",
    "keyring.backends.null.Keyring",
    "keyring.backends.chainer.ChainerBackend",
    "keyrings.alt.multi.MultipartKeyringWrapper",
})


class KeyringLockedError(BraidError):
    """The keyring is there but locked: what needs a key must wait for the user."""


def key_user(profile: str, gateway: str, kind: KeyKind) -> str:
    """The keyring username of one key."""
    return f"{profile}/{gateway}/{kind}"


def backend_name(backend: keyring.backend.KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_plaintext(name: str) -> bool:
    return "plaintext" in name.lower()


def _explicit_backend() -> keyring.backend.KeyringBackend | None:
    """The backend the user named in PYTHON_KEYRING_BACKEND or keyringrc.cfg, if any."""
    try:
        return keyring.core.load_env() or keyring.core.load_config()
    except Exception as exc:  # keyring raises ImportError, ValueError, RuntimeError, ...
        raise BraidError(
            f"the keyring backend chosen in PYTHON_KEYRING_BACKEND or keyringrc.cfg "
            f"cannot be loaded: {exc}",
            "name an installed backend (`python3 -m keyring --list-backends`) or unset it",
        ) from exc


def _best_viable_backend() -> keyring.backend.KeyringBackend | None:
    # get_all_keyring() loads the backend plugins but caches viability for the life of
    # the process; asking the classes again notices a Secret Service that started since.
    keyring.backend.get_all_keyring()
    viable = [
        cls for cls in keyring.backend.KeyringBackend.get_viable_backends()
        if f"{cls.__module__}.{cls.__qualname__}" not in _NEVER and cls.priority > 0
    ]
    if not viable:
        return None
    best = max(viable, key=lambda cls: float(cls.priority))
    return best()


def resolve_backend() -> keyring.backend.KeyringBackend:
    """The backend Braid stores keys in, or a BraidError that says how to get one."""
    explicit = _explicit_backend()
    if explicit is not None:
        name = backend_name(explicit)
        if name in _NEVER:
            raise BraidError(
                f"the keyring backend chosen explicitly ({name}) cannot store keys",
                _FIX_NO_KEYRING,
            )
        if _is_plaintext(name):
            log.warning("keys are stored unencrypted (%s chosen explicitly)", name)
        return explicit
    best = _best_viable_backend()
    if best is None:
        raise BraidError("no keyring backend is available to keep WireGuard keys",
                         _FIX_NO_KEYRING)
    name = backend_name(best)
    if _is_plaintext(name):
        raise BraidError(
            f"no Secret Service answers, and the only keyring available ({name}) would "
            f"keep WireGuard keys unencrypted on disk",
            _FIX_NO_KEYRING,
        )
    return best


@dataclass
class KeyStore:
    """Braid's keys in one keyring backend; every failure becomes a BraidError."""

    backend: keyring.backend.KeyringBackend = field(default_factory=resolve_backend)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except keyring.errors.KeyringLocked as exc:
            raise KeyringLockedError(f"the keyring is locked, so Braid cannot {action}",
                                     _FIX_LOCKED) from exc
        except BraidError:
            raise
        except Exception as exc:  # D-Bus, secretstorage and backend errors alike
            # Messages from keyring name the item at most, never the secret.
            raise BraidError(
                f"the keyring ({backend_name(self.backend)}) failed to {action}: {exc}",
                _FIX_NO_KEYRING,
            ) from exc

    def get(self, user: str) -> str | None:
        return self._call(f"read {user}", lambda: self.backend.get_password(SERVICE, user))

    def exists(self, user: str) -> bool:
        """Whether a key is stored, without reading it. On the Secret Service this asks
        for the item only (about a millisecond): a locked keyring lists its items too, so
        nothing is unlocked and no prompt appears."""
        backend = self.backend
        if isinstance(backend, SecretService.Keyring):
            return self._call(f"look up {user}", lambda: _secret_service_has(backend, user))
        return self.get(user) is not None

    def set(self, user: str, value: str) -> None:
        self._call(f"store {user}", lambda: self.backend.set_password(SERVICE, user, value))

    def delete(self, user: str) -> None:
        """Remove a key; one that is not there is not an error."""
        if self.get(user) is None:
            return
        self._call(f"delete {user}", lambda: self.backend.delete_password(SERVICE, user))


def _secret_service_has(backend: SecretService.Keyring, user: str) -> bool:
    import secretstorage  # keyring's Secret Service backend needs it, so it is there

    scheme = backend.schemes[backend.scheme]
    query = {scheme["service"]: SERVICE, scheme["username"]: user}
    conn = secretstorage.dbus_init()
    try:
        path = getattr(backend, "preferred_collection", secretstorage.collection.DEFAULT_COLLECTION)
        try:
            collection = secretstorage.Collection(conn, path)
            return next(iter(collection.search_items(query)), None) is not None
        except secretstorage.exceptions.ItemNotFoundException:
            return False  # no such collection: nothing is stored in it
    finally:
        conn.close()


@dataclass
class KeyTransaction:
    """Changes to several keys that are undone together if a later step fails.

    Records each key's value before its first change; rollback() puts those back
    (deleting keys that did not exist). Rollback is best effort: a keyring that fails
    mid-way is logged, and the original error is the one that reaches the user.
    """

    store: KeyStore
    _before: dict[str, str | None] = field(default_factory=dict)

    def _remember(self, user: str) -> None:
        if user not in self._before:
            self._before[user] = self.store.get(user)

    def set(self, user: str, value: str) -> None:
        self._remember(user)
        self.store.set(user, value)

    def delete(self, user: str) -> None:
        self._remember(user)
        self.store.delete(user)

    def rollback(self) -> None:
        for user, value in reversed(list(self._before.items())):
            try:
                if value is None:
                    self.store.delete(user)
                else:
                    self.store.set(user, value)
            except BraidError as exc:
                log.error("could not restore keyring entry %s: %s", user, exc.what)
        self._before.clear()
