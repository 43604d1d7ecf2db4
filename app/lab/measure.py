"""Raw measurement programs for the self-test, run inside lab namespaces.

`recv`: listen on a UDP port, record every stamped packet (sequence, send time, kernel
receive time, size), optionally echo it stamped; print "ready" at once and the record
as JSON when done. `send`: print "ready", pace stamped packets to a target, collect
echoes, print the send times and echoes as JSON. The self-test turns these records into
figures.

    python -m app.lab.measure recv --port 52000 --seconds 8 [--echo]
    python -m app.lab.measure send --to 198.18.0.1:52000 --pps 1000 --count 5000 --size 200
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time

from app.lab.packet import stamp_server, unpack
from app.lab.stream import SO_TIMESTAMPNS, send_loop


def receive(port: int, seconds: float, echo: bool) -> dict[str, list[float]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    print("ready", flush=True)
    rec: dict[str, list[float]] = {"seq": [], "sent": [], "rx": [], "size": []}
    counts: dict[int, int] = {}
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            continue
        while True:
            try:
                data, anc, _, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
            except BlockingIOError:
                break
            rx = time.time()
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("@qq", cdata[:16])
                    rx = sec + nsec / 1e9
            stamp = unpack(data)
            if stamp is None:
                continue
            rec["seq"].append(stamp.seq)
            rec["sent"].append(stamp.sent)
            rec["rx"].append(rx)
            rec["size"].append(len(data))
            if echo:
                counts[stamp.flow] = counts.get(stamp.flow, 0) + 1
                # Stamp the echo's send time: the way back is measured from when it left.
                sock.sendto(stamp_server(data, time.time(), counts[stamp.flow]), addr)
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.lab.measure")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--seconds", type=float, required=True)
    r.add_argument("--echo", action="store_true")
    s = sub.add_parser("send")
    s.add_argument("--to", required=True)
    s.add_argument("--pps", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--size", type=int, default=200)
    s.add_argument("--wait", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.cmd == "recv":
        json.dump(receive(args.port, args.seconds, args.echo), sys.stdout)
    else:
        host, _, port = args.to.rpartition(":")
        print("ready", flush=True)  # the caller times its events from here, not our start
        sent, got = send_loop((host, int(port)), args.pps, args.count, args.size, args.wait)
        json.dump({"sent": sent, "got": {str(k): list(v) for k, v in got.items()}}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
