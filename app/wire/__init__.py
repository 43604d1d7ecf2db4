"""The neutral contract between Braid's client and its privileged helper.

Both sides import this package and neither imports the other (tests/core/test_layering.py
guards it), so every rule is written once:

- ``fields``: the field rules (names, keys, ports, MTU, addresses) that `braid import`,
  the profile loader and the helper's validator all apply, so a file that imports is a
  file that connects;
- ``doc``: typed reads of a decoded JSON document whose errors name the field path;
- ``state``: the desired state, its confinement ranges and its validation;
- ``status``: the helper's status reply, written by the helper and read by the client;
- ``errors``: the error codes a client acts on, and the error reply;
- ``protocol``: framing, versions and the closed set of verbs;
- ``files``: the one atomic file writer both sides use;
- ``version``: the package version both commands print (`--version`).

Nothing here does I/O beyond ``files`` (and ``version``, which reads package
metadata), and nothing needs root.
"""
