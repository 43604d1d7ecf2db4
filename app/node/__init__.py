"""Braid's node roles: the gateway and the exit, as a declarative, validated, idempotent
reconcile of the node's kernel (docs/gateways.md).

- ``confine``: each role's names and ranges (interfaces, tables, rule priorities, marks,
  nft table); nothing outside them is touched;
- ``state``: the roles' desired states and their validation (errors name the field path);
- ``plan``: a state as the kernel objects it needs (devices, routes, rules, the nft
  table, sysctls), pure;
- ``kernel`` and ``devices``: reading and changing those objects (netlink, nft, sysctl,
  wireguard-go's UAPI), each touched only where it differs;
- ``reconcile``: the order of an apply or a removal, and what leaks if it stops midway;
- ``describe``: the description of a user's nodes (a TOML file) and each node's state;
- ``main``: ``python -m app.node apply|down|show`` (root, on the node).

Imports only app.wire and app.helper (tests/core/test_layering.py): a node runs no
client code.
"""
