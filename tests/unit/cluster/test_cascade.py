"""One meeting on two nodes, in one process: two directories joined by cascades over in-memory
links (real SRTP, real mixers). Audio crosses as each side's mix-minus, the roster shows the other
side's people, and a host's mute on one node silences a participant of the other on the media."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from gateway.cluster.cascade import Cascade, hub_of
from gateway.cluster.media import PeerMedia
from gateway.cluster.wire import ControlLink
from gateway.config import GatewayConfig, RoomConfig
from gateway.rooms import LegKind, NotAllowed
from gateway.rooms.directory import Directory
from gateway.rooms.events import RoomEvent
from gateway.rooms.leg import VideoStream
from gateway.transcode.audio import AudioCodec, AudioFormat, make_decoder, make_encoder
from gateway.transcode.codecs import StreamKind
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId

HOST_PIN = "4711"
PCMU = AudioFormat(AudioCodec.PCMU)


class Phone:
    """A leg speaking G.711: what it hears is decoded and kept."""

    kind = LegKind.PHONE
    audio_in_codec = AudioCodec.PCMU
    audio_out_format = PCMU

    def __init__(self, participant_id: str) -> None:
        self.participant_id = participant_id
        self.heard: list[np.ndarray] = []
        self._decoder = make_decoder(AudioCodec.PCMU)

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return {}

    def send_audio(self, frame: MixedFrame) -> None:
        self.heard.append(self._decoder.decode(frame.payload))

    def send_video(self, source: Any, frame: Any) -> None:
        pass

    def on_room_event(self, event: RoomEvent) -> None:
        pass

    async def hang_up(self, reason: str) -> None:
        pass

    def media_counters(self) -> dict[str, Any]:
        return {}

    def loudness(self, last: int = 5) -> float:
        return max(float(np.abs(f.astype(np.int32)).mean()) for f in self.heard[-last:])


class Node:
    def __init__(self, name: str, outbox: list[tuple[str, str, Any]], observe: bool = False) -> None:
        self.name = name
        self.directory = Directory(GatewayConfig(rooms=[RoomConfig(id="council", host_pin=HOST_PIN)]))
        self.cascade = Cascade(
            self.directory,
            name,
            lambda peer, message: outbox.append(("msg", peer, {**json.loads(json.dumps(message)), "_from": name})),
            lambda peer, packet: outbox.append(("media", peer, (name, packet))),
            observe=observe,
        )
        self.conference = self.directory.conferences["council"]
        self.room = self.conference.room
        self.seq = 0
        self._encoder = make_encoder(PCMU)

    def join(self, name: str, pin: str | None = None) -> Phone:
        result = self.room.request_join(name, pin, LegKind.PHONE)
        assert result.participant is not None
        leg = Phone(result.participant.id)
        self.conference.attach(leg)
        return leg

    def speak(self, leg: Phone, hz: float) -> None:
        t = (np.arange(960) + self.seq * 960) / 48_000
        pcm = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        self.seq += 1
        self.conference.push_audio(leg.participant_id, self.seq, self._encoder.encode(pcm), None, self.seq * 0.02)


class Cluster:
    """Nodes a, b (and c ...), each linked with each; `pump` delivers what they sent each other
    until nothing is left."""

    def __init__(self, names: tuple[str, ...] = ("node-a", "node-b"), observe: bool = False) -> None:
        self.outbox: list[tuple[str, str, Any]] = []
        self.nodes = {name: Node(name, self.outbox, observe) for name in names}
        self.a, self.b = self.nodes["node-a"], self.nodes["node-b"]
        self.senders: dict[tuple[str, str], str] = {}
        for i, one in enumerate(names):
            for other in names[i + 1 :]:
                lo, lt = ControlLink(b"k" * 40, one, True), ControlLink(b"k" * 40, other, False)
                for _ in range(3):
                    lt.receive(lo.data_to_send())
                    lo.receive(lt.data_to_send())
                self.nodes[one].cascade.peer_up(other, PeerMedia(*lo.media_keys(), address=(other, 1)), lo.media_ssrc)
                self.nodes[other].cascade.peer_up(one, PeerMedia(*lt.media_keys(), address=(one, 1)), lt.media_ssrc)
        self.pump()

    def pump(self) -> None:
        while self.outbox:
            what, peer, item = self.outbox.pop(0)
            target = self.nodes[peer].cascade
            if what == "msg":
                sender = self._sender_of(peer, item)
                target.on_message(sender, item)
            else:
                sender, packet = item
                target.on_media(sender, packet, (sender, 1))

    def _sender_of(self, peer: str, message: Any) -> str:
        return message.pop("_from")

    def tick(self, n: int = 1, speakers: tuple[tuple[Node, Phone, float], ...] = ()) -> None:
        for _ in range(n):
            for node, leg, hz in speakers:
                node.speak(leg, hz)
            for node in self.nodes.values():
                node.conference.mixer.tick()
            self.pump()


@pytest.fixture
async def cluster() -> Cluster:  # (async: the rooms' media clocks need a running loop)
    return Cluster()


async def test_the_two_shares_of_a_meeting_hear_and_see_each_other(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    cluster.pump()
    assert "#node:node-b" not in a.conference.mixer  # (b uses no room yet: nothing to link)
    bernd = b.join("Bernd")
    cluster.pump()
    assert a.room.participants[bernd.participant_id].extra["via"] == "node-b"
    assert b.room.participants[hanna.participant_id].extra["via"] == "node-a"
    assert "#node:node-b" in a.conference.mixer and "#node:node-a" in b.conference.mixer
    assert a.conference.legs.keys() == {hanna.participant_id}  # (a mirror has no leg here)

    cluster.tick(15, ((b, bernd, 440.0),))
    assert hanna.loudness() > 1000, "Hanna on node a does not hear Bernd on node b"
    cluster.tick(15, ((a, hanna, 660.0),))
    assert bernd.loudness() > 1000, "Bernd on node b does not hear Hanna on node a"
    cluster.tick(15)
    assert hanna.loudness() < 50 and bernd.loudness() < 50  # (and nobody hears themselves back)


async def test_a_hosts_mute_on_one_node_silences_a_participant_of_the_other(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    bernd = b.join("Bernd")
    cluster.pump()
    a.room.mute(hanna.participant_id, bernd.participant_id, forbid_self_unmute=True)
    cluster.pump()
    served = b.room.participants[bernd.participant_id]
    assert served.host_muted and served.self_unmute_forbidden  # (node b applied it: its mixer enforces it)
    cluster.tick(20, ((b, bernd, 440.0),))
    assert hanna.loudness(10) < 50, "a muted participant of node b is heard on node a"
    assert b.conference.mixer.stats(bernd.participant_id).frames_dropped_muted > 0  # type: ignore[union-attr]
    with pytest.raises(NotAllowed):
        b.room.set_self_muted(bernd.participant_id, False)
    # The host allows it again: the command crosses, and Bernd is heard
    a.room.unmute(hanna.participant_id, bernd.participant_id)
    cluster.pump()
    assert not b.room.participants[bernd.participant_id].host_muted
    cluster.tick(15, ((b, bernd, 440.0),))
    assert hanna.loudness() > 1000


async def test_mute_all_and_remove_and_leaving_cross_the_link(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    bernd = b.join("Bernd")
    berta = b.join("Berta")
    cluster.pump()
    a.room.mute_all_guests(hanna.participant_id, forbid_self_unmute=True)
    cluster.pump()
    assert all(p.host_muted for p in b.room.participants.values() if not p.is_host)
    assert b.room.guests_muted_on_entry and b.room.guests_forbidden_on_entry  # (the policy, for latecomers there)
    assert not b.room.participants[hanna.participant_id].host_muted
    a.room.remove(hanna.participant_id, berta.participant_id)
    cluster.pump()
    assert berta.participant_id not in b.room.participants
    b.room.leave(bernd.participant_id)
    b.conference.detach(bernd.participant_id)
    cluster.pump()
    # Node b serves nobody now: the link is gone on both sides, and so are b's people on a
    assert set(a.room.participants) == {hanna.participant_id}
    assert "#node:node-b" not in a.conference.mixer and not b.room.participants


async def test_the_lost_node_takes_its_people_with_it_and_a_shutdown_ends_only_its_share(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    b.join("Bernd")
    cluster.pump()
    b.directory.end_meetings("shutdown")
    cluster.pump()
    assert set(a.room.participants) == {hanna.participant_id}  # (a's meeting goes on)
    bernd = b.join("Bernd")
    cluster.pump()
    assert bernd.participant_id in a.room.participants
    a.cascade.peer_down("node-b")
    assert set(a.room.participants) == {hanna.participant_id}
    assert "#node:node-b" not in a.conference.mixer


async def test_a_hosts_end_ends_the_meeting_on_both(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    b.join("Bernd")
    cluster.pump()
    a.room.end(hanna.participant_id)
    cluster.pump()
    assert not a.room.participants and not b.room.participants


async def test_bad_messages_are_refused_and_change_nothing(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    a.join("Hanna", HOST_PIN)
    bernd = b.join("Bernd")
    cluster.pump()
    before = a.room.public(for_host=True)
    for bad in (
        {"type": "command", "room": "council", "id": "x", "action": "explode"},
        {"type": "participant", "room": "council", "id": "../../etc", "name": "x"},
        {"type": "rooms", "active": ["a" * 500]},
        {"no": "type"},
    ):
        a.cascade.on_message("node-b", bad)
    assert a.cascade.messages_refused == 4
    # A command for a participant a does not serve (a mirror of b's) is not applied by a
    a.cascade.on_message("node-b", {"type": "command", "room": "council", "id": bernd.participant_id, "action": "remove"})
    assert a.room.public(for_host=True)["participants"] == before["participants"]


def test_every_node_picks_the_same_hub() -> None:
    nodes = {"node-a", "node-b", "node-c"}
    hubs = {hub_of(f"room-{i}", nodes) for i in range(100)}
    assert hubs == nodes  # (rooms spread over the nodes)
    assert hub_of("council", nodes) == hub_of("council", set(sorted(nodes, reverse=True)))


async def test_three_nodes_meet_in_a_star_and_an_observer_shows_and_commands_the_meeting() -> None:
    """Workers of one machine observe: a and c serve people of the room, b serves nobody there but
    shows everyone (for its API) and its command reaches the node that serves the participant."""
    cluster = Cluster(("node-a", "node-b", "node-c"), observe=True)
    a, b, c = cluster.nodes["node-a"], cluster.nodes["node-b"], cluster.nodes["node-c"]
    hanna = a.join("Hanna", HOST_PIN)
    carl = c.join("Carl")
    cluster.pump()
    for node in (a, b, c):
        assert set(node.room.participants) == {hanna.participant_id, carl.participant_id}, node.name
    assert not b.conference.links and not b.room.has_own_participants  # (no audio to an observer)
    cluster.tick(15, ((c, carl, 440.0),))
    assert hanna.loudness() > 1000
    b.room.mute(None, carl.participant_id, forbid_self_unmute=True)  # (the API on the observer)
    cluster.pump()
    assert c.room.participants[carl.participant_id].host_muted
    assert a.room.participants[carl.participant_id].self_unmute_forbidden
    cluster.tick(20, ((c, carl, 440.0),))
    assert hanna.loudness(10) < 50


async def test_three_serving_nodes_hear_each_voice_once() -> None:
    cluster = Cluster(("node-a", "node-b", "node-c"))
    a, b, c = cluster.nodes["node-a"], cluster.nodes["node-b"], cluster.nodes["node-c"]
    legs = {node.name: node.join(f"P{node.name}") for node in (a, b, c)}
    cluster.pump()
    links = {node.name: len(node.conference.links) for node in (a, b, c)}
    assert sorted(links.values()) == [1, 1, 2], links  # (a star: the hub has two links)
    for node in (a, b, c):  # (the edges see each other through the hub)
        assert len(node.room.participants) == 3, node.name
    speaker = next(name for name, n in links.items() if n == 1)
    cluster.tick(20, ((cluster.nodes[speaker], legs[speaker], 440.0),))
    for name, leg in legs.items():
        if name != speaker:
            assert leg.loudness() > 1000, f"{name} does not hear {speaker}"
    loud = [max(float(abs(f.astype(int)).mean()) for f in leg.heard[-5:]) for n, leg in legs.items() if n != speaker]
    assert max(loud) < 1.5 * min(loud)  # (nobody hears it twice, louder)


async def test_a_host_admits_and_denies_people_another_node_waits(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    a.room.lobby_enabled = b.room.lobby_enabled = True
    hanna = a.join("Hanna", HOST_PIN)
    events: list[RoomEvent] = []
    b.room.subscribe(events.append)
    first = b.room.request_join("Erste", None, LegKind.PHONE).lobby_entry
    second = b.room.request_join("Zweite", None, LegKind.BROWSER).lobby_entry
    assert first is not None and second is not None
    cluster.pump()
    assert [entry["name"] for entry in a.room.lobby_public()] == ["Erste", "Zweite"]  # (the host's view, in order)
    assert b.room.in_use and not b.room.has_own_participants  # (someone waiting there links the room)
    a.room.admit(hanna.participant_id, first.id)
    a.room.deny(hanna.participant_id, second.id)
    cluster.pump()
    assert first.id in b.room.participants and not b.room.lobby  # (node b let her in)
    assert [e.type for e in events if e.participant == second.id] == ["lobby_changed", "lobby_denied", "lobby_changed"]
    assert a.room.participants[first.id].extra["via"] == "node-b" and not a.room.lobby


async def test_the_workers_of_one_machine_carry_the_plain_samples_authenticated() -> None:
    """L16 (no codec) between workers: heard across; a forged, altered or replayed packet is dropped."""
    from gateway.cluster.cascade import LOCAL_LINK_FORMAT

    cluster = Cluster()
    for node in cluster.nodes.values():
        node.cascade.link_format = LOCAL_LINK_FORMAT
        for peer in node.cascade.peers.values():
            peer.media.codec = LOCAL_LINK_FORMAT.codec
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    bernd = b.join("Bernd")
    captured: list[bytes] = []
    send = b.cascade._send_media
    b.cascade._send_media = lambda peer, packet: (captured.append(packet), send(peer, packet))[1]  # type: ignore[method-assign]
    cluster.pump()
    cluster.tick(15, ((b, bernd, 440.0),))
    assert hanna.loudness() > 1000
    media = a.cascade.peers["node-b"].media
    taken = media.counters.packets_in
    packet = captured[-1]
    for forged in (packet, packet[:20] + bytes([packet[20] ^ 1]) + packet[21:], packet[:-16] + bytes(16)):
        a.cascade.on_media("node-b", forged, ("node-b", 1))
    assert media.counters.packets_in == taken and media.counters.dropped_unauthentic == 3


# -- video: cameras cross the links as they were encoded, to whoever takes them ---------------------


class CameraLeg(Phone):
    """A leg that sends and takes VP8 (a browser, as far as the conference sees it)."""

    kind = LegKind.BROWSER

    def __init__(self, participant_id: str) -> None:
        super().__init__(participant_id)
        self.keyframes_asked = 0
        self.seen: list[tuple[str, EncodedVideoFrame]] = []

    def _ask(self) -> None:
        self.keyframes_asked += 1

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return {StreamKind.MAIN: VideoStream(StreamKind.MAIN, ("VP8",), self._ask)}

    def send_video(self, source: Any, frame: Any) -> None:
        self.seen.append((source.participant, frame))


def picture(n: int, keyframe: bool, size: int = 3000) -> EncodedVideoFrame:
    """A VP8-shaped frame (a 320x240 keyframe header) of `size` bytes, distinct per n."""
    head = b"\x10\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" if keyframe else b"\x11\x00\x00"
    body = bytes((n * 7 + i) & 0xFF for i in range(size - len(head)))
    return EncodedVideoFrame("VP8", head + body, n * 3000, keyframe)


def join_camera(node: Node, name: str, pin: str | None = None) -> CameraLeg:
    result = node.room.request_join(name, pin, LegKind.BROWSER)
    assert result.participant is not None
    leg = CameraLeg(result.participant.id)
    node.conference.attach(leg)
    return leg


async def test_a_camera_crosses_whole_to_whoever_takes_it_and_only_then(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = join_camera(a, "Hanna", HOST_PIN)
    bernd = join_camera(b, "Bernd")
    cluster.pump()
    camera = VideoSourceId(bernd.participant_id)
    assert camera in a.conference.video.source_ids()  # (his mirror has a camera: a browser or the picture may take it)
    b_media = b.cascade.peers["node-a"].media
    b.conference.push_video(bernd.participant_id, picture(0, True))
    cluster.pump()
    assert b_media.counters.video_frames_out == 0  # (nobody on node a takes it yet: nothing crosses)

    a.conference.set_video_subscriptions(hanna.participant_id, [camera])
    cluster.pump()
    assert bernd.keyframes_asked >= 1  # (node a's new viewer needs a keyframe: asked of his browser)
    frames = [picture(1, True, 9000), picture(2, False), picture(3, False, 40)]
    for frame in frames:
        b.conference.push_video(bernd.participant_id, frame)
    cluster.pump()
    assert [(pid, f.data, f.keyframe, f.timestamp) for pid, f in hanna.seen] == [
        (bernd.participant_id, f.data, f.keyframe, f.timestamp) for f in frames
    ]
    assert b_media.counters.video_frames_out == 3

    # A fragment lost: nothing more until a keyframe, which his browser is asked for
    for node in (a, b):
        node.conference.video._keyframe_interval = 0.0  # (no rate limit: the test runs within it)
    asked = bernd.keyframes_asked
    sent: list[bytes] = []
    send = b.cascade._send_media
    b.cascade._send_media = lambda peer, packet: sent.append(packet)  # type: ignore[method-assign]
    b.conference.push_video(bernd.participant_id, picture(4, False, 2500))  # (three fragments)
    b.cascade._send_media = send  # type: ignore[method-assign]
    for packet in sent[:1] + sent[2:]:
        a.cascade.on_media("node-b", packet, ("node-b", 1))
    b.conference.push_video(bernd.participant_id, picture(5, False))
    cluster.pump()
    assert len(hanna.seen) == 3 and a.cascade.peers["node-b"].media.counters.video_frames_lost == 1
    assert bernd.keyframes_asked > asked
    b.conference.push_video(bernd.participant_id, picture(6, True))
    cluster.pump()
    assert len(hanna.seen) == 4 and hanna.seen[-1][1].keyframe

    # Nobody takes it any more: it stops crossing
    a.conference.set_video_subscriptions(hanna.participant_id, [])
    cluster.pump()
    b.conference.push_video(bernd.participant_id, picture(7, True))
    cluster.pump()
    assert b_media.counters.video_frames_out == 6 and len(hanna.seen) == 4
    # He leaves: his camera goes from node a too
    b.room.leave(bernd.participant_id)
    cluster.pump()
    assert camera not in a.conference.video.source_ids()


async def test_a_camera_reaches_the_far_edge_through_the_hub_and_video_off_crosses() -> None:
    cluster = Cluster(("node-a", "node-b", "node-c"))
    legs = {name: join_camera(node, f"P{name}") for name, node in cluster.nodes.items()}
    cluster.pump()
    hub = hub_of("council", set(cluster.nodes))
    edge, far = sorted(set(cluster.nodes) - {hub})
    viewer, sender = legs[edge], legs[far]
    camera = VideoSourceId(sender.participant_id)
    cluster.nodes[edge].conference.set_video_subscriptions(viewer.participant_id, [camera])
    cluster.pump()
    cluster.nodes[far].conference.push_video(sender.participant_id, picture(1, True, 5000))
    cluster.pump()
    assert [f.data for _, f in viewer.seen] == [picture(1, True, 5000).data]
    assert legs[hub].seen == []  # (the hub forwards it; nobody there takes it)
    cluster.nodes[far].room.set_video_off(sender.participant_id, True)
    cluster.pump()
    assert cluster.nodes[edge].room.participants[sender.participant_id].video_off


async def test_forged_video_fragments_are_dropped() -> None:
    from gateway.cluster.media import VIDEO_HEADER, VIDEO_PAYLOAD_TYPE
    from gateway.rtp.aiortc_glue import RtpPacket

    cluster = Cluster()
    a, b = cluster.a, cluster.b
    hanna = join_camera(a, "Hanna", HOST_PIN)
    bernd = join_camera(b, "Bernd")
    cluster.pump()
    a.conference.set_video_subscriptions(hanna.participant_id, [VideoSourceId(bernd.participant_id)])
    cluster.pump()
    media_b = b.cascade.peers["node-a"].media
    media_a = a.cascade.peers["node-b"].media
    ssrc = next(iter(media_a._video_in))
    before = media_a.counters.video_fragments_malformed
    headers = ((0, 0, 0, 0, 0), (0, 5, 3, 0, 0), (0, 0, 9999, 0, 0), (0, 0, 1, 0x80, 0), (0, 0, 1, 0, 9))
    for seq, header in enumerate(headers, start=900):
        rtp = RtpPacket(payload_type=VIDEO_PAYLOAD_TYPE, sequence_number=seq, timestamp=0, ssrc=ssrc,
                        payload=VIDEO_HEADER.pack(*header) + b"x")  # fmt: skip
        a.cascade.on_media("node-b", media_b._protect(rtp), ("node-b", 1))  # (authentic, but malformed)
    assert media_a.counters.video_fragments_malformed == before + 5 and hanna.seen == []


class PresenterLeg(CameraLeg):
    """A camera and a content line (a room system with BFCP, a browser that shares its screen)."""

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return {
            StreamKind.MAIN: VideoStream(StreamKind.MAIN, ("VP8",), self._ask),
            StreamKind.CONTENT: VideoStream(StreamKind.CONTENT, ("VP8",), self._ask),
        }


async def test_the_presentation_floor_and_its_content_cross_and_a_host_elsewhere_stops_it(cluster: Cluster) -> None:
    from gateway.rooms.floor import Content

    a, b = cluster.a, cluster.b
    hanna = join_camera(a, "Hanna", HOST_PIN)
    result = b.room.request_join("Bernd", None, LegKind.BROWSER)
    assert result.participant is not None
    bernd = PresenterLeg(result.participant.id)
    b.conference.attach(bernd)
    cluster.pump()
    b.room.start_presenting(bernd.participant_id, Content.SCREEN)
    cluster.pump()
    shown = a.room.presentation
    assert shown is not None and shown.presenter == bernd.participant_id and shown.content is Content.SCREEN
    content = VideoSourceId(bernd.participant_id, StreamKind.CONTENT)
    a.conference.set_video_subscriptions(hanna.participant_id, [content])  # (her page's content tile)
    cluster.pump()
    b.conference.push_video(bernd.participant_id, picture(1, True, 4000), StreamKind.CONTENT)
    cluster.pump()
    assert [(source, f.data) for source, f in hanna.seen] == [(bernd.participant_id, picture(1, True, 4000).data)]

    # Hanna, a host on node a, stops it: node b ends it, and both agree nobody presents
    a.room.stop_presenting(hanna.participant_id)
    cluster.pump()
    assert a.room.presentation is None and b.room.presentation is None

    # Both start at once (before either heard of the other): the later start wins on both nodes
    b.room._wall, a.room._wall = (lambda: 2000.0), (lambda: 2000.5)
    b.room.start_presenting(bernd.participant_id, Content.SCREEN)
    a.room.start_presenting(hanna.participant_id, Content.SCREEN)
    cluster.pump()
    for node in (a, b):
        assert node.room.presentation is not None and node.room.presentation.presenter == hanna.participant_id, node.name
    # The presenter leaves: nobody presents anywhere
    a.room.leave(hanna.participant_id)
    cluster.pump()
    assert b.room.presentation is None


async def test_room_settings_cross_and_the_hub_alone_speaks_for_the_room(cluster: Cluster) -> None:
    from gateway.transcode.layout import Layout

    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    bernd = b.join("Bernd")
    cluster.pump()
    a.room.set_layout(hanna.participant_id, Layout.GRID)
    a.room.set_spotlight(hanna.participant_id, bernd.participant_id)  # (a participant of node b)
    a.room.set_chat(hanna.participant_id, False)
    cluster.pump()
    assert b.room.layout is Layout.GRID and b.room.spotlight == bernd.participant_id and not b.room.chat.enabled
    a.room.set_spotlight(hanna.participant_id, None)
    cluster.pump()
    assert b.room.spotlight is None
    hub = hub_of("council", {"node-a", "node-b"})
    assert {n.name: n.cascade.publishes("council") for n in (a, b)} == {"node-a": hub == "node-a", "node-b": hub == "node-b"}
    # A room command naming a layout this node does not know changes nothing, and the link stays
    b.cascade.on_message("node-a", {"type": "room_command", "room": "council", "action": "layout", "value": "mosaic"})
    assert b.room.layout is Layout.GRID and "node-a" in b.cascade.peers


async def test_the_chat_crosses_to_every_node_and_a_hosts_removal_too() -> None:
    cluster = Cluster(("node-a", "node-b", "node-c"))
    nodes = cluster.nodes
    people = {name: node.join(f"P{name}", HOST_PIN if name == "node-a" else None) for name, node in nodes.items()}
    cluster.pump()
    nodes["node-c"].room.send_chat(people["node-c"].participant_id, "Guten Morgen")
    cluster.pump()
    for name, node in nodes.items():  # (through the hub, whichever node it is)
        assert [(m.sender, m.text, m.name) for m in node.room.chat.messages] == [(people["node-c"].participant_id, "Guten Morgen", "Pnode-c")], name
    # A host on node a removes it (by node a's id): gone everywhere
    (shown,) = nodes["node-a"].room.chat.messages
    nodes["node-a"].room.remove_chat(people["node-a"].participant_id, shown.id)
    cluster.pump()
    assert all(not node.room.chat.messages for node in nodes.values())
    # A message from someone a node does not know is not shown; a host's "chat off" crosses
    nodes["node-b"].cascade.on_message(next(iter(nodes["node-b"].cascade.peers)), {
        "type": "chat", "room": "council", "id": 7, "sender": "nobody", "name": "X", "text": "hi", "host": False, "at": 0.0,
    })  # fmt: skip
    assert not nodes["node-b"].room.chat.messages
    nodes["node-a"].room.set_chat(people["node-a"].participant_id, False)
    cluster.pump()
    assert all(not node.room.chat.enabled for node in nodes.values())


async def test_every_simulcast_layer_crosses_and_each_viewer_there_gets_the_one_it_can_take(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    hanna = join_camera(a, "Hanna", HOST_PIN)
    carl = join_camera(a, "Carl")
    bernd = join_camera(b, "Bernd")
    cluster.pump()
    camera = VideoSourceId(bernd.participant_id)
    for viewer in (hanna, carl):
        a.conference.set_video_subscriptions(viewer.participant_id, [camera])
    a.conference.video.want_layer(carl.participant_id, camera, 0)  # (Carl's link is short)
    cluster.pump()
    for n in range(4):
        for layer in (0, 1):
            frame = picture(n * 2 + layer, n == 0, 2000 + layer * 2000)
            b.conference.push_video(bernd.participant_id, EncodedVideoFrame("VP8", frame.data, n * 3000, n == 0, layer=layer))
        cluster.pump()
    # (Hanna: the first keyframe came before the source was known to send two layers, as it would
    # in one process; from the better layer's keyframe on, that one)
    assert [f.layer for _, f in hanna.seen] == [0, 1, 1, 1, 1]
    assert {f.layer for _, f in carl.seen} == {0} and len(carl.seen) == 4


async def test_two_hosts_changing_a_setting_at_once_agree_on_the_later_and_a_late_node_follows() -> None:
    from gateway.transcode.layout import Layout

    cluster = Cluster()
    a, b = cluster.a, cluster.b
    hanna = a.join("Hanna", HOST_PIN)
    bert = b.join("Bert", HOST_PIN)
    cluster.pump()
    # (before either hears of the other's: Bert's is the later)
    a.room._wall, b.room._wall = (lambda: 3000.0), (lambda: 3000.5)
    a.room.set_spotlight(hanna.participant_id, hanna.participant_id)
    b.room.set_spotlight(bert.participant_id, bert.participant_id)
    cluster.pump()
    assert a.room.spotlight == b.room.spotlight == bert.participant_id
    a.room.set_layout(hanna.participant_id, Layout.GRID)
    a.room.set_locked(hanna.participant_id, True)
    cluster.pump()

    # A third node whose first participant comes now follows the meeting's settings as they are
    late = Cluster(("node-a", "node-b", "node-c"))
    for name, node in late.nodes.items():
        node.room._wall = (lambda: 4000.0) if name == "node-a" else (lambda: 3999.0)
    host = late.a.join("Hanna", HOST_PIN)
    late.pump()
    late.a.room.set_layout(host.participant_id, Layout.GRID)
    late.a.room.set_locked(host.participant_id, True)
    late.pump()
    c = late.nodes["node-c"]
    assert c.room.layout is Layout.SPEAKER and not c.room.locked  # (nobody there: not linked yet)
    result = c.room.request_join("Cora", HOST_PIN, LegKind.PHONE)
    assert result.participant is not None
    c.conference.attach(Phone(result.participant.id))
    late.pump()
    assert c.room.layout is Layout.GRID and c.room.locked
