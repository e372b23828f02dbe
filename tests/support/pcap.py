"""Captures written by the tests and read by Wireshark (tshark), an independent decoder: the
messages a test built or caught are put into a pcap as if they had crossed the loopback (one TCP
connection, or UDP datagrams), and `tshark_packets` says what Wireshark's dissectors read in them,
malformed packets and expert warnings included."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_RAW = 101  # pcap link type: IPv4 packets, no link layer
CLIENT_PORT = 40000
_SYN, _ACK, _PSH = 0x02, 0x10, 0x08
WARNING = 0x00600000  # Wireshark's PI_WARN (expert severities: chat 0x002..., note 0x004..., warn, error 0x008...)


def _pcap(path: Path, packets: Iterable[tuple[int, bytes]]) -> Path:
    """A pcap of IPv4 packets 127.0.0.1 -> 127.0.0.1: (protocol, transport header + payload)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    for index, (protocol, segment) in enumerate(packets):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), index, 0, 64, protocol, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        packet = ip + segment
        out += struct.pack("<IIII", 1_700_000_000 + index // 1000, (index % 1000) * 1000, len(packet), len(packet)) + packet
    Path(path).write_bytes(bytes(out))
    return Path(path)


def tcp_pcap(path: Path, messages: Iterable[bytes | tuple[bool, bytes]], port: int, client_port: int = CLIENT_PORT) -> Path:
    """A pcap of one TCP connection 127.0.0.1:client_port -> 127.0.0.1:port (a handshake, then one
    segment per message, in order): a message is bytes (from the client) or (from_client, bytes).
    Checksums are left 0 (tshark does not check them by default)."""
    sequence = {True: 1000, False: 5000}  # the next sequence number of each side
    packets: list[tuple[bool, int, bytes]] = [(True, _SYN, b""), (False, _SYN | _ACK, b""), (True, _ACK, b"")]
    for item in messages:
        from_client, payload = (True, item) if isinstance(item, bytes | bytearray) else item
        packets.append((bool(from_client), _PSH | _ACK, bytes(payload)))
    segments = []
    for from_client, flags, payload in packets:
        source, destination = (client_port, port) if from_client else (port, client_port)
        acknowledged = sequence[not from_client] if flags & _ACK else 0
        tcp = struct.pack("!HHIIBBHHH", source, destination, sequence[from_client], acknowledged, 5 << 4, flags, 65535, 0, 0)
        sequence[from_client] += len(payload) + (1 if flags & _SYN else 0)
        segments.append((6, tcp + payload))
    return _pcap(path, segments)


def udp_pcap(path: Path, datagrams: Iterable[bytes | tuple[bool, bytes]], port: int, client_port: int = CLIENT_PORT) -> Path:
    """A pcap of UDP datagrams between 127.0.0.1:client_port and 127.0.0.1:port, each bytes (from
    the client) or (from_client, bytes)."""
    segments = []
    for item in datagrams:
        from_client, payload = (True, item) if isinstance(item, bytes | bytearray) else item
        source, destination = (client_port, port) if from_client else (port, client_port)
        segments.append((17, struct.pack("!HHHH", source, destination, 8 + len(payload), 0) + bytes(payload)))
    return _pcap(path, segments)


@dataclass
class Packet:
    """One frame as tshark read it."""

    frame: int
    fields: dict[str, list[str]]  # every field asked for that the frame has, all occurrences in order
    malformed: bool
    problems: list[str]  # expert infos of severity warning and above

    def first(self, name: str, default: str = "") -> str:
        return (self.fields.get(name) or [default])[0]


def tshark_packets(pcap: Path, display_filter: str, fields: Sequence[str], decode_as: Sequence[str] = ()) -> list[Packet]:
    """The frames of `pcap` matching `display_filter` (malformed ones always), with `fields`,
    `decode_as` given to tshark's -d (e.g. "tcp.port==4000,bfcp")."""
    args = ["tshark", "-n", "-r", str(pcap), "-Y", f"({display_filter}) || _ws.malformed", "-T", "json"]
    for rule in decode_as:
        args += ["-d", rule]
    for name in ("frame.number", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message", *fields):
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"tshark failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    packets = []
    for packet in json.loads(done.stdout or "[]"):
        layers: dict[str, list[str]] = packet["_source"]["layers"]
        severities = [int(v, 0) for v in layers.get("_ws.expert.severity", [])]
        texts = layers.get("_ws.expert.message", [])
        problems = [f"{texts[i] if i < len(texts) else '?'} (severity {s:#x})" for i, s in enumerate(severities) if s >= WARNING]
        packets.append(
            Packet(
                frame=int(layers["frame.number"][0]),
                fields={name: values for name, values in layers.items() if not name.startswith(("_ws.", "frame."))},
                malformed="_ws.malformed" in layers,
                problems=problems,
            )
        )
    return packets
