"""Profiles: a named set of gateways, kept as TOML in the config dir, keys in the keyring.

- ``model``: the dataclasses (no I/O; scoring and the plan need only these);
- ``rules``: every field checked (the shared field rules come from app/wire/fields.py,
  so a gateway that loads is one the helper accepts);
- ``codec``: TOML in and out, as strict as an imported .conf;
- ``store``: files in the config dir and keys in the keyring, all or nothing.

The format is in docs/profiles.md.
"""
