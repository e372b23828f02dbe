"""The backplane's video fragments (gateway/cluster/media.py): a frame cut into packets and put
together again, whatever order and loss the network gives, and nothing malformed gets through."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cluster.media import VIDEO_CHUNK, VIDEO_HEADER, PeerMedia
from gateway.rtp.aiortc_glue import RtpPacket
from gateway.transcode.audio import AudioCodec
from gateway.transcode.video import EncodedVideoFrame

KEY = bytes(range(30))
SSRC = 0x1234


def pair() -> tuple[PeerMedia, PeerMedia, list[EncodedVideoFrame], list[int]]:
    sender = PeerMedia(KEY, KEY[::-1], address=("a", 1))
    receiver = PeerMedia(KEY[::-1], KEY, address=("b", 1))
    got: list[EncodedVideoFrame] = []
    lost: list[int] = []
    receiver.open_video_in(SSRC, got.append, lambda: lost.append(1))
    return sender, receiver, got, lost


def test_frames_cross_whole_in_any_order_and_a_loss_waits_for_a_keyframe() -> None:
    sender, receiver, got, lost = pair()
    frames = [EncodedVideoFrame("H264", bytes([n]) * (n * 1000 + 7), n * 3000, n in (0, 3)) for n in range(5)]
    packets = [sender.protect_video("cam", SSRC, frame) for frame in frames]
    assert [len(p) for p in packets] == [-(-len(f.data) // VIDEO_CHUNK) for f in frames]
    for packet in reversed(packets[0]):  # (fragments of one frame in any order)
        receiver.receive(packet, ("b", 1))
    for packet in packets[1]:
        receiver.receive(packet, ("b", 1))
    for packet in packets[2][1:]:  # (its first fragment lost)
        receiver.receive(packet, ("b", 1))
    for frame_packets in packets[3:]:
        for packet in frame_packets:
            receiver.receive(packet, ("b", 1))
    assert [(f.data, f.keyframe, f.timestamp, f.layer, f.codec) for f in got] == [
        (f.data, f.keyframe, f.timestamp, f.layer, "H264") for f in (frames[0], frames[1], frames[3], frames[4])
    ]
    assert lost and receiver.counters.video_frames_lost == 1


def test_a_loss_in_one_simulcast_layer_stops_only_that_layer_until_its_keyframe() -> None:
    sender, receiver, got, lost = pair()
    frames = [
        EncodedVideoFrame("VP8", b"k0" * 700, 0, True, layer=0),
        EncodedVideoFrame("VP8", b"k1" * 900, 0, True, layer=1),
        EncodedVideoFrame("VP8", b"d1" * 900, 3000, False, layer=1),  # (one fragment lost)
        EncodedVideoFrame("VP8", b"d0" * 300, 3000, False, layer=0),
        EncodedVideoFrame("VP8", b"e1" * 300, 6000, False, layer=1),  # (layer 1: waits for a keyframe)
        EncodedVideoFrame("VP8", b"e0" * 300, 6000, False, layer=0),
        EncodedVideoFrame("VP8", b"K1" * 300, 9000, True, layer=1),
    ]
    for n, frame in enumerate(frames):
        packets = sender.protect_video("cam", SSRC, frame)
        for packet in packets[1:] if n == 2 else packets:
            receiver.receive(packet, ("b", 1))
    assert [(f.data[:2], f.layer) for f in got] == [(b"k0", 0), (b"k1", 1), (b"d0", 0), (b"e0", 0), (b"K1", 1)]
    assert lost and receiver.counters.video_frames_lost == 1


def test_a_frame_too_big_or_of_an_unknown_codec_is_not_sent() -> None:
    sender, _, _, _ = pair()
    assert sender.protect_video("cam", SSRC, EncodedVideoFrame("AV1", b"x", 0, True)) == []
    assert sender.protect_video("cam", SSRC, EncodedVideoFrame("VP8", b"", 0, True)) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 6), st.integers(0, 255), st.integers(0, 5), st.binary(max_size=40)), max_size=30))
def test_any_authentic_fragments_never_break_the_receiver(fragments: list[tuple[int, int, int, int, int, bytes]]) -> None:
    """Authentic packets with any header: no exception, and a frame passes only when every
    fragment of it came (a keyframe first), made of exactly those fragments."""
    sender = PeerMedia(KEY, KEY[::-1], address=("a", 1), codec=AudioCodec.L16)
    receiver = PeerMedia(KEY[::-1], KEY, address=("b", 1), codec=AudioCodec.L16)
    got: list[EncodedVideoFrame] = []
    receiver.open_video_in(SSRC, got.append, lambda: None)
    for seq, (number, index, count, flags, layer, body) in enumerate(fragments):
        payload = VIDEO_HEADER.pack(number, index, count, flags, layer) + body
        packet = RtpPacket(payload_type=100, sequence_number=seq, timestamp=7, ssrc=SSRC, payload=payload)
        receiver.receive(sender._protect(packet), ("b", 1))
    assert not got or got[0].keyframe  # (after nothing, or a loss: a keyframe first)
    assert all(len(frame.data) <= 6 * 40 for frame in got)
    assert receiver.counters.video_frames_in == len(got)
