"""The backplane's cost per room per node: what joining a room's shares on two nodes adds to each.

In one process, two nodes' directories with R rooms each; in every room each node serves three
phones (G.711; one of them talking on each node, as in a meeting where both sides speak). We run
T ticks of every room's mixer on both nodes twice, first with the rooms on their own (no link),
then linked by the cascade (gateway/cluster/): per tick and room each node then also encodes its
mix-minus for the link in Opus, decodes the other side's, and protects and unprotects one SRTP
packet each way (the UDP send itself is left out: the loopback's cost, 9 us a packet per
ARCHITECTURE.md, is the same as any leg's). The difference, per room and node, is the backplane's
cost: CPU microseconds per 20 ms tick (and as a share of one core), and the bytes per second it
sends each way. Both links: Opus (between machines) and L16 (between the workers of one machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (  # noqa: E402
    add_common_arguments,
    import_gateway_from,
    print_table,
    tree_from_argv,
    write_results,
)

import_gateway_from(tree_from_argv())  # --tree: the gateway modules measured come from that tree

from gateway.cluster.cascade import LINK_FORMAT, LOCAL_LINK_FORMAT, Cascade  # noqa: E402
from gateway.cluster.media import PeerMedia  # noqa: E402
from gateway.cluster.wire import ControlLink  # noqa: E402
from gateway.config import GatewayConfig, RoomConfig  # noqa: E402
from gateway.rooms import LegKind  # noqa: E402
from gateway.rooms.directory import Directory  # noqa: E402
from gateway.transcode.audio import AudioCodec, AudioFormat, make_encoder  # noqa: E402

PCMU = AudioFormat(AudioCodec.PCMU)
PHONES = 3


class _Phone:
    kind = LegKind.PHONE
    audio_in_codec = AudioCodec.PCMU
    audio_out_format = PCMU
    video_streams: dict[Any, Any] = {}

    def __init__(self, participant_id: str) -> None:
        self.participant_id = participant_id

    def send_audio(self, frame: Any) -> None:
        pass

    def send_video(self, source: Any, frame: Any) -> None:
        pass

    def on_room_event(self, event: Any) -> None:
        pass

    async def hang_up(self, reason: str) -> None:
        pass

    def media_counters(self) -> dict[str, Any]:
        return {}


class _Node:
    def __init__(self, name: str, rooms: int, outbox: list[tuple[str, str, Any]], link_format: AudioFormat) -> None:
        self.name = name
        self.directory = Directory(GatewayConfig(rooms=[RoomConfig(id=f"room-{i}") for i in range(rooms)]))
        self.cascade = Cascade(
            self.directory,
            name,
            lambda peer, message: outbox.append(("msg", peer, json.loads(json.dumps(message)))),
            lambda peer, packet: outbox.append(("media", peer, packet)),
            link_format=link_format,
        )
        self.talkers = []
        for conference in self.directory.conferences.values():
            for n in range(PHONES):
                result = conference.room.request_join(f"{name}-{n}", None, LegKind.PHONE)
                assert result.participant is not None
                leg = _Phone(result.participant.id)
                conference.attach(leg)
                if n == 0:
                    self.talkers.append((conference, leg.participant_id))
        self.bytes_sent = 0


async def _measure(rooms: int, ticks: int, link_format: AudioFormat) -> dict[str, Any]:
    outbox: list[tuple[str, str, Any]] = []
    nodes = {name: _Node(name, rooms, outbox, link_format) for name in ("node-a", "node-b")}
    t = np.arange(960) / 48_000
    tone = make_encoder(PCMU)
    frames = [tone.encode((6000 * np.sin(2 * np.pi * (300 + 10 * k) * t)).astype(np.int16)) for k in range(50)]
    for conference in (c for n in nodes.values() for c in n.directory.conferences.values()):
        conference.clock.stop_now()  # (the benchmark ticks them itself)

    def pump() -> None:
        while outbox:
            what, peer, item = outbox.pop(0)
            sender = next(n for n in nodes if n != peer)
            if what == "msg":
                nodes[peer].cascade.on_message(sender, item)
            else:
                nodes[sender].bytes_sent += len(item)
                nodes[peer].cascade.on_media(sender, item, ("x", 1))

    def run() -> float:
        start = time.process_time()
        for tick in range(ticks):
            for node in nodes.values():
                for conference, pid in node.talkers:
                    conference.push_audio(pid, tick, frames[tick % len(frames)], None, tick * 0.02)
                for conference in node.directory.conferences.values():
                    conference.mixer.tick()
            pump()
        return time.process_time() - start

    alone = run()
    la, lb = ControlLink(b"k" * 40, "node-a", True), ControlLink(b"k" * 40, "node-b", False)
    for _ in range(3):
        lb.receive(la.data_to_send())
        la.receive(lb.data_to_send())
    codec = link_format.codec
    nodes["node-a"].cascade.peer_up("node-b", PeerMedia(*la.media_keys(), address=("x", 1), codec=codec), la.media_ssrc)
    nodes["node-b"].cascade.peer_up("node-a", PeerMedia(*lb.media_keys(), address=("x", 1), codec=codec), lb.media_ssrc)
    pump()
    linked_rooms = sum(1 for c in nodes["node-a"].directory.conferences.values() if c.links)
    assert linked_rooms == rooms, f"only {linked_rooms} of {rooms} rooms linked"
    for node in nodes.values():
        node.bytes_sent = 0
    linked = run()
    per_room_node_us = (linked - alone) / ticks / rooms / 2 * 1e6
    return {
        "link": "L16 (workers of one machine)" if codec is AudioCodec.L16 else "Opus 64 kbit/s (nodes)",
        "rooms": rooms,
        "ticks": ticks,
        "cpu_s_alone": round(alone, 3),
        "cpu_s_linked": round(linked, 3),
        "backplane_us_per_room_node_tick": round(per_room_node_us, 1),
        "backplane_core_share_per_room_node": round(per_room_node_us / 20_000, 4),
        "rooms_per_core_for_the_backplane_alone": int(20_000 / per_room_node_us) if per_room_node_us > 0 else None,
        "bytes_per_s_per_room_each_way": round(nodes["node-a"].bytes_sent / (ticks * 0.02) / rooms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[1, 10, 40])
    parser.add_argument("--ticks", type=int, default=500)
    add_common_arguments(parser)
    args = parser.parse_args()
    import asyncio

    async def all_sizes() -> list[dict[str, Any]]:
        return [await _measure(rooms, args.ticks, fmt) for fmt in (LINK_FORMAT, LOCAL_LINK_FORMAT) for rooms in args.rooms]

    rows = asyncio.run(all_sizes())
    path = write_results("backplane", {"phones_per_room_per_node": PHONES, "results": rows}, args.json, args.tree)
    print_table(
        ["link", "rooms", "cpu s alone", "cpu s linked", "us/room/node/tick", "core share/room/node", "bytes/s/room each way"],
        [
            [r["link"], r["rooms"], r["cpu_s_alone"], r["cpu_s_linked"], r["backplane_us_per_room_node_tick"],
             f"{r['backplane_core_share_per_room_node']:.2%}", r["bytes_per_s_per_room_each_way"]]
            for r in rows
        ],
    )  # fmt: skip
    print(f"written to {path}")


if __name__ == "__main__":
    main()
