"""The media side of the benchmark's phones: G.711 RTP sent and, above all, counted where it arrives.

bench/sip_legs.py places its calls with sipp (signalling only) and runs one of these processes per
sipp process. Each phone is one UDP socket (its RTP port, the port its SDP offer names) plus the
RTCP port after it. A phone starts sending when the gateway's first RTP packet arrives, to the
address it came from (symmetric RTP, so no SDP is parsed here): A-law, 160 bytes every 20 ms on a
monotonic schedule. Every packet the gateway sends is counted when this socket receives it, and its
sequence number tracked, so loss on the way gateway -> phone is measured at the receiver: packets
expected (from the sequence numbers) minus packets received.

Protocol with the parent, one JSON object per line: on start `{"event": "ready"}`; on `snap` in
stdin, `{"event": "snap", "at": monotonic, "legs": {port: [sent, received, expected, rtcp_in]}}`;
`stop` (or end of stdin) ends the process after a last snap.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time
from pathlib import Path

PERIOD = 0.020
SAMPLES = 160  # 8 kHz, 20 ms
PAYLOAD_TYPE = 8  # PCMA


class Phone:
    def __init__(self, port: int, ssrc: int) -> None:
        self.port = port
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", port))
        self.rtp.setblocking(False)
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", port + 1))
        self.rtcp.setblocking(False)
        self.ssrc = ssrc
        self.remote: tuple[str, int] | None = None
        self.seq = 0
        self.timestamp = 0
        self.sent = 0
        self.received = 0
        self.rtcp_in = 0
        self.first_seq: int | None = None
        self.max_seq = 0  # extended (wrap-counted) highest sequence number received

    def expected(self) -> int:
        return 0 if self.first_seq is None else self.max_seq - self.first_seq + 1

    def take(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
            return  # not RTP (or RTCP on the RTP port)
        self.received += 1
        seq = struct.unpack_from("!H", data, 2)[0]
        if self.first_seq is None:
            self.first_seq = self.max_seq = seq
            self.remote = source
            return
        delta = (seq - self.max_seq) & 0xFFFF
        if delta < 0x8000:  # forward (reordered old packets do not move the highest)
            self.max_seq += delta

    def packet(self, payload: bytes) -> bytes:
        header = struct.pack("!BBHII", 0x80, PAYLOAD_TYPE, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        self.seq += 1
        self.timestamp += SAMPLES
        return header + payload


def run(ports: list[int], audio: bytes) -> None:
    phones = [Phone(port, 0x5EED0000 + i) for i, port in enumerate(ports)]
    frames = [audio[i : i + SAMPLES] for i in range(0, len(audio) - SAMPLES + 1, SAMPLES)] or [b"\xd5" * SAMPLES]
    selector = selectors.DefaultSelector()
    for phone in phones:
        selector.register(phone.rtp, selectors.EVENT_READ, (phone, False))
        selector.register(phone.rtcp, selectors.EVENT_READ, (phone, True))
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_READ, None)
    pending = b""
    tick = 0
    late_sends = 0
    max_late_ms = 0.0
    next_send = time.monotonic()

    def snap() -> None:
        legs = {p.port: [p.sent, p.received, p.expected(), p.rtcp_in] for p in phones}
        state = {"late_sends": late_sends, "max_send_late_ms": round(max_late_ms, 2)}
        print(json.dumps({"event": "snap", "at": time.monotonic(), "legs": legs, **state}), flush=True)

    print(json.dumps({"event": "ready"}), flush=True)
    while True:
        for key, _ in selector.select(max(0.0, next_send - time.monotonic())):
            if key.data is None:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    snap()
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip() == b"snap":
                        snap()
                    elif line.strip() == b"stop":
                        snap()
                        return
                continue
            phone, is_rtcp = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    data, source = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                if is_rtcp:
                    phone.rtcp_in += 1
                else:
                    phone.take(data, source)
        now = time.monotonic()
        if now >= next_send:
            late = now - next_send
            if late > 0.005:
                late_sends += 1
                max_late_ms = max(max_late_ms, late * 1000)
            payload = frames[tick % len(frames)]
            for phone in phones:
                if phone.remote is not None:
                    try:
                        phone.rtp.sendto(phone.packet(payload), phone.remote)
                        phone.sent += 1
                    except OSError:
                        pass  # the call ended (ICMP port unreachable): nothing to count
            tick += 1
            next_send += PERIOD
            if now - next_send > 5 * PERIOD:  # starved: skip ahead rather than send a burst
                next_send = now + PERIOD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audio", type=Path, required=True, help="raw A-law, sent 160 bytes per packet, looped")
    parser.add_argument("ports", type=int, nargs="+", help="RTP ports (each one's RTCP port is the next)")
    args = parser.parse_args()
    run(args.ports, args.audio.read_bytes())


if __name__ == "__main__":
    main()
