"""The test H.264 RTP sender (tests/support/rtp_video.py), the stand-in for a room system's content
stream, checked without the gateway: what it sends to a local port is captured and read by tshark
(tests/support/video.h264_rtp_check: one SSRC, well-formed RFC 6184 packets, marker bits, 15 fps),
and the captured payloads, put back together here, decode with FFmpeg (PyAV) into the clip's
pictures, across the clip's loop. A PLI to its RTCP port brings the next key frame at once."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from tests.support.rtp_video import FU_A, H264RtpSender, access_units, annexb_clip, depacketize, nal_units
from tests.support.video import (
    PacketCapture,
    colours_seen,
    h264_rtp_check,
    looks_like_testsrc2,
    make_test_clip,
    rtp_packets,
)

# Encoding is light here, but decoding and tshark share the machine's cores with the video peers.
pytestmark = pytest.mark.xdist_group("serial")

PAYLOAD_TYPE = 96


def _pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RTCP PSFB PLI (RFC 4585 6.3.1): V=2, FMT=1, PT=206, length 2."""
    return struct.pack("!BBHII", 0x80 | 1, 206, 2, sender_ssrc, media_ssrc)


def test_h264_rtp_sender_sends_well_formed_decodable_h264(tmp_path: Path) -> None:
    clip = make_test_clip(size="640x360", rate=15, seconds=2)  # short: 3 s of sending loops it once
    frames_in_clip = len(access_units(nal_units(annexb_clip(clip).read_bytes())))
    assert frames_in_clip == 30  # key frames at 0 and 15
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = int(sink.getsockname()[1])
    feedback = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = H264RtpSender(("127.0.0.1", port), PAYLOAD_TYPE, ssrc=0x5EC0DE, fps=15, clip=clip, rtcp=True)
    assert sender.rtcp_port == sender.port + 1
    try:
        with PacketCapture(tmp_path / "sent.pcapng", [port]) as capture:
            with sender:
                # a PLI three frames in (the clip's next key frame is 12 frames on): the sender jumps
                # to that key frame at once; later the clip's end loops to its start
                sender.wait_frames(3)
                pli_sent = time.time()
                feedback.sendto(_pli(0x1234, sender.ssrc), ("127.0.0.1", sender.port + 1))
                sender.wait_frames(45)  # 3 s at 15 fps
            capture.flush()
    finally:
        sink.close()
        feedback.close()

    report = h264_rtp_check(capture.path, port, PAYLOAD_TYPE)
    assert report.problems() == [], report.describe()
    assert report.ssrcs == {0x5EC0DE} and report.sequence_gaps == 0, report.describe()
    assert (report.packets, report.frames) == (sender.packets_sent, sender.frames_sent), report.describe()
    assert report.frame_rate == 15 and report.timestamp_steps.keys() == {6000}, report.describe()
    # slices larger than 1200 octets go as FU-A (at 640x360, nearly all), SPS / PPS / SEI as they are
    assert report.packet_types[FU_A] > 0 and report.max_payload <= 1200, report.describe()
    assert {FU_A, 6, 7, 8} <= set(report.packet_types) and {1, 5, 6, 7, 8} == set(report.nal_types), report.describe()
    assert {7, 8} <= set(report.dissected_types), report.describe()  # (tshark names FU-A fragments 28)
    assert report.key_frames == sender.key_frames_sent >= 3, report.describe()

    # the PLI, seen by the sender, and a key frame right after it
    assert (sender.pli_received, sender.fir_received) == (1, 0)
    assert any(0 <= t - pli_sent < 0.3 for t in report.key_frame_times), (pli_sent, report.key_frame_times)
    jumped, indexes = sender.frame_indexes.index(15), sender.frame_indexes
    assert 3 <= jumped <= 4 and indexes[:jumped] == list(range(jumped)), indexes
    assert (29, 0) in zip(indexes, indexes[1:], strict=False), indexes  # the loop (decoded below)

    # decodable: every frame sent comes out of FFmpeg's decoder, the pictures are testsrc2's
    import av

    stream = depacketize([packet.payload for packet in rtp_packets(capture.path, port, PAYLOAD_TYPE)])
    decoder = av.CodecContext.create("h264", "r")
    chunks = decoder.parse(stream) + decoder.parse(None)  # (None: the parser's last access unit)
    pictures = [frame for chunk in chunks for frame in decoder.decode(chunk)] + decoder.decode(None)
    assert len(pictures) == sender.frames_sent, (len(pictures), sender.frames_sent)
    last = pictures[-1].to_ndarray(format="rgb24")
    assert last.shape == (360, 640, 3) and looks_like_testsrc2(last), colours_seen(last)
