"""An H.264 RTP sender for tests: the video a room system sends on its content (or main) line, made
from the shared test clip and packetized here (RFC 6184, packetization-mode 1), independently of
the gateway's packetizer, so that a test of the gateway's receiving side never leans on the code it
tests.

The clip (tests/support/video.make_test_clip, libx264 testsrc2) is converted once to a raw Annex B
stream (ffmpeg -c copy -bsf:v h264_mp4toannexb -f h264), cached next to it, split into NAL units and
those into access units (all NAL units of one picture; the SPS and PPS go with the IDR they come
before). A background thread sends one access unit per 1/fps s: a NAL unit that fits `max_payload`
octets as a single NAL unit packet, a larger one as FU-A fragments; the marker bit on the last
packet of each access unit; 90 kHz timestamps; the clip looping for as long as it runs. With
`rtcp`, it listens on its RTP port + 1 and counts the PLIs and FIRs that arrive there, answering
each with the clip's next key frame (as a camera's encoder would)."""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

from tests.support.video import FFMPEG, make_test_clip

RTP_VERSION = 2
FU_A = 28
STAP_A = 24
NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 5, 6, 7, 8, 9
_VCL = (1, 5)
# NAL unit types that open a new access unit once a picture's slices were seen (H.264 7.4.1.2.3)
_OPENS_ACCESS_UNIT = (NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18)


# -- the clip as H.264 access units ---------------------------------------------------------------------


def annexb_clip(clip: Path | None = None) -> Path:
    """The clip (by default the shared make_test_clip()) as a raw Annex B H.264 stream: a `.h264`
    file beside it, made once (written to a temp name, then renamed; one maker at a time). A clip
    that already is `.h264` / `.264` is returned as it is."""
    source = make_test_clip() if clip is None else Path(clip)
    if source.suffix in (".h264", ".264"):
        return source
    target = source.with_suffix(".h264")
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    with open(source.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            return target
        partial = target.with_name(f".{target.stem}.{os.getpid()}.{time.monotonic_ns()}.h264")
        try:
            subprocess.run(
                [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source),
                 "-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(partial)],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def nal_units(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01 removed, and the
    zero octets before the next start code)."""
    starts: list[int] = []
    at = stream.find(b"\x00\x00\x01")
    while at >= 0:
        starts.append(at + 3)
        at = stream.find(b"\x00\x00\x01", at + 3)
    units = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(stream)
        unit = stream[start:end].rstrip(b"\x00")  # (a 4-octet start code's first zero; trailing_zero_8bits)
        if unit:
            units.append(unit)
    return units


def access_units(units: list[bytes]) -> list[list[bytes]]:
    """NAL units grouped into access units: a new one starts at an AUD, SPS, PPS or SEI after a
    picture's slices, or at a slice whose first_mb_in_slice is 0 (the first bit after its NAL header
    is 1: ue(v) of 0) after a picture's slices."""
    grouped: list[list[bytes]] = []
    seen_slice = False
    for unit in units:
        kind = unit[0] & 0x1F
        first_slice = kind in _VCL and len(unit) > 1 and bool(unit[1] & 0x80)
        if not grouped or (seen_slice and (kind in _OPENS_ACCESS_UNIT or first_slice)):
            grouped.append([])
            seen_slice = False
        grouped[-1].append(unit)
        seen_slice = seen_slice or kind in _VCL
    return grouped


def is_key_frame(access_unit: list[bytes]) -> bool:
    return any(unit[0] & 0x1F == NAL_IDR for unit in access_unit)


def packetize(unit: bytes, max_payload: int = 1200) -> list[bytes]:
    """RTP payloads for one NAL unit (RFC 6184 5.6, 5.8): itself if it fits, else FU-A fragments
    (FU indicator: the unit's F and NRI with type 28; FU header: S, E, the unit's type)."""
    if len(unit) <= max_payload:
        return [unit]
    indicator = (unit[0] & 0xE0) | FU_A
    kind = unit[0] & 0x1F
    body, size = unit[1:], max_payload - 2
    pieces = [body[at : at + size] for at in range(0, len(body), size)]
    payloads = []
    for index, piece in enumerate(pieces):
        header = kind | (0x80 if index == 0 else 0) | (0x40 if index == len(pieces) - 1 else 0)
        payloads.append(bytes([indicator, header]) + piece)
    return payloads


# -- the sender ---------------------------------------------------------------------------------------


def _bind_pair(host: str, port: int | None, rtcp: bool) -> tuple[socket.socket, socket.socket | None]:
    """An RTP socket on `port` (any when None) and, with `rtcp`, one on the port after it."""
    for _attempt in range(50):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((host, port or 0))
        if not rtcp:
            return rtp, None
        control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            control.bind((host, rtp.getsockname()[1] + 1))
            return rtp, control
        except OSError:
            control.close()
            rtp.close()
            if port:
                raise
    raise AssertionError("no free pair of UDP ports for RTP and RTCP")


class H264RtpSender:
    """Sends the clip as H.264 over RTP to `destination` at `fps`, from `source` (a port to bind
    on 127.0.0.1, an already bound socket, or None for any port; `.port` tells which).

        with H264RtpSender(("127.0.0.1", port), payload_type=96, rtcp=True) as sender:
            sender.wait_frames(45)      # 3 s of video sent
        sender.frames_sent, sender.packets_sent, sender.picture_requests
    """

    def __init__(
        self,
        destination: tuple[str, int],
        payload_type: int = 96,
        ssrc: int | None = None,
        fps: float = 15,
        clip: Path | None = None,
        source: int | socket.socket | None = None,
        max_payload: int = 1200,
        rtcp: bool = False,
        answer_picture_requests: bool = True,
    ) -> None:
        self.destination = destination
        self.payload_type = payload_type
        self.ssrc = ssrc if ssrc is not None else secrets.randbits(32)
        self.fps = fps
        self.max_payload = max_payload
        self.answer_picture_requests = answer_picture_requests
        self.access_units = access_units(nal_units(annexb_clip(clip).read_bytes()))
        assert self.access_units and is_key_frame(self.access_units[0]), "the clip must start with a key frame"
        self._keys = [index for index, unit in enumerate(self.access_units) if is_key_frame(unit)]
        if isinstance(source, socket.socket):
            self._sock, self._owns_socket = source, False
            self._rtcp = None
            if rtcp:
                self._rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._rtcp.bind((source.getsockname()[0], source.getsockname()[1] + 1))
        else:
            self._sock, self._rtcp = _bind_pair("127.0.0.1", source, rtcp)
            self._owns_socket = True
        self.port = int(self._sock.getsockname()[1])
        self.rtcp_port = int(self._rtcp.getsockname()[1]) if self._rtcp else None
        self.first_sequence = secrets.randbits(16)
        self.first_timestamp = secrets.randbits(32)
        self.frames_sent = 0
        self.packets_sent = 0
        self.octets_sent = 0  # RTP payload octets
        self.key_frames_sent = 0
        self.key_frame_times: list[float] = []  # time.time() of each key frame sent
        self.frame_indexes: list[int] = []  # which of the clip's access units each frame sent was
        self.rtcp_received: list[bytes] = []
        self.pli_received = 0
        self.fir_received = 0  # RFC 5104 FIR (PSFB FMT 4) and RFC 2032's (PT 192)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._key_wanted = False
        self._threads: list[threading.Thread] = []

    @property
    def picture_requests(self) -> int:
        """PLIs and FIRs received."""
        return self.pli_received + self.fir_received

    # -- running

    def start(self) -> Self:
        assert not self._threads, "started already"
        self._threads.append(threading.Thread(target=self._send_loop, name=f"h264-rtp-{self.port}", daemon=True))
        if self._rtcp is not None:
            self._threads.append(threading.Thread(target=self._rtcp_loop, name=f"h264-rtcp-{self.rtcp_port}", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stops sending (after the access unit being sent: no frame is cut short) and closes the
        sockets it opened."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self._owns_socket:
            self._sock.close()
        if self._rtcp is not None:
            self._rtcp.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_frames(self, count: int, timeout: float = 15) -> None:
        """Returns once `count` frames (access units) were sent."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.frames_sent < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"sent {self.frames_sent} frames of {count} in {timeout} s")
                self._cond.wait(min(left, 0.5))

    def request_key_frame(self) -> None:
        """The next frame sent is the clip's next key frame (what a PLI or FIR does)."""
        with self._cond:
            self._key_wanted = True

    # -- the threads

    def rtp_packets(self, access_unit: list[bytes], sequence: int, timestamp: int) -> list[bytes]:
        """One access unit's RTP packets, from `sequence` on (marker on the last)."""
        payloads = [payload for unit in access_unit for payload in packetize(unit, self.max_payload)]
        packets = []
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == len(payloads) - 1 else 0
            header = struct.pack(
                "!BBHII", RTP_VERSION << 6, marker | self.payload_type, (sequence + index) & 0xFFFF, timestamp & 0xFFFFFFFF, self.ssrc
            )
            packets.append(header + payload)
        return packets

    def _send_loop(self) -> None:
        started = time.monotonic()
        index = frame = 0
        sequence = self.first_sequence
        while not self._stop.wait(max(0.0, started + frame / self.fps - time.monotonic())):
            with self._cond:
                if self._key_wanted:
                    self._key_wanted = False
                    if not is_key_frame(self.access_units[index]):
                        index = next((k for k in self._keys if k > index), self._keys[0])
            unit = self.access_units[index]
            timestamp = self.first_timestamp + round(frame * 90000 / self.fps)
            packets = self.rtp_packets(unit, sequence, timestamp)
            key = is_key_frame(unit)
            when = time.time()
            try:
                for packet in packets:
                    self._sock.sendto(packet, self.destination)
            except OSError:
                if self._stop.is_set():
                    return
                raise
            with self._cond:
                sequence += len(packets)
                self.packets_sent += len(packets)
                self.octets_sent += sum(len(p) - 12 for p in packets)
                self.frames_sent += 1
                self.frame_indexes.append(index)
                if key:
                    self.key_frames_sent += 1
                    self.key_frame_times.append(when)
                self._cond.notify_all()
            index = (index + 1) % len(self.access_units)
            frame += 1

    def _rtcp_loop(self) -> None:
        sock = self._rtcp
        assert sock is not None
        sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            pli, fir = _picture_requests(data)
            with self._cond:
                self.rtcp_received.append(data)
                self.pli_received += pli
                self.fir_received += fir
                if (pli or fir) and self.answer_picture_requests:
                    self._key_wanted = True
                self._cond.notify_all()


def _picture_requests(compound: bytes) -> tuple[int, int]:
    """(PLIs, FIRs) in an RTCP compound packet: PSFB (206) FMT 1 and 4 (RFC 4585, 5104), and RFC
    2032's FIR (PT 192)."""
    pli = fir = at = 0
    while at + 4 <= len(compound):
        first, kind, words = struct.unpack_from("!BBH", compound, at)
        if first >> 6 != 2:
            break
        fmt = first & 0x1F
        if kind == 206 and fmt == 1:
            pli += 1
        elif (kind == 206 and fmt == 4) or kind == 192:
            fir += 1
        at += 4 * (words + 1)
    return pli, fir


# -- receiving: what the gateway sends on a content (or main) line -----------------------------------


def depacketize(payloads: list[bytes]) -> bytes:
    """RTP payloads (single NAL unit packets, STAP-A and FU-A, RFC 6184) back to an Annex B stream,
    in the order given."""
    out = bytearray()
    for payload in payloads:
        if not payload:
            continue
        kind = payload[0] & 0x1F
        if kind == FU_A and len(payload) > 2:
            indicator, header = payload[0], payload[1]
            if header & 0x80:  # start: the NAL header from the indicator's F/NRI and the FU header's type
                out += b"\x00\x00\x00\x01" + bytes([(indicator & 0xE0) | (header & 0x1F)])
            out += payload[2:]
        elif kind == STAP_A:  # NAL units aggregated, each after its 16-bit size
            at = 1
            while at + 2 <= len(payload):
                size = int.from_bytes(payload[at : at + 2], "big")
                out += b"\x00\x00\x00\x01" + payload[at + 2 : at + 2 + size]
                at += 2 + size
        elif kind < 24:
            out += b"\x00\x00\x00\x01" + payload
    return bytes(out)


class H264RtpReceiver:
    """A room system's receiving side of a video line: RTP on a UDP port of 127.0.0.1 (`.port`, or
    the one given), its H.264 payloads put back together and decoded with FFmpeg (PyAV) as they
    come, in a background thread. `frames_decoded` counts pictures, `last_picture` is the latest
    (RGB), `packets` the RTP packets taken (of `payload_type`, or any when None).

        with H264RtpReceiver(port) as receiver:
            receiver.wait_frames(10)
    """

    def __init__(self, port: int = 0, payload_type: int | None = None) -> None:
        import av  # (only the tests that receive video pay for importing FFmpeg)

        self.payload_type = payload_type
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.2)
        self.socket = self._sock  # (a sender may send from it: a room system sends and receives on one port)
        self.port = int(self._sock.getsockname()[1])
        self._decoder = av.CodecContext.create("h264", "r")
        self._unit: list[bytes] = []  # the payloads of the access unit being received
        self.packets = 0
        self.frames_decoded = 0
        self.undecodable = 0
        self.sources: set[tuple[str, int]] = set()
        self.last_picture: object = None  # numpy RGB array of the latest picture
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"h264-rtp-receiver-{self.port}", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_frames(self, count: int, timeout: float = 20) -> None:
        """Until `count` pictures were decoded (from now on counted in total)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.frames_decoded < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.frames_decoded} of {count} pictures decoded on port {self.port} "
                        f"({self.packets} RTP packets, {self.undecodable} undecodable access units)"
                    )
                self._cond.wait(left)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 12 or data[0] >> 6 != RTP_VERSION or 72 <= (data[1] & 0x7F) <= 79:
                continue  # (not RTP, or RTCP on a muxed port)
            if self.payload_type is not None and data[1] & 0x7F != self.payload_type:
                continue
            header = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10 and len(data) >= header + 4:  # an extension header
                header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
            payload = data[header:]
            if data[0] & 0x20 and payload:  # padding
                payload = payload[: -payload[-1]]
            self.sources.add(source)
            self.packets += 1
            self._unit.append(payload)
            if data[1] & 0x80:  # the marker: the access unit is complete
                self._decode(depacketize(self._unit))
                self._unit = []

    def _decode(self, annexb: bytes) -> None:
        import av

        try:
            pictures = [frame for packet in self._decoder.parse(annexb) for frame in self._decoder.decode(packet)]
        except av.error.FFmpegError:
            self.undecodable += 1
            return
        if not pictures:
            return
        with self._cond:
            self.frames_decoded += len(pictures)
            self.last_picture = pictures[-1].to_ndarray(format="rgb24")
            self._cond.notify_all()
