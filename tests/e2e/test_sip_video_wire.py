"""SIP video with real peers, judged on the wire: sipp scenarios (tests/sipp/video_*.xml) for the
offer/answer cases room systems bring (RTP/AVPF with rtcp-fb, a dual SRTP + plain offer, video
added and removed by re-INVITE while the audio goes on, only unknown video codecs, a slides line
beside main video, no rtcp-fb at all: key frames asked by SIP INFO, at most one a second, H.264 in
packetization-mode 1 only); baresip's H.264 composed picture checked by tshark (packetization-mode
0: single NAL unit packets, marker bits, 90 kHz timestamps, one SSRC, SPS and PPS before IDRs) and
decoded again from the captured packets; and a browser's subscription turning into an RTCP PLI
towards baresip, answered with a key frame the browser decodes.

sipp checks the messages (its exit code is 0 only when every step and every `ereg check_it` of the
scenario held); the tests check what the gateway made of the call: its participants API (media
counters), its log, and the packets tshark captured. They wait on state, never on fixed sleeps.

One gateway serves the tests of this module (on each test worker): each test's calls end before the
next starts (the `demo` fixture waits for the room to empty), and each test fails on an error its
calls made the gateway log.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.baresip import Baresip, free_rtp_ports
from tests.support.browser import in_meeting, join, video_frames_by_sender
from tests.support.gateway import RunningGateway, gateway_per_module, logged, participant, wait_until
from tests.support.sdp_answers import answer_to, counters, grows, media_lines
from tests.support.sipp import SipMessage, Sipp, free_udp_port
from tests.support.video import (
    PacketCapture,
    RtpPacket,
    h264_rtp_check,
    rtcp_feedback_check,
    rtp_packets,
    rtp_streams,
)

TSHARK = "tshark"


# -- one gateway for the module: `shared_gateway`, and `demo` for each test ------------------------

shared_gateway, demo = gateway_per_module("demo")


# -- what sipp received ------------------------------------------------------------------------------


def fast_update_infos(sipp: Sipp) -> list[SipMessage]:
    """The SIP INFOs asking for a key frame (RFC 5168) that sipp received from the gateway."""
    return [
        m
        for m in sipp.messages()
        if not m.sent
        and m.start_line.startswith("INFO ")
        and m.header("Content-Type") == "application/media_control+xml"
        and "<picture_fast_update/>" in m.body
    ]


# -- sipp scenarios against the gateway ------------------------------------------------------------


def test_avpf_offer_is_answered_in_avpf_with_rtcp_feedback_and_no_sip_info(demo: RunningGateway, tmp_path: Path) -> None:
    """video_avpf.xml: H.264 offered as RTP/AVPF (packetization-mode 1 as 96, then 0 as 97) with
    nack, nack pli and ccm fir. The answer takes it in RTP/AVPF with a=rtcp-fb lines for each payload
    type it answers (sipp checks, the test reads them too); key frames are never asked by SIP INFO
    (sipp would abort on an INFO it does not expect). (sipp sends no video: no PLI can name its
    SSRC, so the gateway sends none.) The room's composed picture goes to sipp's video port in
    the first payload type answered."""
    media_port = free_udp_port(span=4)
    with PacketCapture(tmp_path / "video.pcapng", [media_port + 2]) as capture:
        sipp = Sipp(demo, tmp_path / "sipp", "video_avpf.xml", "demo", media_port=media_port)
        member = wait_until(lambda: participant(demo, "demo", "AVPF Video"), 15, what="the AVPF caller in demo")
        assert isinstance(member, dict) and "video_main" in member["media"], member  # type: ignore[operator]
        result = sipp.wait()
        capture.flush()
    assert result.returncode == 0, result.describe()

    video = [m for m in media_lines(answer_to(sipp, "1 INVITE").body) if m.kind == "video"]
    assert len(video) == 1 and video[0].port != 0 and video[0].proto == "RTP/AVPF", video
    feedback = video[0].attribute("rtcp-fb")
    for pt in video[0].formats:  # feedback for every answered payload type
        assert f"{pt} nack pli" in feedback, (pt, feedback)
    (agreed,) = logged(demo, "video agreed", sipp.call_id)
    assert agreed["avpf"] is True and "nack pli" in str(agreed["feedback"]).split(","), agreed
    assert not fast_update_infos(sipp)

    streams = rtp_streams(capture.path, media_port + 2)
    assert len(streams) == 1 and set(next(iter(streams.values()))) == {int(video[0].formats[0])}, streams


def test_dual_srtp_and_plain_video_offer_takes_exactly_one_video_line(demo: RunningGateway, tmp_path: Path) -> None:
    """video_dual_srtp.xml: the same H.264 offered as RTP/SAVP (SDES) and as RTP/AVP beside plain
    audio. The answer keeps the three lines in order, exactly one video line with a port: the plain
    one, whose security matches the audio taken; the SRTP one at port 0. No rtcp-fb was offered: the
    gateway asks for a key frame by SIP INFO, which sipp answers (and checks)."""
    sipp = Sipp(demo, tmp_path / "sipp", "video_dual_srtp.xml", "demo")
    wait_until(lambda: participant(demo, "demo", "Dual Video"), 15, what="the dual-offer caller in demo")
    wait_until(lambda: "video_main" in counters(demo, "Dual Video"), 5, what="the caller's video line in its counters")
    result = sipp.wait()
    assert result.returncode == 0, result.describe()

    lines = media_lines(answer_to(sipp, "1 INVITE").body)
    assert [(m.kind, m.proto) for m in lines] == [("audio", "RTP/AVP"), ("video", "RTP/SAVP"), ("video", "RTP/AVP")], lines
    taken = [m for m in lines if m.kind == "video" and m.port != 0]
    assert len(taken) == 1 and taken[0].proto == "RTP/AVP" and not taken[0].attribute("crypto"), lines
    assert lines[1].port == 0
    (agreed,) = logged(demo, "video agreed", sipp.call_id)
    assert agreed["codec"] == "H264" and agreed["feedback"] == "", agreed
    assert fast_update_infos(sipp), "no SIP INFO picture_fast_update for a camera without rtcp-fb"


def test_re_invites_add_then_remove_video_while_the_audio_goes_on(demo: RunningGateway, tmp_path: Path) -> None:
    """video_reinvite.xml: an audio-only call (A-law speech from sipp) joins demo; a re-INVITE adds
    H.264 (answered with a video port: sipp checks), another removes it (answered port 0). The
    participant's video line appears in its counters with the first and goes with the second, and
    its audio RTP counters, in and out, rise before, between and after the re-INVITEs."""
    name = "Reinvite Video"
    sipp = Sipp(demo, tmp_path / "sipp", "video_reinvite.xml", "demo")
    wait_until(lambda: participant(demo, "demo", name), 15, what="the caller in demo")
    before = grows(demo, name, what="audio both ways before the re-INVITEs")
    assert "video_main" not in before, before

    wait_until(lambda: sipp.received("SIP/2.0 200", "3 INVITE"), 10, what="the 200 to the re-INVITE adding video")
    # (the gateway applies an offer before it answers: the 200 in sipp's trace means applied)
    with_video = grows(demo, name, what="audio both ways with video added")
    assert "video_main" in with_video, with_video
    assert int(str(with_video["rtp_packets_in"])) > int(str(before["rtp_packets_in"]))

    wait_until(lambda: sipp.received("SIP/2.0 200", "4 INVITE"), 10, what="the 200 to the re-INVITE removing video")
    after = grows(demo, name, what="audio both ways with video removed")
    assert "video_main" not in after, after
    result = sipp.wait()
    assert result.returncode == 0, result.describe()

    added = [m for m in media_lines(answer_to(sipp, "3 INVITE").body) if m.kind == "video"]
    removed = [m for m in media_lines(answer_to(sipp, "4 INVITE").body) if m.kind == "video"]
    assert len(added) == 1 and added[0].port != 0 and len(removed) == 1 and removed[0].port == 0, (added, removed)
    assert [line["codec"] for line in logged(demo, "video agreed", sipp.call_id)] == ["H264"]
    assert len(logged(demo, "video removed", sipp.call_id)) == 1
    # the audio was never renegotiated away: one agreement, then the same codec each time
    assert {line["codec"] for line in logged(demo, "media renegotiated", sipp.call_id)} <= {"pcma"}


def test_only_unknown_video_codecs_are_declined_and_the_audio_works(demo: RunningGateway, tmp_path: Path) -> None:
    """video_unknown_codec.xml: video only in H.265 and H.263. The call is answered 200 with the
    audio and the video line at port 0 (sipp checks); the participant has no video line, and its
    audio flows both ways (A-law speech from sipp in, the room's audio out)."""
    name = "Odd Video"
    sipp = Sipp(demo, tmp_path / "sipp", "video_unknown_codec.xml", "demo")
    wait_until(lambda: participant(demo, "demo", name), 15, what="the caller in demo")
    now = grows(demo, name, keys=("rtp_packets_in", "rtp_packets_out", "audio_packets_in"), what="audio both ways")
    assert "video_main" not in now and now["codec"] == "pcma", now
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    lines = media_lines(answer_to(sipp, "1 INVITE").body)
    assert [(m.kind, m.port != 0) for m in lines] == [("audio", True), ("video", False)], lines
    assert not logged(demo, "video agreed", sipp.call_id)


def test_slides_line_beside_main_video_is_declined_and_main_taken(demo: RunningGateway, tmp_path: Path) -> None:
    """video_content_line.xml: main video (a=content:main) and a slides line (a=content:slides). The
    answer takes the main line (a port, a=content:main) and declines the slides (port 0), in order;
    the participant's video is its main line."""
    sipp = Sipp(demo, tmp_path / "sipp", "video_content_line.xml", "demo")
    wait_until(lambda: participant(demo, "demo", "Slides Video"), 15, what="the caller in demo")
    now = wait_until(lambda: (c := counters(demo, "Slides Video")) and "video_main" in c and c, 5, what="the main video line")
    assert isinstance(now, dict) and "video_content" not in now, now
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    lines = media_lines(answer_to(sipp, "1 INVITE").body)
    assert [(m.kind, m.port != 0) for m in lines] == [("audio", True), ("video", True), ("video", False)], lines
    assert lines[1].attribute("content") == ["main"], lines[1]
    assert fast_update_infos(sipp), "no SIP INFO picture_fast_update for a camera without rtcp-fb"


# -- key frames by SIP INFO (RFC 5168) -----------------------------------------------------------------


def write_pcap(path: Path, datagrams: list[tuple[float, bytes]], source_port: int = 40000, destination_port: int = 40002) -> Path:
    """A libpcap file (Ethernet, IPv4, UDP on 127.0.0.1) of these (seconds, UDP payload) datagrams:
    what sipp's play_pcap_* actions replay (they keep the timing, and send the payloads from sipp's
    media port to the port the peer's SDP names)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for identification, (when, payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), identification & 0xFFFF, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        checksum = sum(struct.unpack("!10H", header))
        checksum = (checksum & 0xFFFF) + (checksum >> 16)
        header = header[:10] + struct.pack("!H", ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF) + header[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + header + udp
        seconds = int(when)
        out.append(struct.pack("<IIII", seconds, int((when - seconds) * 1e6), len(frame), len(frame)) + frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def h264_without_key_frames(path: Path, seconds: float = 6.0, fps: int = 15, payload_type: int = 109) -> Path:
    """H.264 RTP (packetization-mode 1, one packet a frame) of non-IDR slices only: a camera whose
    key frame never comes. Nobody decodes it (a receiver waits for a key frame first)."""
    datagrams = []
    for n in range(int(seconds * fps)):
        slice_ = bytes([0x41, 0x9A]) + bytes((n + i) & 0xFF for i in range(300))  # NAL type 1, nal_ref_idc 2
        rtp = struct.pack("!BBHII", 0x80, 0x80 | payload_type, n, n * (90000 // fps), 0x0DDC0FFE) + slice_
        datagrams.append((1_700_000_000 + n / fps, rtp))
    return write_pcap(path, datagrams)


def sip_requests_from(pcap: Path, port: int, method: str) -> list[tuple[float, int, str]]:
    """The SIP requests of `method` sent from `port` in a capture, as tshark's SIP dissector reads
    them: (capture time, CSeq number, Content-Type)."""
    done = subprocess.run(
        [
            TSHARK, "-n", "-r", str(pcap), "-d", f"udp.port=={port},sip",
            "-Y", f'udp.srcport=={port} && sip.Method == "{method}"',
            "-T", "fields", "-E", "separator=/t", "-e", "frame.time_epoch", "-e", "sip.CSeq.seq", "-e", "sip.Content-Type",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("\t") for line in done.stdout.splitlines() if line.strip()]
    return [(float(r[0]), int(r[1]), r[2] if len(r) > 2 else "") for r in rows]


def test_room_system_without_rtcp_feedback_is_asked_for_key_frames_by_sip_info_at_most_once_a_second(demo: RunningGateway, tmp_path: Path) -> None:
    """video_no_feedback.xml: audio and H.264 offered without any a=rtcp-fb. In the room, the
    gateway asks the camera for a key frame by SIP INFO application/media_control+xml with
    picture_fast_update (sipp checks type and body and answers 200). Then sipp sends 6 s of H.264
    without a key frame: the room's receivers still wait for one, and the gateway keeps asking, but
    never more than once a second (counted on the wire: tshark reads the INFOs the gateway sent)."""
    name = "Old Room System"
    work = tmp_path / "work"
    h264_without_key_frames(work / "pcap" / "h264_no_idr.pcap")
    with PacketCapture(tmp_path / "sip.pcapng", [demo.sip_port]) as capture:
        sipp = Sipp(demo, tmp_path / "sipp", "video_no_feedback.xml", "demo", cwd=work)
        wait_until(lambda: participant(demo, "demo", name), 15, what="the old room system in demo")
        # its video reaches the gateway (frames that are no key frame: the asks go on)
        wait_until(
            lambda: int(str(dict(counters(demo, name).get("video_main") or {}).get("rtp_packets_in", 0))) >= 30,  # type: ignore[arg-type]
            15,
            what="the old room system's video at the gateway",
        )
        asked = dict(counters(demo, name)["video_main"])  # type: ignore[arg-type]
        result = sipp.wait(90)
        capture.flush()
    assert result.returncode == 0, result.describe()
    assert int(asked["keyframes_asked"]) >= 1, asked

    infos = sip_requests_from(capture.path, demo.sip_port, "INFO")
    assert infos and all(kind == "application/media_control+xml" for _, _, kind in infos), infos
    first_sent: dict[int, float] = {}  # by CSeq: a retransmission is the same request
    for when, cseq, _ in infos:
        first_sent.setdefault(cseq, when)
    times = sorted(first_sent.values())
    assert len(times) == len(fast_update_infos_by_cseq(sipp)), (times, len(fast_update_infos(sipp)))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # the asks go on while frames come without a key frame ...
    assert len(times) >= 4, f"only {len(times)} INFOs over 6 s of video without a key frame: {times}"
    # ... at most one a second (a little slack for the capture's clock against the gateway's)
    assert min(gaps) >= 0.95, f"INFOs {gaps} s apart"
    span = times[-1] - times[0]
    assert len(times) <= span + 1.05, f"{len(times)} INFOs in {span:.2f} s"


def fast_update_infos_by_cseq(sipp: Sipp) -> dict[str, SipMessage]:
    return {str(m.header("CSeq")): m for m in fast_update_infos(sipp)}


# -- H.264 on the wire: reassembled and decoded again -------------------------------------------------


@dataclass
class AccessUnit:
    timestamp: int
    nal_units: list[bytes]

    @property
    def types(self) -> list[int]:
        return [n[0] & 0x1F for n in self.nal_units]


def reassemble(packets: list[RtpPacket]) -> tuple[list[AccessUnit], list[str]]:
    """RFC 6184 depacketization of one SSRC's packets (in sequence order): single NAL unit packets,
    STAP-A and FU-A back into NAL units, grouped by RTP timestamp; and what could not be read."""
    ordered: list[tuple[int, RtpPacket]] = []
    base, last = 0, None
    for p in packets:
        if last is not None and p.seq < last and last - p.seq > 30000:
            base += 65536
        last = p.seq
        ordered.append((base + p.seq, p))
    ordered.sort(key=lambda item: item[0])
    units: list[AccessUnit] = []
    errors: list[str] = []
    fragment: bytearray | None = None
    for _, p in ordered:
        if not units or units[-1].timestamp != p.timestamp:
            if fragment is not None:
                errors.append(f"FU-A unfinished at the end of timestamp {units[-1].timestamp}")
                fragment = None
            units.append(AccessUnit(p.timestamp, []))
        data, unit = p.payload, units[-1]
        kind = data[0] & 0x1F
        if 1 <= kind <= 23:
            unit.nal_units.append(data)
        elif kind == 24:
            at = 1
            while at + 2 <= len(data):
                size = int.from_bytes(data[at : at + 2], "big")
                unit.nal_units.append(data[at + 2 : at + 2 + size])
                at += 2 + size
            if at != len(data):
                errors.append(f"STAP-A of {len(data)} octets does not end on a NAL unit (seq {p.seq})")
        elif kind == 28:
            start, end = bool(data[1] & 0x80), bool(data[1] & 0x40)
            if start:
                if fragment is not None:
                    errors.append(f"FU-A start inside an FU-A (seq {p.seq})")
                fragment = bytearray([(data[0] & 0xE0) | (data[1] & 0x1F)])
            elif fragment is None:
                errors.append(f"FU-A fragment without its start (seq {p.seq})")
                continue
            fragment += data[2:]
            if end:
                unit.nal_units.append(bytes(fragment))
                fragment = None
        else:
            errors.append(f"packet type {kind} (seq {p.seq})")
    return units, errors


def decode(units: list[AccessUnit]) -> tuple[int, set[tuple[int, int]], list[str]]:
    """Decodes the access units from the first IDR on with FFmpeg's H.264 decoder (PyAV): (frames
    decoded, their sizes, what went wrong: exceptions, and the decoder's error messages, e.g.
    "concealing ... errors" for slices it missed or could not read)."""
    import av
    import av.logging

    first = next((i for i, u in enumerate(units) if 5 in u.types), None)
    if first is None:
        return 0, set(), ["no IDR"]
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    frames, sizes, errors = 0, set(), []
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs:
            for unit in [*units[first:], None]:
                packet = None if unit is None else av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in unit.nal_units))
                try:
                    for frame in decoder.decode(packet):
                        frames += 1
                        sizes.add((frame.width, frame.height))
                except av.error.FFmpegError as exc:
                    errors.append(f"{unit.timestamp if unit else 'flush'}: {exc}")
    finally:
        av.logging.set_level(level)
    errors += [f"{name}: {message.strip()}" for severity, name, message in logs if severity <= av.logging.ERROR]
    return frames, sizes, errors


def first_mb_in_slice(nal: bytes) -> int:
    """The slice header's first field (ue(v), H.264 7.3.3) of a coded slice NAL unit."""
    rbsp = bytearray()
    zeros = 0
    for octet in nal[1:16]:  # (enough for the first field; emulation prevention removed)
        if zeros >= 2 and octet == 3:
            zeros = 0
            continue
        zeros = zeros + 1 if octet == 0 else 0
        rbsp.append(octet)
    bits = "".join(f"{octet:08b}" for octet in rbsp)
    leading = bits.index("1")
    return int(bits[leading : 2 * leading + 1], 2) - 1


def slices_out_of_order(units: list[AccessUnit]) -> list[str]:
    """Access units whose slices do not start at macroblock 0 and go on in increasing order (a slice
    lost, repeated or moved: each packet of mode 0 carries one)."""
    found = []
    for unit in units:
        starts = [first_mb_in_slice(n) for n in unit.nal_units if n[0] & 0x1F in (1, 5)]
        if starts and (starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:], strict=False))):
            found.append(f"{unit.timestamp}: slices at macroblocks {starts}")
    return found


def parameter_sets_before_idrs(units: list[AccessUnit]) -> list[int]:
    """The timestamps of access units whose IDR slice comes without an SPS and a PPS before it (in the
    access unit, or since the previous IDR's)."""
    missing = []
    sps = pps = False
    for unit in units:
        for kind in unit.types:
            if kind == 7:
                sps = True
            elif kind == 8:
                pps = True
            elif kind == 5:
                if not (sps and pps):
                    missing.append(unit.timestamp)
                    break
        if 5 in unit.types:
            sps = pps = False  # the next IDR needs its own
    return missing


# -- baresip: the composed picture on the wire --------------------------------------------------------


def join_call(gateway: RunningGateway, system: Baresip, room: str = "demo") -> str:
    system.start(dial=f"sip:{room}@127.0.0.1:{gateway.sip_port}")
    wait_until(system.established, 20, what=f"{system.directory.name}'s call established")
    system.send_keys("#")  # a guest: # at the PIN prompt
    name = system._settings[1]
    member = wait_until(lambda: participant(gateway, room, name), 20, what=f"{name} in the room")
    assert isinstance(member, dict)
    return str(member["id"])


def call_of(gateway: RunningGateway, name: str) -> str:
    (answered,) = [line for line in logged(gateway, "call answered") if line.get("name") == name][-1:]
    return str(answered["call_id"])


@pytest.mark.xdist_group("serial")
def test_composed_picture_to_a_packetization_mode_0_room_system_is_single_nal_unit_h264_rtp(demo: RunningGateway, tmp_path: Path) -> None:
    """Two baresips with testsrc2 cameras join demo: A takes only H.264 packetization-mode 0
    (video_codecs=H264), B offers all its codecs (mode 0 first, then mode 1). Each receives the
    composed picture (the other's camera on it). tshark reads what the gateway sends to their video
    ports: for mode 0 single NAL unit packets only (no STAP-A, no FU-A), the marker bit on the last
    packet of each frame and nowhere else, 90 kHz timestamps on a 30 fps grid that run with the
    wall clock, one SSRC, nothing malformed, SPS and PPS before every IDR; the NAL units decode
    again (FFmpeg) into 1280x720 pictures. B gets what it agreed (mode 0: the offerer's order)."""
    a_ports, b_ports = free_rtp_ports(), free_rtp_ports()
    zero = Baresip(tmp_path / "a", tone_hz=1000, name="Room Zero", video="clip", video_codecs=("H264",), rtp_ports=a_ports)
    any_ = Baresip(tmp_path / "b", tone_hz=700, name="Room Any", video="clip", rtp_ports=b_ports)
    ports = [*range(a_ports[0], a_ports[1] + 1), *range(b_ports[0], b_ports[1] + 1)]
    capture = PacketCapture(tmp_path / "video.pcapng", ports)
    try:
        join_call(demo, zero)
        join_call(demo, any_)
        wait_until(lambda: zero.receiving_video() and any_.receiving_video(), 30, what="both decode the composed picture")
        # 4 s of it (at most 30 frames a second)
        wait_until(lambda: zero.video_stats().frames_received >= 60 and any_.video_stats().frames_received >= 60, 30, what="60 composed frames decoded by each")
        zero_video, any_video = zero.video_stats(), any_.video_stats()
        capture.flush()
    finally:
        capture.stop()
        zero.stop()
        any_.stop()
    assert zero.video_codec() == "H264 packetization-mode=0", zero.video_codec()
    agreed = {name: logged(demo, "video agreed", call_of(demo, name)) for name in ("Room Zero", "Room Any")}
    modes = {name: re.search(r"packetization-mode=(\d)", str(lines[0]["fmtp"])).group(1) for name, lines in agreed.items()}  # type: ignore[union-attr]
    assert modes == {"Room Zero": "0", "Room Any": "0"}, agreed

    for name, video in (("Room Zero", zero_video), ("Room Any", any_video)):
        port = video.local_port
        streams = rtp_streams(capture.path, port)
        assert len(streams) == 1, f"{name}: SSRCs {streams}"
        ((ssrc, types),) = streams.items()
        (payload_type,) = types
        assert payload_type == int(agreed[name][0]["pt"]), (name, types, agreed[name])
        report = h264_rtp_check(capture.path, port, payload_type)
        assert report.problems() == [] and report.ssrcs == {ssrc}, f"{name}: {report.describe()}"
        assert set(report.packet_types) <= set(range(1, 24)), f"{name}: aggregation or fragments in mode 0: {report.describe()}"
        assert report.frames_without_marker == 0 and report.markers_inside_frames == 0, report.describe()
        assert not report.malformed and not report.expert_errors, report.describe()
        assert report.frames >= 40 and report.key_frames >= 1, report.describe()
        # 90 kHz: 3000 a frame at 30 fps (a frame is composed when the picture changed: a step after
        # a pause is the time that passed), and the media clock runs with the wall clock
        assert report.timestamp_steps.most_common(1)[0][0] == 3000, report.timestamp_steps
        assert all(0 < step <= 90000 for step in report.timestamp_steps), report.timestamp_steps
        packets = rtp_packets(capture.path, port, payload_type)
        media_seconds = ((packets[-1].timestamp - packets[0].timestamp) % 2**32) / 90000
        wall_seconds = packets[-1].time - packets[0].time
        assert abs(media_seconds - wall_seconds) < 0.1 * wall_seconds + 0.2, (media_seconds, wall_seconds)
        units, errors = reassemble(packets)
        assert not errors and report.sequence_gaps == 0, (errors[:5], report.sequence_gaps)
        assert slices_out_of_order(units) == [], slices_out_of_order(units)[:5]
        assert parameter_sets_before_idrs(units) == [], f"{name}: IDRs without SPS/PPS before them"
        frames, sizes, decode_errors = decode(units)
        assert not decode_errors and sizes == {(1280, 720)} and frames >= report.frames - 35, (frames, sizes, decode_errors[:5])


@pytest.mark.xdist_group("serial")
def test_composed_picture_in_packetization_mode_1_comes_in_fu_a_fragments_that_reassemble(demo: RunningGateway, tmp_path: Path) -> None:
    """sipp offers H.264 in packetization-mode 1 only (video_mode1_only.xml; baresip always offers
    mode 0 first, and the gateway answers in the offerer's order), while a baresip camera
    (testsrc2) is in the room. What the gateway sends to sipp's video port, read from the capture:
    NAL units larger than a packet in FU-A fragments (start and end bits in order, no packet over
    the MTU), one SSRC, marker bits on the last packet of each frame, nothing malformed; the NAL
    units put back together from the fragments decode again (FFmpeg) into 1280x720 pictures."""
    camera = Baresip(tmp_path / "camera", tone_hz=1000, name="Room Camera", video="clip", video_codecs=("H264",))
    media_port = free_udp_port(span=4)
    capture = PacketCapture(tmp_path / "video.pcapng", [media_port + 2])
    try:
        join_call(demo, camera)
        wait_until(lambda: camera.receiving_video(), 30, what="the camera decodes the composed picture")
        sipp = Sipp(demo, tmp_path / "sipp", "video_mode1_only.xml", "demo", media_port=media_port)
        result = sipp.wait(90)
        capture.flush()
    finally:
        capture.stop()
        camera.stop()
    assert result.returncode == 0, result.describe()
    (agreed,) = logged(demo, "video agreed", sipp.call_id)
    assert "packetization-mode=1" in str(agreed["fmtp"]), agreed

    streams = rtp_streams(capture.path, media_port + 2)
    assert len(streams) == 1 and set(next(iter(streams.values()))) == {96}, streams
    report = h264_rtp_check(capture.path, media_port + 2, 96)
    assert report.problems() == [] and report.sequence_gaps == 0, report.describe()
    assert report.packet_types[28] > 0, f"no FU-A: {report.describe()}"
    assert set(report.packet_types) <= {*range(1, 24), 24, 28} and report.max_payload <= 1400, report.describe()
    assert report.frames >= 60, report.describe()  # (8 s of a changing picture)
    units, errors = reassemble(rtp_packets(capture.path, media_port + 2, 96))
    assert not errors, errors[:5]
    assert max(len(n) for u in units for n in u.nal_units) > report.max_payload  # what FU-A carried whole
    assert slices_out_of_order(units) == [] and parameter_sets_before_idrs(units) == []
    frames, sizes, decode_errors = decode(units)
    assert not decode_errors and sizes == {(1280, 720)} and frames >= report.frames - 35, (frames, sizes, decode_errors[:5])


# -- a browser's PLI reaches the room system ---------------------------------------------------------


def leave(page) -> None:  # type: ignore[no-untyped-def]
    """The participant leaves the meeting (its Leave button): gone from the room at once. (Cleanup:
    a page that broke is left to the fixture that closes it.)"""
    try:
        if in_meeting(page):
            page.click("#btn-leave")
    except Exception:  # noqa: BLE001
        pass


@pytest.mark.browser
def test_a_browser_subscribing_to_a_room_system_sends_it_a_pli_answered_by_a_key_frame(demo: RunningGateway, open_participant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Anna (Chromium) is in demo when baresip (testsrc2, H.264 mode 0, a=rtcp-fb:* nack pli)
    joins; Ben joins later. Ben's subscription to the running camera asks it for a key frame: an
    RTCP PLI (rtcp-fb was agreed) to baresip's video RTCP port naming its SSRC, seen on the wire;
    baresip answers each PLI with an IDR within a second (its own stream on the wire, its encoder
    makes no other key frames meanwhile), and both browsers decode its video. (Anna's subscription
    is made when the call's video is agreed, before baresip's first packet: the gateway sends
    nothing to an address not yet confirmed, and the stream starts with an IDR anyway, so whether
    a PLI goes out for her depends on timing and is not asserted.)"""
    anna = join(open_participant, demo, "demo", "Anna", None, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    ports = free_rtp_ports()
    system = Baresip(tmp_path / "room", tone_hz=1000, name="Room PLI", video="clip", video_codecs=("H264",), rtp_ports=ports)
    capture = PacketCapture(tmp_path / "video.pcapng", range(ports[0], ports[1] + 1))
    try:
        sip_id = join_call(demo, system)
        wait_until(lambda: video_frames_by_sender(anna).get(sip_id, 0) >= 30, 40, what="Anna decodes the room system's video")
        asked = dict(counters(demo, "Room PLI")["video_main"])  # type: ignore[arg-type]
        ben_joins = time.time()
        ben = join(open_participant, demo, "demo", "Ben", None)
        wait_until(lambda: in_meeting(ben), 30, what="Ben in the meeting")
        wait_until(lambda: video_frames_by_sender(ben).get(sip_id, 0) >= 30, 40, what="Ben decodes the room system's video")
        asked_after = dict(counters(demo, "Room PLI")["video_main"])  # type: ignore[arg-type]
        video = system.video_stats()
        capture.flush()
    finally:
        capture.stop()
        system.stop()
        for page in (anna, *([ben] if "ben" in locals() else [])):
            leave(page)  # (a browser that just closes keeps its place for a reconnect)
    assert video.encoder == "H264" and video.ssrc, video.text
    assert int(asked_after["keyframes_asked"]) > int(asked["keyframes_asked"]), (asked, asked_after)

    rtcp = rtcp_feedback_check(capture.path, video.local_port + 1)
    assert rtcp.pli >= 1 and rtcp.media_ssrcs == {video.ssrc} and not rtcp.malformed, rtcp
    assert any(t > ben_joins for t in rtcp.times), (ben_joins, rtcp.times)
    ((_, types),) = rtp_streams(capture.path, video.local_port, "from").items()
    (payload_type,) = types
    sent = h264_rtp_check(capture.path, video.local_port, payload_type, "from")
    assert sent.problems() == [], sent.describe()
    for asked_at in rtcp.times:
        assert any(0 < t - asked_at < 1.0 for t in sent.key_frame_times), (
            f"no key frame from baresip within 1 s of the PLI at {asked_at}: key frames at {sent.key_frame_times}"
        )
    # (not just a short GOP: baresip's key frames are the answers, one per PLI at most, and the first)
    assert len(sent.key_frame_times) <= len(rtcp.times) + 1, (rtcp.times, sent.key_frame_times)
