"""Attacks on a call's media through the real gateway process ("RTP bleed" and friends).

- hijack: during an established call an intruder on another address sprays the gateway's RTP port
  with the call's payload type (and RFC 4733 keys, and RTCP): it must receive nothing, the caller
  keeps hearing the meeting, the drops are counted in the API and the intruder's keys do nothing;
- no media before the ACK: an INVITE whose 200 is never acknowledged must not turn the gateway into
  a 50 packets/s source toward the address its SDP names (a spoofed INVITE against a victim);
- strict latching: a caller sending from another port than its SDP names is not heard;
- learn latching (the default): a caller behind NAT, announcing one port and sending from another,
  is heard and answered where it really sends from.

The callers are raw UDP sockets written here (tests/support/sip_client.py for SIP, RTP packed by hand), so
nothing of the gateway's own RTP code is on the peer's side.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    logged,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sip_client import Dialog, RawCaller, Response, sdp_offer

STRICT = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, rtp_latching: strict,")
DTMF_EVENTS = "0123456789*#ABCD"


@pytest.fixture(scope="module")
def learning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway with the default latching (learn, 3 s)."""
    running = start_gateway(tmp_path_factory.mktemp("learn"))
    yield running
    stop_and_check(running)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("strict"), STRICT)
    yield running
    stop_and_check(running)


# -- RTP peers ------------------------------------------------------------------------------------


def rtp(payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def receiver_report(ssrc: int) -> bytes:
    """A compound RTCP packet as RFC 3550 6.1 wants it: an RR without report blocks and an SDES
    with a CNAME."""
    cname = b"intruder"
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc) + sdes


def tone_payload(i: int) -> bytes:
    """160 bytes of a loud square wave in either G.711 law (0x00/0x80 are loud in both)."""
    return bytes([0x00] * 20 + [0x80] * 20) * 4 if i % 2 == 0 else bytes([0x80] * 20 + [0x00] * 20) * 4


class RtpPeer:
    """A UDP socket that counts what it receives and can send a G.711 stream every 20 ms (from a
    thread) with RFC 4733 key presses interleaved at running sequence numbers."""

    def __init__(self, sock: socket.socket | None = None, host: str = "127.0.0.1") -> None:
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((host, 0))
        self.sock = sock
        self.sock.settimeout(0.05)
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._keys: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sending: tuple[tuple[str, int], int] | None = None
        self._threads = [threading.Thread(target=self._read, daemon=True)]
        self._threads[0].start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.received.append((data, source))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def packet(self, payload_type: int, payload: bytes, marker: bool = False, advance: int = 160) -> bytes:
        data = rtp(payload_type, self.seq, self.timestamp, self.ssrc, payload, marker)
        self.seq += 1
        self.timestamp += advance
        return data

    def key_press(self, to: tuple[str, int], digit: str, event_pt: int = 101) -> None:
        """One press as a phone sends it: one RTP timestamp, growing duration, the end three times."""
        event = DTMF_EVENTS.index(digit)
        for i, (duration, end) in enumerate(((160, False), (320, False), (480, True), (480, True), (480, True))):
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            self.sock.sendto(rtp(event_pt, self.seq, self.timestamp, self.ssrc, payload, i == 0), to)
            self.seq += 1
        self.timestamp += 800

    def stream(self, to: tuple[str, int], payload_type: int) -> None:
        """Sends 20 ms packets to `to` until closed; `press` puts keys in between."""
        self._sending = (to, payload_type)
        thread = threading.Thread(target=self._stream, daemon=True)
        self._threads.append(thread)
        thread.start()

    def press(self, digit: str) -> None:
        with self._lock:
            self._keys.append(digit)

    def _stream(self) -> None:
        assert self._sending is not None
        to, payload_type = self._sending
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            with self._lock:
                keys, self._keys = self._keys, []
            for key in keys:
                self.key_press(to, key)
            try:
                self.sock.sendto(self.packet(payload_type, tone_payload(i), marker=i == 0), to)
            except OSError:
                return
            i += 1
            next_at += 0.02
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.sock.close()


# -- the gateway's side ---------------------------------------------------------------------------


def gateway_media(answer: Response) -> tuple[tuple[str, int], int]:
    """The RTP address and payload type the gateway's SDP answer names."""
    body = answer.body.decode()
    host = re.search(r"c=IN IP4 (\S+)", body)
    media = re.search(r"m=audio (\d+) RTP/AVP (\d+)", body)
    assert host and media, body
    return (host.group(1), int(media.group(1))), int(media.group(2))


def participant(gateway: RunningGateway, name: str, room: str = "demo") -> dict[str, object] | None:
    response = gateway.api("GET", f"/api/rooms/{room}/participants")
    assert response.status_code == 200, response.text
    return next((p for p in response.json() if p["name"] == name), None)


def counters(gateway: RunningGateway, name: str) -> dict[str, int]:
    found = participant(gateway, name)
    assert found is not None, f"{name} is not in the room"
    return found["media"]  # type: ignore[return-value]




def join_by_info(caller: RawCaller, dialog: Dialog) -> None:
    """A bare # (SIP INFO): demo has only a host PIN, so a guest needs nothing else."""
    answer = caller.info(dialog, "Signal=#\r\nDuration=160\r\n")
    assert answer.status == 200, answer.status


def hang_up(caller: RawCaller, dialog: Dialog) -> None:
    try:
        caller.bye(dialog)
    except AssertionError:
        pass  # the gateway ended it already


# -- the tests ------------------------------------------------------------------------------------


def test_an_intruder_spraying_rtp_at_a_call_gets_nothing_and_changes_nothing(learning: RunningGateway) -> None:
    """The caller sends G.711 from the address its SDP names and joins with an RFC 4733 #. Then an
    intruder on 127.0.0.2 sends 30 packets of the call's payload type with another SSRC, the keys
    *6 (self-mute) and RTCP: it receives nothing in the second after, the caller keeps receiving
    the meeting, the API counts the drops, the caller is not muted and no key of the intruder's was
    read; the gateway says so once in its log, with the intruder's address."""
    caller = RawCaller(learning.sip_port, display="Hijack Victim")
    phone = RtpPeer(caller.rtp)
    intruder = RtpPeer(host="127.0.0.2")
    dialog = None
    try:
        dialog, answer = caller.call("demo")
        assert answer.status == 200
        media_address, payload_type = gateway_media(answer)
        phone.stream(media_address, payload_type)
        phone.press("#")
        wait_until(lambda: participant(learning, "Hijack Victim"), 15, what="the caller joined demo")
        wait_until(lambda: counters(learning, "Hijack Victim")["audio_packets_in"] > 20, 5, what="the caller heard")
        heard_before = phone.count
        assert heard_before > 0, "the gateway sends nothing to the caller"

        rtcp_address = (media_address[0], media_address[1] + 1)
        for _ in range(30):
            intruder.sock.sendto(intruder.packet(payload_type, tone_payload(0)), media_address)
            time.sleep(0.005)
        for key in "*6":
            intruder.key_press(media_address, key)
        for _ in range(5):
            intruder.sock.sendto(receiver_report(intruder.ssrc), rtcp_address)
        time.sleep(1.0)  # the intruder listens for a second: that is the assertion

        assert intruder.count == 0, f"the intruder received {intruder.count} datagrams from the gateway"
        assert phone.count - heard_before >= 40, f"the caller received {phone.count - heard_before} packets in ~1.2 s"
        assert {source for _, source in phone.received} == {media_address}
        media = counters(learning, "Hijack Victim")
        assert media["rtp_dropped_foreign"] >= 30 + 10, media  # the audio and the key packets
        assert media["rtcp_dropped_foreign"] >= 5, media
        found = participant(learning, "Hijack Victim")
        assert found is not None and found["muted"] is False and found["self_muted"] is False, found
        keys = [line for line in logged(learning, "DTMF received", dialog.call_id) if line.get("via") == "rfc4733"]
        assert len(keys) == 1 and keys[0].get("digit") in (None, "#"), keys  # the caller's # only
        warnings = logged(learning, "media from a foreign address dropped", dialog.call_id)
        assert len(warnings) == 1 and warnings[0]["source"] == f"127.0.0.2:{intruder.address[1]}", warnings
    finally:
        if dialog is not None:
            hang_up(caller, dialog)
        phone.close()
        intruder.close()
        caller.close()


def test_nothing_is_sent_to_the_sdp_address_before_the_ack(learning: RunningGateway) -> None:
    """INVITE naming a 'victim' socket as its media address; the 200 OK is not acknowledged for
    1.5 s, and the victim receives nothing. After the ACK the gateway's media arrives there."""
    caller = RawCaller(learning.sip_port, display="No Ack")
    victim = RtpPeer()
    dialog = None
    try:
        dialog = caller.invite("demo", sdp_offer("127.0.0.1", victim.address[1]))
        answer = caller.final(dialog)
        assert answer.status == 200
        time.sleep(1.5)  # the 200 unanswered: listening is the assertion
        assert victim.count == 0, f"{victim.count} datagrams reached the SDP address before any ACK"
        caller.ack(dialog)
        wait_until(lambda: victim.count >= 10, 5, what="media after the ACK")
        assert {source for _, source in victim.received} == {gateway_media(answer)[0]}
    finally:
        if dialog is not None:
            hang_up(caller, dialog)
        victim.close()
        caller.close()


def test_strict_latching_ignores_a_caller_sending_from_another_port(strict: RunningGateway) -> None:
    """rtp_latching: strict. The caller's SDP names one port, it sends from another: not heard (the
    drops are counted) and nothing is sent there; the gateway sends to the SDP's port. Sending
    from the SDP's port, it is heard."""
    caller = RawCaller(strict.sip_port, display="Strict Test")
    announced = RtpPeer(caller.rtp)
    elsewhere = RtpPeer()
    dialog = None
    try:
        dialog, answer = caller.call("demo")
        assert answer.status == 200
        media_address, payload_type = gateway_media(answer)
        elsewhere.stream(media_address, payload_type)
        join_by_info(caller, dialog)
        wait_until(lambda: participant(strict, "Strict Test"), 15, what="the caller joined demo")
        wait_until(lambda: counters(strict, "Strict Test")["rtp_dropped_foreign"] >= 50, 5, what="drops counted")
        media = counters(strict, "Strict Test")
        assert media["rtp_packets_in"] == 0 and media["audio_packets_in"] == 0, media
        assert elsewhere.count == 0, f"{elsewhere.count} datagrams went to the unannounced port"
        assert announced.count > 20, "the gateway does not send to the SDP's address"

        for i in range(50):
            announced.sock.sendto(announced.packet(payload_type, tone_payload(i)), media_address)
            time.sleep(0.02)
        wait_until(lambda: counters(strict, "Strict Test")["audio_packets_in"] >= 45, 5, what="heard from the SDP's port")
    finally:
        if dialog is not None:
            hang_up(caller, dialog)
        elsewhere.close()
        announced.close()
        caller.close()


def test_learn_latching_answers_a_nated_caller_where_it_really_sends_from(learning: RunningGateway) -> None:
    """Default latching. The caller's SDP names one port, its 'NAT' sends from another right after
    the ACK: it is heard, the gateway's media goes to where the packets come from, and the port the
    SDP named gets nothing more once the source is learned."""
    caller = RawCaller(learning.sip_port, display="NAT Test")
    announced = RtpPeer(caller.rtp)
    nat = RtpPeer()
    dialog = None
    try:
        dialog, answer = caller.call("demo")
        assert answer.status == 200
        media_address, payload_type = gateway_media(answer)
        nat.stream(media_address, payload_type)
        join_by_info(caller, dialog)
        wait_until(lambda: participant(learning, "NAT Test"), 15, what="the caller joined demo")
        wait_until(lambda: counters(learning, "NAT Test")["audio_packets_in"] >= 40, 5, what="the NATed caller heard")
        wait_until(lambda: nat.count >= 40, 5, what="media sent where the caller sends from")
        assert counters(learning, "NAT Test")["rtp_dropped_foreign"] == 0
        before = announced.count
        time.sleep(0.5)  # deliberate: nothing reaches the SDP's port over 25 packets' time, that is the assertion
        assert announced.count == before, "media still goes to the port the SDP named"
        assert len(logged(learning, "media source learned", dialog.call_id)) == 1
    finally:
        if dialog is not None:
            hang_up(caller, dialog)
        nat.close()
        announced.close()
        caller.close()
