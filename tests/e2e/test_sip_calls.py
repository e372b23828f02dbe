"""SIP calls from sipp (scenarios in tests/sipp/) into a real gateway: hold and resume, late offer,
codec changes and session refreshes by re-INVITE, CANCEL racing the answer, PINs by SIP INFO,
refused offers, RFC 4733 keys and speech from pcap files, and the gateway's RTP on the wire (tshark).

sipp checks the messages (its exit code is 0 only when every step of the scenario happened, every
`ereg check_it` included); the tests check what the gateway made of them: its API, its metrics and
its log. They wait on state (the participants API, sipp's message trace as the call runs, the
gateway's call gauge), never on a log line; the log is read once that state is reached.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import struct
import subprocess
import time
from pathlib import Path

from tests.support.gateway import RunningGateway, logged, participant, wait_until
from tests.support.sipp import (
    DTMF_EVENTS,
    SIPP_PCAPS,
    TSHARK,
    Sipp,
    answer_sdp,
    free_udp_port,
    media,
    packets_out,
    run_sipp,
    sip_calls_active,
)

# -- the tests ----------------------------------------------------------------------------------------


def test_hold_and_resume_by_re_invite_keeps_the_caller_in_the_room(gateway: RunningGateway, tmp_path: Path) -> None:
    """re-INVITE a=sendonly -> 200 a=recvonly (sipp checks the body) and the gateway stops sending;
    re-INVITE a=sendrecv -> 200 a=sendrecv and it sends again; the caller stays in the room."""
    sipp = Sipp(gateway, tmp_path / "sipp", "hold_resume.xml", "demo")
    call = sipp.call_id
    wait_until(lambda: participant(gateway, "demo", "Hold Test"), 10, what="the caller in demo")

    # (the gateway applies an offer to its leg before it answers it: the 200 in sipp's trace means applied)
    (held,) = wait_until(lambda: sipp.received("SIP/2.0 200", "3 INVITE")[:1], 10, what="the 200 to the hold re-INVITE")  # type: ignore[misc]
    assert "a=recvonly" in held.body, held.text
    assert participant(gateway, "demo", "Hold Test") is not None, "the caller left the room on hold"
    before = packets_out(gateway, "demo", "Hold Test")
    time.sleep(0.6)  # deliberate: nothing is sent over 30 packets' time, that is the assertion
    assert packets_out(gateway, "demo", "Hold Test") == before, "the gateway still sends RTP to a caller on hold"

    (resumed,) = wait_until(lambda: sipp.received("SIP/2.0 200", "4 INVITE")[:1], 10, what="the 200 to the resume re-INVITE")  # type: ignore[misc]
    assert "a=sendrecv" in resumed.body, resumed.text
    assert participant(gateway, "demo", "Hold Test") is not None, "the caller left the room on resume"
    before = packets_out(gateway, "demo", "Hold Test")
    wait_until(lambda: packets_out(gateway, "demo", "Hold Test") >= before + 20, 5, what="RTP from the gateway after resume")

    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    directions = [line["direction"] for line in logged(gateway, "media renegotiated", call)]
    assert directions == ["recvonly", "sendrecv"]
    wait_until(lambda: participant(gateway, "demo", "Hold Test") is None, 5, what="the caller gone after BYE")


def test_late_offer_is_answered_in_the_ack(gateway: RunningGateway, tmp_path: Path) -> None:
    """INVITE without SDP: our 200 offers PCMA and telephone-event (sipp checks), the ACK answers PCMA."""
    sipp, _ = run_sipp(gateway, tmp_path / "sipp", "late_offer.xml", "demo")
    agreed = logged(gateway, "media agreed", sipp.call_id)
    assert len(agreed) == 1, agreed
    assert agreed[0]["codec"] == "pcma" and agreed[0]["pt"] == 8 and agreed[0]["telephone_event"] == 101, agreed


def test_re_invite_changes_the_codec(gateway: RunningGateway, tmp_path: Path) -> None:
    """PCMU, then a re-INVITE with PCMA only, then one with G722 only: each 200 answers the new codec
    (sipp checks), and the gateway's leg switches to it."""
    sipp = Sipp(gateway, tmp_path / "sipp", "codec_change.xml", "demo")
    call = sipp.call_id
    wait_until(lambda: participant(gateway, "demo", "Codec Test"), 10, what="the caller in demo")
    assert media(gateway, "demo", "Codec Test")["codec"] == "pcmu"
    for cseq, codec in (("3 INVITE", "pcma"), ("4 INVITE", "g722")):
        wait_until(lambda cseq=cseq: sipp.received("SIP/2.0 200", cseq), 10, what=f"the 200 to the re-INVITE for {codec}")
        # (the leg switches before the 200 goes out)
        assert media(gateway, "demo", "Codec Test")["codec"] == codec
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    assert [line["codec"] for line in logged(gateway, "media agreed", call)] == ["pcmu"]
    assert [line["codec"] for line in logged(gateway, "media renegotiated", call)] == ["pcma", "g722"]


def test_cancel_right_after_100_trying_leaves_nothing_behind(gateway: RunningGateway, tmp_path: Path) -> None:
    """CANCEL right after the 100: the scenario takes either outcome (487, or 200 then ACK and BYE).
    Either way the call ends in the gateway, no participant is left and nothing is logged as an error
    (the fixture fails the test on error lines)."""
    sipp, result = run_sipp(gateway, tmp_path / "sipp", "cancel.xml", "demo")
    wait_until(lambda: sip_calls_active(gateway) == 0, 10, what="the call ended in the gateway (no SIP call held)")
    ended = logged(gateway, "call ended", sipp.call_id)
    assert len(ended) == 1, ended
    if ended[0]["status"] == 487:  # the CANCEL won
        assert "SIP/2.0 487" in result.messages
        assert not logged(gateway, "joined meeting", sipp.call_id)
    else:  # the 200 won: the BYE ended it
        assert "SIP/2.0 200 OK" in result.messages and "\nBYE sip:" in result.messages, result.messages[-3000:]
    assert gateway.api("GET", "/api/rooms/demo/participants").json() == []
    complaints = [line for line in gateway.log_lines() if line.get("call_id") == sipp.call_id and line.get("level") != "info"]
    assert not complaints, complaints
    # and the gateway takes the next call
    run_sipp(gateway, tmp_path / "next", "late_offer.xml", "demo")


def test_session_refresh_without_sdp_by_re_invite_and_update(gateway: RunningGateway, tmp_path: Path) -> None:
    """A re-INVITE without body: the gateway offers in its 200, with the codec in use (PCMU) first and
    telephone-event (sipp checks), and takes the answer from the ACK, which here picks PCMA. Then an
    UPDATE without body is answered 200 (sipp checks)."""
    sipp = Sipp(gateway, tmp_path / "sipp", "refresh.xml", "demo")
    call = sipp.call_id
    wait_until(lambda: participant(gateway, "demo", "Refresh Test"), 10, what="the caller in demo")
    wait_until(lambda: media(gateway, "demo", "Refresh Test")["codec"] == "pcma", 10, what="the answer in the ACK (PCMA) taken")
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    renegotiated = logged(gateway, "media renegotiated", call)
    assert [(line["codec"], line["pt"], line["telephone_event"]) for line in renegotiated] == [("pcma", 8, 101)]


def test_three_wrong_pins_by_sip_info_then_the_guest_pin(gateway: RunningGateway, tmp_path: Path) -> None:
    """Three wrong PINs (SIP INFO dtmf-relay): a prompt, then the gateway's BYE with
    Reason: SIP;cause=403;text="Wrong PIN" (sipp checks). The guest PIN 5555# then joins."""
    wrong, _ = run_sipp(gateway, tmp_path / "wrong", "wrong_pin.xml", "secret")
    assert len(logged(gateway, "wrong PIN", wrong.call_id)) == 3
    assert logged(gateway, "ending call", wrong.call_id, cause=403, reason="Wrong PIN")
    # 15 keys arrived; which ones stays out of the log (PINs), in the voice menu
    keys = logged(gateway, "DTMF received", wrong.call_id, via="sip-info")
    assert len(keys) == len("9999#1111#0000#") and not any("digit" in line for line in keys)

    guest = Sipp(gateway, tmp_path / "guest", "guest_pin.xml", "secret")
    found = wait_until(lambda: participant(gateway, "secret", "PIN Test"), 10, what="the caller in secret")
    assert isinstance(found, dict) and found["role"] == "guest", found
    result = guest.wait()
    assert result.returncode == 0, result.describe()


def test_refused_offers_and_the_next_call_is_served(gateway: RunningGateway, tmp_path: Path) -> None:
    """Garbage SDP (m=audio abc ...) gets 400, an offer of GSM only gets 488 (sipp checks both and
    ACKs); neither reaches a room, and a normal call right after is answered."""
    garbage, _ = run_sipp(gateway, tmp_path / "garbage", "sdp_garbage.xml", "demo")
    gsm, _ = run_sipp(gateway, tmp_path / "gsm", "sdp_no_codec.xml", "demo")
    for refused in (garbage, gsm):
        assert not logged(gateway, "call answered", refused.call_id)
    normal, _ = run_sipp(gateway, tmp_path / "normal", "late_offer.xml", "demo")
    assert logged(gateway, "call answered", normal.call_id)
    assert logged(gateway, "call ended", normal.call_id, status=200)


def test_sip_info_application_dtmf_is_answered_200_and_read(gateway: RunningGateway, tmp_path: Path) -> None:
    """SIP INFO with Content-Type application/dtmf and body `5`: 200 (sipp checks) and a digit."""
    sipp = Sipp(gateway, tmp_path / "sipp", "info_dtmf.xml", "demo")
    result = sipp.wait()
    # (a key in the voice menu is logged as arrived, not which: it may be part of a PIN)
    assert logged(gateway, "DTMF received", sipp.call_id, via="sip-info")
    assert result.returncode == 0, result.describe()


def test_six_calls_at_once_are_all_answered(gateway: RunningGateway, tmp_path: Path) -> None:
    """Six short calls (the late offer scenario, 1.5 s each) started within a tenth of a second."""
    sipp = Sipp(gateway, tmp_path / "sipp", "late_offer.xml", "demo", calls=6)
    result = sipp.wait()
    answered = logged(gateway, "call answered")
    assert len(answered) == 6, f"{len(answered)} of 6 calls reached the gateway\n{result.errors[-2000:]}"
    assert result.returncode == 0, result.describe()


def pcap_digit(name: str) -> str:
    """The key an RFC 4733 pcap of sipp's carries, as tshark decodes it."""
    out = subprocess.run(
        [TSHARK, "-r", str(SIPP_PCAPS / name), "-o", "rtp.heuristic_rtp:TRUE", "-T", "fields", "-e", "rtpevent.event_id"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    events = {int(value) for value in out.split()}
    assert len(events) == 1, f"{name} carries events {events}"
    return DTMF_EVENTS[events.pop()]


def link_pcaps(directory: Path) -> Path:
    """sipp's pcap scenarios play pcap/<file> from their working directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pcap").symlink_to(SIPP_PCAPS, target_is_directory=True)
    return directory


def test_pcap_speech_and_rfc4733_keys_reach_the_meeting(gateway: RunningGateway, tmp_path: Path) -> None:
    """sipp plays # (RFC 4733, joins demo as a guest), 8 s of A-law speech and a 1 from pcap files:
    both keys are read from RTP, and the participant's packet counters grow during the speech."""
    pound, one = pcap_digit("dtmf_2833_pound.pcap"), pcap_digit("dtmf_2833_1.pcap")
    assert (pound, one) == ("#", "1")
    work = link_pcaps(tmp_path / "work")
    sipp = Sipp(gateway, tmp_path / "sipp", "pcap_guest.xml", "demo", cwd=work)
    call = sipp.call_id
    wait_until(lambda: participant(gateway, "demo", "PCAP Test"), 10, what="the caller in demo by an RFC 4733 #")
    # (the # is RTP too; the speech, 7 s of 30 ms packets, starts 1.5 s after it)
    wait_until(lambda: media(gateway, "demo", "PCAP Test").get("audio_packets_in") not in (None, 0), 5, what="speech")
    first = media(gateway, "demo", "PCAP Test")

    def grown() -> dict[str, int]:
        now = media(gateway, "demo", "PCAP Test")
        return {c: int(str(now[c])) - int(str(first[c])) for c in ("rtp_packets_in", "audio_packets_in")}

    # 40 more packets (1.2 s of the speech's 30 ms packets; it has more than 5 s left) in both counters
    wait_until(lambda: min(grown().values()) >= 40, 4, what="40 more packets of the speech in both counters")
    assert media(gateway, "demo", "PCAP Test")["codec"] == "pcma"
    result = sipp.wait()
    assert result.returncode == 0, result.describe()
    # the # in the voice menu is logged as arrived (not which: menu keys are PINs), the 1 in the meeting by name
    keys = [line.get("digit") for line in logged(gateway, "DTMF received", call, via="rfc4733")]
    assert keys == [None, one], keys


class Capture:
    """tshark on the loopback interface, writing a pcap file until stopped. `probe` is an address the
    capture filter lets through: datagrams sent there (from a port of their own, so an analysis of
    other ports never sees them) show when the capture is live and when what came before is written."""

    def __init__(self, path: Path, capture_filter: str, probe: tuple[str, int]) -> None:
        self.path = path
        self._probe = probe
        self._probe_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stderr = path.with_suffix(".log")
        with self._stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [TSHARK, "-i", "lo", "-f", capture_filter, "-w", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        wait_until(lambda: "Capturing on" in self._stderr.read_text(errors="replace"), 20, what="tshark started")
        # "Capturing on" can come before the filter catches packets (a datagram sent right after it
        # was seen missing): only a probe found in the file proves that what follows is captured.
        self.flush()

    def packets(self) -> int:
        """Packets in the file so far (its pcapng Enhanced Packet Blocks)."""
        data = self.path.read_bytes() if self.path.exists() else b""
        count = at = 0
        while at + 8 <= len(data):
            kind, length = struct.unpack_from("<II", data, at)
            if length < 12 or at + length > len(data):  # (a block still being written)
                break
            count += kind == 6
            at += length
        return count

    def flush(self, timeout: float = 20) -> None:
        """Returns once a probe sent now is in the file (tshark writes it in batches, about every
        0.5 s): everything captured before the probe is in the file too."""
        written = self.packets()

        def probe_written() -> bool:
            self._probe_socket.sendto(b"probe", self._probe)
            return self.packets() > written

        wait_until(probe_written, timeout, interval=0.1, what="tshark writing a probe to its file")

    def stop(self) -> None:
        self._probe_socket.close()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_uac_pcap_dtmf_and_the_gateways_rtp_on_the_wire(gateway: RunningGateway, tmp_path: Path) -> None:
    """sipp's built-in uac_pcap (A-law speech, then RFC 4733 `1`) calls demo while tshark captures what
    the gateway sends: the key is read, and the gateway's RTP has the payload type its SDP promised,
    one SSRC, consecutive sequence numbers, timestamps 160 apart (20 ms at 8 kHz), a 20 ms pace, and
    the marker bit on the first packet of the prompt (its only talkspurt here) and nowhere else."""
    digit = pcap_digit("dtmf_2833_1.pcap")
    work = link_pcaps(tmp_path / "work")
    media_port = free_udp_port(span=4)
    capture = Capture(tmp_path / "rtp.pcap", f"udp and dst host 127.0.0.1 and dst port {media_port}", ("127.0.0.1", media_port))
    try:
        sipp = Sipp(gateway, tmp_path / "sipp", "uac_pcap", "demo", cwd=work, media_port=media_port)
        result = sipp.wait()
        capture.flush()  # every packet the gateway sent during the call is in the file
    finally:
        capture.stop()
    assert result.returncode == 0, result.describe()
    # one key read from RTP (in the voice menu: logged as arrived, not which)
    assert digit == "1" and len(logged(gateway, "DTMF received", sipp.call_id, via="rfc4733")) == 1

    port, payload_type = answer_sdp(result.messages)
    fields = subprocess.run(
        [
            TSHARK, "-r", str(capture.path), "-d", f"udp.port=={port},rtp", "-Y", f"udp.srcport=={port}",
            "-T", "fields", "-E", "separator=;",
            "-e", "frame.time_epoch", "-e", "rtp.p_type", "-e", "rtp.ssrc", "-e", "rtp.marker",
            "-e", "rtp.timestamp", "-e", "rtp.seq", "-e", "rtp.payload",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    packets = [line.split(";") for line in fields.splitlines() if line.strip()]
    assert len(packets) > 300, f"only {len(packets)} RTP packets from the gateway's port {port} were captured"
    times = [float(p[0]) for p in packets]
    assert {int(p[1]) for p in packets} == {payload_type}
    assert len({p[2] for p in packets}) == 1, "more than one SSRC"
    markers = [int(p[3]) for p in packets]
    stamps = [int(p[4]) for p in packets]
    seqs = [int(p[5]) for p in packets]
    payloads = [bytes.fromhex(p[6].replace(":", "")) for p in packets]
    steps = {(b - a) % 65536 for a, b in zip(seqs, seqs[1:], strict=False)}
    assert steps == {1}, f"sequence numbers not consecutive: steps {steps}"
    ts_steps = {(b - a) % 2**32 for a, b in zip(stamps, stamps[1:], strict=False)}
    assert ts_steps == {160}, f"timestamp steps {ts_steps}"
    assert {len(p) for p in payloads} == {160}
    pace = statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
    assert 0.017 < pace < 0.023, f"median packet spacing {pace * 1000:.1f} ms"

    # Idle silence (A-law 0x55/0xD5) goes out from the answer on; the prompt starts at the ACK.
    assert markers.count(1) == 1, f"marker bits at packets {[i for i, m in enumerate(markers) if m]}"
    first_prompt = markers.index(1)
    assert first_prompt <= 5, f"the prompt started only at packet {first_prompt}"
    assert all(set(p) <= {0x55, 0xD5} for p in payloads[:first_prompt]), "the packets before the prompt are not silence"
    assert any(not set(p) <= {0x55, 0xD5} for p in payloads[first_prompt : first_prompt + 150]), "no prompt audio"
