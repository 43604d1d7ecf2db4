"""A stand-in for systemd-resolved's D-Bus API, for tests: resolved cannot run here (no
systemd as PID 1), so this owns ``org.freedesktop.resolve1`` on a private bus and
implements the Manager methods braid-helper calls, as resolved does them:

- ``SetLinkDNS(i ifindex, a(iay) addresses)``, ``SetLinkDomains(i, a(sb))``,
  ``SetLinkDefaultRoute(i, b)``, ``RevertLink(i)``;
- an ifindex that is no link of its network namespace is refused with
  ``org.freedesktop.resolve1.NoSuchLink``; a wrong signature with ``InvalidArgs``;
- a link's settings are forgotten when the link goes (as resolved drops a link that
  disappears), and all of them when it restarts.

Every call and the resulting per-link state go to a JSON file (``--record``), rewritten
after each call: ``{"calls": [[method, ifindex, ...]], "links": {"<ifindex>": {"name",
"dns", "domains", "default_route"}}}``.

Run as ``python -m tests.helper.fake_resolved --bus ADDRESS --record FILE`` (inside the
helper's network namespace, so that ifindexes mean the same links).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import Any

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.resolve1"
PATH = "/org/freedesktop/resolve1"
MANAGER = "org.freedesktop.resolve1.Manager"
SIGNATURES = {"SetLinkDNS": "ia(iay)", "SetLinkDomains": "ia(sb)",
              "SetLinkDefaultRoute": "ib", "RevertLink": "i"}


def link_name(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


class Resolve1:
    def __init__(self, record: Path) -> None:
        self.record = record
        self.calls: list[list[Any]] = []
        self.links: dict[int, dict[str, Any]] = {}

    def handle(self, method: str, args: tuple[Any, ...]) -> str | None:
        """Apply a call; the D-Bus error name if it is refused."""
        index = args[0]
        name = link_name(index)
        if name is None:
            return "org.freedesktop.resolve1.NoSuchLink"
        link = self.links.get(index)
        if link is None or link["name"] != name:
            link = self.links[index] = {"name": name, "dns": [], "domains": [],
                                        "default_route": None}
        if method == "SetLinkDNS":
            link["dns"] = [str(ipaddress.ip_address(bytes(a))) for _, a in args[1]]
            self.calls.append([method, index, link["dns"]])
        elif method == "SetLinkDomains":
            link["domains"] = [[d, bool(r)] for d, r in args[1]]
            self.calls.append([method, index, link["domains"]])
        elif method == "SetLinkDefaultRoute":
            link["default_route"] = bool(args[1])
            self.calls.append([method, index, link["default_route"]])
        else:
            del self.links[index]
            self.calls.append([method, index])
        return None

    def save(self) -> None:
        # A link that went is forgotten, as resolved forgets it.
        self.links = {i: v for i, v in self.links.items() if link_name(i) == v["name"]}
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"calls": self.calls,
                                   "links": {str(i): v for i, v in self.links.items()}}))
        tmp.replace(self.record)


def serve(bus: str, record: Path) -> None:
    conn = open_dbus_connection(bus)
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4))  # DO_NOT_QUEUE
    if reply.body[0] != 1:  # PRIMARY_OWNER
        raise SystemExit(f"could not own {NAME}: {reply.body}")
    state = Resolve1(record)
    state.save()
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        fields = msg.header.fields
        method = fields.get(HeaderFields.member)
        if fields.get(HeaderFields.path) != PATH or fields.get(HeaderFields.interface) not in (
                MANAGER, None) or method not in SIGNATURES:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
            continue
        if fields.get(HeaderFields.signature, "") != SIGNATURES[method]:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.InvalidArgs"))
            continue
        error = state.handle(method, msg.body)
        state.save()
        conn.send(new_error(msg, error) if error else new_method_return(msg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bus", required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.bus, args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
