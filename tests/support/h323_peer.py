"""An H.323 endpoint for the tests, written from H.225.0, H.245 and H.323 themselves, never from
the gateway's gateway/h323 (which it must not import): a misreading there cannot pass by testing
against itself.

PDUs are encoded by asn1tools compiling the ITU-T ASN.1 texts in tests/support/asn1 (aligned PER),
and decoded by pycrate's compiled modules (G.711 by the gateway's media codecs, which are not
what is tested here), each the better of the two at its job: asn1tools 0.169
decodes a SEQUENCE's extension additions wrongly when their open type holds more than the value
(it re-aligns instead of skipping to the open type's end), pycrate's decoder read every PDU of a
live H323Plus call. asn1tools also writes an extension addition whose encoding is empty (a NULL
such as multiplexParameters `none`) as a zero-length open type; X.691 wants one zero octet, which
`_pad_empty_additions` adds. Q.931 and TPKT framing are written here by hand.

`H323Peer` places one call to the gateway: fastStart proposals (G.711 µ-law both ways) or none,
H.245 tunnelled or on its own connection (it listens, or connects to the gateway's address), then
runs the H.245 its side needs (capability set and ack, master/slave determination three-way,
opening its audio channel, acknowledging the gateway's), sends a tone as RTP, records what it
hears, types keys as userInputIndication, and hangs up. Everything it sent and received on the
signalling connection is in `wire` (for tshark).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asn1tools
import numpy as np
from pycrate_asn1dir import H225, H245

from gateway.transcode.audio import AudioCodec, G711Decoder, G711Encoder
from tests.support.pcap import Packet, tcp_pcap, tshark_packets

ASN1 = Path(__file__).parent / "asn1"
_USER_INFORMATION = H225.H323_MESSAGES.H323_UserInformation
_CONTROL_MESSAGE = H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
_OLC = H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel
SETUP, CALL_PROCEEDING, ALERTING, CONNECT, RELEASE_COMPLETE, FACILITY, STATUS = 0x05, 0x02, 0x01, 0x07, 0x5A, 0x62, 0x7D
NAMES = {0x05: "setup", 0x02: "callProceeding", 0x01: "alerting", 0x07: "connect", 0x5A: "releaseComplete", 0x62: "facility",
         0x7D: "status", 0x03: "progress", 0x6E: "notify", 0x7B: "information"}  # fmt: skip
TERMINAL = 50  # H.245 terminalType of a terminal
H264_PT = 109  # the dynamic payload type of our H.264 channels
CONTENT_CHANNEL = 5  # the number of our H.239 presentation channel
H239_MESSAGE = "0.0.8.239.2"
# H.239 table 7: sub-messages and parameters
TOKEN_REQUEST, TOKEN_RESPONSE, TOKEN_RELEASE, TOKEN_OWNER = 3, 4, 5, 6
CHANNEL_ID, SYMMETRY_BREAKING, TERMINAL_LABEL, ACKNOWLEDGE, REJECT = 42, 43, 44, 126, 127


def h264_capability(level: int = 71) -> dict[str, Any]:
    """H.241's generic capability for H.264: baseline profile (bit 64), `level` (71: level 3.1)."""
    return {
        "capabilityIdentifier": ("standard", "0.0.8.241.0.0.1"),
        "maxBitRate": 10000,  # (units of 100 bit/s: 1 Mbit/s)
        "collapsing": [
            {"parameterIdentifier": ("standard", 41), "parameterValue": ("booleanArray", 64)},
            {"parameterIdentifier": ("standard", 42), "parameterValue": ("unsignedMin", level)},
        ],
    }


def presentation_capability() -> tuple[str, Any]:
    """H.239's extended video capability: H.264 with role label 1 (presentation)."""
    return ("extendedVideoCapability", {
        "videoCapability": [("genericVideoCapability", h264_capability())],
        "videoCapabilityExtension": [{"capabilityIdentifier": ("standard", "0.0.8.239.1.2"), "collapsing": [
            {"parameterIdentifier": ("standard", 1), "parameterValue": ("booleanArray", 1)}]}],
    })  # fmt: skip


def h239(kind: str, sub_message: int, parameters: dict[int, Any]) -> tuple[str, tuple[str, Any]]:
    """An H.239 generic message; parameter values are numbers (unsignedMin) or None (logical)."""
    name = {"request": "genericRequest", "response": "genericResponse", "command": "genericCommand", "indication": "genericIndication"}[kind]
    content = [{"parameterIdentifier": ("standard", ident), "parameterValue": ("logical", None) if value is None else ("unsignedMin", value)}
               for ident, value in parameters.items()]  # fmt: skip
    return (kind, (name, {"messageIdentifier": ("standard", H239_MESSAGE), "subMessageIdentifier": sub_message, "messageContent": content}))


@functools.cache
def codec() -> Any:
    """asn1tools' aligned-PER codec of H.225.0 v7, H.235 and H.245 v15 (about 1.2 s, once)."""
    files = [str(ASN1 / name) for name in ("H323-MESSAGES.asn", "H235-SECURITY-MESSAGES.asn", "MULTIMEDIA-SYSTEM-CONTROL.asn")]
    compiled = asn1tools.compile_files(files, "per")
    seen: set[int] = set()
    for compiled_type in compiled.types.values():
        _pad_empty_additions(compiled_type.type, seen)
    return compiled


def _pad_empty_additions(node: Any, seen: set[int]) -> None:
    """Every extension addition of a SEQUENCE or CHOICE whose encoding is empty gets the one zero
    octet X.691 (10.1.3) wants inside its open type."""
    if id(node) in seen:
        return
    seen.add(id(node))
    additions = list(getattr(node, "additions", None) or [])
    choice_additions = getattr(node, "additions_index_to_member", None)
    if choice_additions:
        additions += list(choice_additions.values())
    for addition in additions:
        if hasattr(addition, "encode") and not hasattr(addition, "_padded"):
            original = addition.encode

            def encode(data: Any, encoder: Any, original: Callable[..., None] = original) -> None:
                original(data, encoder)
                if encoder.number_of_bytes() == 0:
                    encoder.append_non_negative_binary_integer(0, 8)

            addition.encode = encode
            addition._padded = True
    children: list[Any] = []
    for name in ("root_members", "additions"):
        children += list(getattr(node, name, None) or [])
    for name in ("root_index_to_member", "additions_index_to_member"):
        children += list((getattr(node, name, None) or {}).values())
    for name in ("element_type", "inner", "type"):
        child = getattr(node, name, None)
        if child is not None and not isinstance(child, str):
            children.append(child)
    for child in children:
        for inner in getattr(child, "root_members", None) or [child]:  # (addition groups hold members)
            _pad_empty_additions(inner, seen)


# -- framing (Q.931 over TPKT) ----------------------------------------------------------------------


def q931(message_type: int, reference: int, from_destination: bool, per: bytes, *elements: bytes) -> bytes:
    """A Q.931 message in a TPKT frame: discriminator 8, a two-octet call reference (its flag set
    from the side that did not allocate it), the type, `elements` as given, then User-user (0x7E,
    two-octet length, protocol discriminator 5) around the PER."""
    flag = 0x8000 if from_destination else 0
    body = bytes([0x08, 2]) + (reference | flag).to_bytes(2, "big") + bytes([message_type]) + b"".join(elements)
    user_user = b"\x05" + per
    body += b"\x7e" + len(user_user).to_bytes(2, "big") + user_user
    return bytes([3, 0]) + (len(body) + 4).to_bytes(2, "big") + body


def read_q931(frame: bytes) -> tuple[int, int, bool, dict[int, bytes]]:
    """(message type, call reference, flag, {element id: contents}) of one message."""
    length = frame[1] & 0x0F
    reference = int.from_bytes(frame[2 : 2 + length], "big")
    at = 2 + length
    message_type = frame[at]
    at += 1
    elements: dict[int, bytes] = {}
    while at < len(frame):
        ident = frame[at]
        if ident & 0x80:
            elements[ident] = b""
            at += 1
        elif ident == 0x7E:
            size = int.from_bytes(frame[at + 1 : at + 3], "big")
            elements[ident] = frame[at + 3 : at + 3 + size]
            at += 3 + size
        else:
            size = frame[at + 1]
            elements[ident] = frame[at + 2 : at + 2 + size]
            at += 2 + size
    top = 1 << (8 * length - 1)
    return message_type, reference & (top - 1), bool(reference & top), elements


def frames(buffer: bytearray) -> list[bytes]:
    """Whole TPKT payloads taken from the front of `buffer`."""
    out = []
    while len(buffer) >= 4 and len(buffer) >= int.from_bytes(buffer[2:4], "big"):
        size = int.from_bytes(buffer[2:4], "big")
        out.append(bytes(buffer[4:size]))
        del buffer[:size]
    return out


def _address(ip: str, port: int) -> tuple[str, dict[str, Any]]:
    return ("ipAddress", {"ip": socket.inet_aton(ip), "port": port})


def _h245_address(ip: str, port: int) -> tuple[str, Any]:
    return ("unicastAddress", ("iPAddress", {"network": socket.inet_aton(ip), "tsapIdentifier": port}))


def _read_h245_address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and value[0] == "unicastAddress" and value[1][0] == "iPAddress":
        return socket.inet_ntoa(bytes(value[1][1]["network"])), int(value[1][1]["tsapIdentifier"])
    return None


class H323Peer:
    """One H.323 terminal calling the gateway. `h245`: "tunnel", "listen" (our h245Address in
    the Setup), or "connect" (to the gateway's h245Address from its Connect)."""

    def __init__(
        self,
        gateway_port: int,
        *,
        name: str = "Ratssaal",
        fast_start: bool = True,
        h245: str = "tunnel",
        tone_hz: float = 440.0,
        host: str = "127.0.0.1",
        video: bool = False,
        content: bool = False,
        source_host: str | None = None,
    ) -> None:
        self.gateway = (host, gateway_port)
        self.host = host
        self.name = name
        self.fast_start = fast_start
        self.h245_mode = h245
        self.tone_hz = tone_hz
        self.video = video or content
        self.source_host = source_host  # (the signalling connection's own address: another loopback one)
        self.answering = False  # it answers the gateway's call (listen) rather than calling
        self.setup_in: Any = None  # the gateway's Setup (H323-UserInformation value), when it calls us
        self._listener: socket.socket | None = None
        self.content = content  # H.239: presentation capability, control, the token
        self.content_in: Any = None  # H264RtpReceiver of the gateway's presentation channel (with content)
        self.content_out: Any = None  # H264RtpSender of our presentation, while we present
        self.content_sent_to: tuple[str, int] | None = None
        self.gateway_content: int | None = None  # the gateway's presentation channel, while it is open
        self.content_closed = 0  # the gateway's presentation channels closed
        self.h239_in: list[tuple[str, int, dict[int, Any]]] = []  # the gateway's H.239 messages: (class, sub, params)
        self._token_answer = threading.Event()
        self.video_sent_to: tuple[str, int] | None = None  # where our H.264 goes
        self.fast_updates = 0  # videoFastUpdatePicture commands received
        self.video_in: Any = None  # H264RtpReceiver of what the gateway sends (with video)
        self.video_out: Any = None  # H264RtpSender of the clip (once we know where to send)
        self.reference = 1 + secrets.randbelow(0x7FFF)
        self.guid = os.urandom(16)
        self.conference = os.urandom(16)
        self.wire: list[tuple[bool, bytes]] = []  # (from us, octets) on the signalling connection
        self.h245_wire: list[tuple[bool, bytes]] = []  # (from us, octets) on a separate H.245 connection
        self.gateway_h245: tuple[str, int] | None = None  # the h245Address of the gateway's Connect (we connect to it)
        self.received: list[tuple[str, Any]] = []  # (Q.931 message name, H323-UserInformation value)
        self.causes: list[int] = []  # Q.850 causes of the gateway's ReleaseCompletes
        self.control_in: list[tuple[str, str, Any]] = []  # H.245 from the gateway: (class, name, value)
        self.sent_to: tuple[str, int] | None = None  # where our RTP goes
        self.gateway_channels: dict[int, Any] = {}  # the gateway's channels we acknowledged
        self.heard = bytearray()  # µ-law payloads received, in order
        self.connected = threading.Event()
        self.released = threading.Event()
        self.capabilities_acked = threading.Event()
        self.master_slave_done = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tcs_sent = False
        self._msd_number = secrets.randbelow(1 << 24)
        self._msd_state = "idle"  # idle -> sent -> done
        self._our_channel_open = False
        self._h245_sock: socket.socket | None = None
        self._h245_listener: socket.socket | None = None
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((host, 0))
        self.rtcp.bind((host, 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.rtcp_port = self.rtcp.getsockname()[1]
        self.sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._encoder = G711Encoder(AudioCodec.PCMU)
        self._events: list[str] = []  # keys to send as RFC 2833 telephone-events
        if self.video:
            from tests.support.rtp_video import H264RtpReceiver

            self.video_in = H264RtpReceiver().start()  # (its socket sends our video too: one port each way)
            if content:
                self.content_in = H264RtpReceiver().start()

    # -- placing the call ---------------------------------------------------------------------

    def call(self, dialled: str, timeout: float = 10.0, connect: bool = True) -> None:
        """Setup to `dialled`; returns once Connect arrived (AssertionError otherwise), or at once
        when `connect` is False (a call the test expects to be refused)."""
        db = codec()
        source = (self.source_host, 0) if self.source_host else None
        self.sock = socket.create_connection(self.gateway, timeout=5, source_address=source)
        self.sock.settimeout(0.2)
        uuie: dict[str, Any] = {
            "protocolIdentifier": "0.0.8.2250.0.4",
            "sourceAddress": [("h323-ID", self.name)],
            "sourceInfo": {"vendor": {"vendor": {"t35CountryCode": 0xB5, "t35Extension": 0, "manufacturerCode": 0x4711},
                                      "productId": b"test-peer", "versionId": b"1"},
                           "terminal": {}, "mc": False, "undefinedNode": False},  # fmt: skip
            "destinationAddress": [("dialledDigits", dialled)] if dialled.isdigit() else [("h323-ID", dialled)],
            "activeMC": False,
            "conferenceID": self.conference,
            "conferenceGoal": ("create", None),
            "callType": ("pointToPoint", None),
            "sourceCallSignalAddress": _address(self.host, self.sock.getsockname()[1]),
            "callIdentifier": {"guid": self.guid},
            "mediaWaitForConnect": False,
            "canOverlapSend": False,
            "multipleCalls": False,
            "maintainConnection": False,
        }
        if self.fast_start:
            uuie["fastStart"] = [db.encode("OpenLogicalChannel", olc) for olc in self._proposals()]
        if self.h245_mode == "listen":
            self._h245_listener = socket.create_server((self.host, 0))
            uuie["h245Address"] = _address(self.host, self._h245_listener.getsockname()[1])
            self._start(self._accept_h245)
        pdu = {"h323-message-body": ("setup", uuie), "h245Tunnelling": self.h245_mode == "tunnel"}
        per = db.encode("H323-UserInformation", {"h323-uu-pdu": pdu})
        bearer = bytes([0x04, 3, 0x88, 0x18, 0x86])
        display = bytes([0x28, len(self.name)]) + self.name.encode()
        self._send(q931(SETUP, self.reference, False, per, bearer, display))
        self._start(self._read_signalling)
        self._start(self._read_rtp)
        self._start(self._send_tone)
        if connect:
            assert self.connected.wait(timeout), f"no Connect: {[name for name, _ in self.received]}"

    def listen(self) -> int:
        """Waits for the gateway's call (a dial-out) on a port of its own: the port. It answers the
        Setup with CallProceeding, then Connect (fastStart's audio answered when `fast_start` and
        proposed; H.245 tunnelled as the gateway asks); `connected` is set once Connect is out."""
        self.answering = True
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(30)
        self._start(self._answer)
        return int(self._listener.getsockname()[1])

    def _answer(self) -> None:
        assert self._listener is not None
        try:
            self.sock, _ = self._listener.accept()
        except OSError:
            return
        self.sock.settimeout(0.2)
        self._start(self._read_rtp)
        self._start(self._send_tone)
        self._read_signalling()

    def _answer_setup(self, reference: int, uuie: dict[str, Any], tunnelling: bool) -> None:
        """The gateway's Setup: its identifiers kept, fastStart's G.711 µ-law taken both ways."""
        self.reference = reference
        self.setup_in = uuie
        self.guid = bytes(uuie["callIdentifier"]["guid"])
        self.conference = bytes(uuie["conferenceID"])
        self.h245_mode = "tunnel" if tunnelling else "none"
        answers = []
        for element in uuie.get("fastStart", []) if self.fast_start else []:
            _OLC.from_aper(bytes(element))
            olc = _OLC.get_val()
            forward, reverse = olc["forwardLogicalChannelParameters"], olc.get("reverseLogicalChannelParameters")
            if forward["dataType"] == ("audioData", ("g711Ulaw64k", 20)) and not any(a[0] == "gateway sends" for a in answers):
                answers.append(("gateway sends", {
                    "forwardLogicalChannelNumber": olc["forwardLogicalChannelNumber"],
                    "forwardLogicalChannelParameters": {"dataType": ("audioData", ("g711Ulaw64k", 20)), "multiplexParameters": (
                        "h2250LogicalChannelParameters", {"sessionID": 1, "mediaChannel": _h245_address(self.host, self.rtp_port),
                                                          "mediaControlChannel": _h245_address(self.host, self.rtcp_port)})}}))  # fmt: skip
            elif reverse is not None and reverse["dataType"] == ("audioData", ("g711Ulaw64k", 20)) and not any(a[0] == "we send" for a in answers):
                self.sent_to = _read_h245_address(reverse["multiplexParameters"][1].get("mediaChannel"))
                answers.append(("we send", {
                    "forwardLogicalChannelNumber": olc["forwardLogicalChannelNumber"],
                    "forwardLogicalChannelParameters": {"dataType": ("nullData", None), "multiplexParameters": ("none", None)},
                    "reverseLogicalChannelParameters": {"dataType": ("audioData", ("g711Ulaw64k", 20)), "multiplexParameters": (
                        "h2250LogicalChannelParameters", {"sessionID": 1, "mediaControlChannel": _h245_address(self.host, self.rtcp_port)})}}))  # fmt: skip
        self.fast_start = bool(answers)
        endpoint = {"vendor": {"vendor": {"t35CountryCode": 0xB5, "t35Extension": 0, "manufacturerCode": 0x4711}},
                    "terminal": {}, "mc": False, "undefinedNode": False}  # fmt: skip
        common = {"protocolIdentifier": "0.0.8.2250.0.4", "callIdentifier": {"guid": self.guid}}
        self._send_uuie(CALL_PROCEEDING, "callProceeding", {**common, "destinationInfo": endpoint, "multipleCalls": False,
                                                            "maintainConnection": False})  # fmt: skip
        connect = {**common, "destinationInfo": endpoint, "conferenceID": self.conference, "multipleCalls": False, "maintainConnection": False}
        if answers:
            connect["fastStart"] = [codec().encode("OpenLogicalChannel", olc) for _, olc in answers]
        self._send_uuie(CONNECT, "connect", connect)
        self.connected.set()

    def _proposals(self) -> list[dict[str, Any]]:
        """G.711 µ-law: our transmit channel (forward) and our receive channel (reverse)."""
        h2250 = {"sessionID": 1, "mediaGuaranteedDelivery": False, "mediaControlChannel": _h245_address(self.host, self.rtcp_port)}
        transmit = {
            "forwardLogicalChannelNumber": 1,
            "forwardLogicalChannelParameters": {"dataType": ("audioData", ("g711Ulaw64k", 20)),
                                                "multiplexParameters": ("h2250LogicalChannelParameters", h2250)},
        }  # fmt: skip
        receive = {
            "forwardLogicalChannelNumber": 2,
            "forwardLogicalChannelParameters": {"dataType": ("nullData", None), "multiplexParameters": ("none", None)},
            "reverseLogicalChannelParameters": {
                "dataType": ("audioData", ("g711Ulaw64k", 20)),
                "multiplexParameters": ("h2250LogicalChannelParameters", {
                    "sessionID": 1, "mediaChannel": _h245_address(self.host, self.rtp_port),
                    "mediaControlChannel": _h245_address(self.host, self.rtcp_port)}),
            },
        }  # fmt: skip
        proposals = [transmit, receive]
        if self.video:
            video = {"sessionID": 2, "mediaGuaranteedDelivery": False, "dynamicRTPPayloadType": H264_PT,
                     "mediaControlChannel": _h245_address(self.host, self.video_in.port + 1),
                     "mediaPacketization": ("rtpPayloadType", {"payloadDescriptor": ("oid", "0.0.8.241.0.0.0.1"), "payloadType": H264_PT})}  # fmt: skip
            proposals.append({
                "forwardLogicalChannelNumber": 3,
                "forwardLogicalChannelParameters": {"dataType": ("videoData", ("genericVideoCapability", h264_capability())),
                                                    "multiplexParameters": ("h2250LogicalChannelParameters", video)},
            })  # fmt: skip
            proposals.append({
                "forwardLogicalChannelNumber": 4,
                "forwardLogicalChannelParameters": {"dataType": ("nullData", None), "multiplexParameters": ("none", None)},
                "reverseLogicalChannelParameters": {
                    "dataType": ("videoData", ("genericVideoCapability", h264_capability())),
                    "multiplexParameters": ("h2250LogicalChannelParameters", {**{k: v for k, v in video.items() if k != "mediaGuaranteedDelivery"},
                                                                            "mediaChannel": _h245_address(self.host, self.video_in.port)}),
                },
            })  # fmt: skip
        return proposals

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        with self._lock:
            self.wire.append((True, data))
            self.sock.sendall(data)

    def _send_uuie(self, message_type: int, body: str, value: Any, h245: list[bytes] | None = None) -> None:
        pdu: dict[str, Any] = {"h323-message-body": (body, value), "h245Tunnelling": self.h245_mode == "tunnel"}
        if h245:
            pdu["h245Control"] = h245
        per = codec().encode("H323-UserInformation", {"h323-uu-pdu": pdu})
        self._send(q931(message_type, self.reference, self.answering, per))

    # -- signalling in ------------------------------------------------------------------------

    def _receive(self, sock: socket.socket, on_frame: Callable[[bytes], None], wire: list[tuple[bool, bytes]] | None = None) -> None:
        """TPKT frames from `sock` to `on_frame` until it closes or the peer stops (what came in
        recorded in `wire`)."""
        buffer = bytearray()
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if wire is not None:
                with self._lock:
                    wire.append((False, data))
            buffer += data
            for frame in frames(buffer):
                on_frame(frame)

    def _read_signalling(self) -> None:
        assert self.sock is not None
        self._receive(self.sock, self._on_message, self.wire)
        self.released.set()

    def _on_message(self, frame: bytes) -> None:
        message_type, _, _, elements = read_q931(frame)
        name = NAMES.get(message_type, hex(message_type))
        user_user = elements.get(0x7E, b"")
        _USER_INFORMATION.from_aper(user_user[1:])
        value = _USER_INFORMATION.get_val()
        self.received.append((name, value))
        pdu = value["h323-uu-pdu"]
        body, uuie = pdu["h323-message-body"]
        if message_type == SETUP and self.answering:
            self._answer_setup(read_q931(frame)[1], uuie, bool(pdu.get("h245Tunnelling")))
        if message_type != SETUP and isinstance(uuie, dict) and uuie.get("fastStart"):
            self._fast_start_answer(uuie["fastStart"])
        if message_type == CONNECT:
            address = uuie.get("h245Address")
            if self.h245_mode == "connect" and address is not None:
                ip = socket.inet_ntoa(bytes(address[1]["ip"]))
                self.gateway_h245 = (ip, int(address[1]["port"]))
                self._h245_sock = socket.create_connection(self.gateway_h245, timeout=5)
                self._start(self._read_h245)
            self.connected.set()
        for pdu_bytes in pdu.get("h245Control", ()):
            self._on_h245(bytes(pdu_bytes))
        if message_type == RELEASE_COMPLETE:
            cause = elements.get(0x08, b"")
            if len(cause) >= 2:
                self.causes.append(cause[-1] & 0x7F)
            self.released.set()

    def _fast_start_answer(self, answers: list[bytes]) -> None:
        for element in answers:
            _OLC.from_aper(bytes(element))
            olc = _OLC.get_val()
            forward = olc["forwardLogicalChannelParameters"]
            if forward["dataType"][0] != "nullData":  # our transmit channel: where to send
                h2250 = forward["multiplexParameters"][1]
                if forward["dataType"][0] == "videoData":
                    self._send_video_to(_read_h245_address(h2250.get("mediaChannel")))
                else:
                    self.sent_to = _read_h245_address(h2250.get("mediaChannel"))

    # -- H.245 --------------------------------------------------------------------------------

    def _accept_h245(self) -> None:
        assert self._h245_listener is not None
        self._h245_listener.settimeout(10)
        try:
            self._h245_sock, _ = self._h245_listener.accept()
        except OSError:
            return
        self._read_h245()

    def _read_h245(self) -> None:
        sock = self._h245_sock
        assert sock is not None
        sock.settimeout(0.2)
        self._receive(sock, self._on_h245, self.h245_wire)

    def send_h245(self, *values: tuple[str, tuple[str, Any]]) -> None:
        pdus = [codec().encode("MultimediaSystemControlMessage", value) for value in values]
        if self.h245_mode == "tunnel":
            self._send_uuie(FACILITY, "empty", None, h245=pdus)
        else:
            deadline = time.monotonic() + 5
            while self._h245_sock is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert self._h245_sock is not None, "no H.245 connection"
            data = b"".join(bytes([3, 0]) + (len(p) + 4).to_bytes(2, "big") + p for p in pdus)
            with self._lock:
                self.h245_wire.append((True, data))
                self._h245_sock.sendall(data)

    def _capability_set(self) -> tuple[str, tuple[str, Any]]:
        multipoint = {"multicastCapability": False, "multiUniCastConference": False, "mediaDistributionCapability": [
            {"centralizedControl": False, "distributedControl": False, "centralizedAudio": False, "distributedAudio": False,
             "centralizedVideo": False, "distributedVideo": False}]}  # fmt: skip
        table = [
            {"capabilityTableEntryNumber": 1, "capability": ("receiveAudioCapability", ("g711Ulaw64k", 60))},
            {"capabilityTableEntryNumber": 2, "capability": ("receiveUserInputCapability", ("basicString", None))},
            {"capabilityTableEntryNumber": 3, "capability": ("receiveUserInputCapability", ("dtmf", None))},
        ]
        sets = [[1], [2, 3]]
        if self.video:
            table.append({"capabilityTableEntryNumber": 4, "capability": ("receiveVideoCapability", ("genericVideoCapability", h264_capability()))})
            sets.append([4])
        if self.content:
            table.append({"capabilityTableEntryNumber": 5, "capability": ("receiveVideoCapability", presentation_capability())})
            table.append({"capabilityTableEntryNumber": 6, "capability": ("genericControlCapability", {"capabilityIdentifier": ("standard", "0.0.8.239.1.1")})})
            sets += [[5], [6]]
        return ("request", ("terminalCapabilitySet", {
            "sequenceNumber": 1, "protocolIdentifier": "0.0.8.245.0.7",
            "multiplexCapability": ("h2250Capability", {
                "maximumAudioDelayJitter": 60, "receiveMultipointCapability": multipoint,
                "transmitMultipointCapability": multipoint, "receiveAndTransmitMultipointCapability": multipoint,
                "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
                "rtcpVideoControlCapability": False, "mediaPacketizationCapability": {"h261aVideoPacketization": False,
                    "rtpPayloadType": [{"payloadDescriptor": ("oid", "0.0.8.241.0.0.0.1")}]},
                "logicalChannelSwitchingCapability": False, "t120DynamicPortCapability": False}),
            "capabilityTable": table,
            "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": sets}],
        }))  # fmt: skip

    def _on_h245(self, pdu: bytes) -> None:
        _CONTROL_MESSAGE.from_aper(pdu)
        kind, (name, value) = _CONTROL_MESSAGE.get_val()
        self.control_in.append((kind, name, value))
        replies: list[tuple[str, tuple[str, Any]]] = []
        if name == "terminalCapabilitySet":
            replies.append(("response", ("terminalCapabilitySetAck", {"sequenceNumber": value["sequenceNumber"]})))
            if not self._tcs_sent:
                self._tcs_sent = True
                replies.append(self._capability_set())
            if self._msd_state == "idle":
                self._msd_state = "sent"
                replies.append(("request", ("masterSlaveDetermination", {"terminalType": TERMINAL, "statusDeterminationNumber": self._msd_number})))
        elif name == "terminalCapabilitySetAck":
            self.capabilities_acked.set()
            if not self.fast_start and not self._our_channel_open:
                self._our_channel_open = True
                proposals = self._proposals()
                replies.append(("request", ("openLogicalChannel", proposals[0])))
                if self.video:
                    replies.append(("request", ("openLogicalChannel", proposals[2])))
        elif name == "masterSlaveDetermination":
            gateway_master = value["terminalType"] > TERMINAL  # (an MCU's type beats a terminal's)
            replies.append(("response", ("masterSlaveDeterminationAck", {"decision": ("master" if gateway_master else "slave", None)})))
            self._msd_state = "acked theirs"
        elif name == "masterSlaveDeterminationAck":
            if self._msd_state == "sent":  # they acknowledged ours without one of their own: the third step
                ours = value["decision"][0]
                replies.append(("response", ("masterSlaveDeterminationAck", {"decision": ("slave" if ours == "master" else "master", None)})))
            self._msd_state = "done"
            self.master_slave_done.set()
        elif name == "openLogicalChannel":
            self.gateway_channels[value["forwardLogicalChannelNumber"]] = value
            data_type = value["forwardLogicalChannelParameters"]["dataType"]
            is_video = data_type[0] == "videoData"
            rtp = self.video_in.port if is_video and self.video_in is not None else self.rtp_port
            if is_video and data_type[1][0] == "extendedVideoCapability":
                assert self.content_in is not None, "a presentation channel to a peer without H.239"
                rtp = self.content_in.port
                self.gateway_content = value["forwardLogicalChannelNumber"]
            ack = {
                "forwardLogicalChannelNumber": value["forwardLogicalChannelNumber"],
                "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", {
                    "sessionID": value["forwardLogicalChannelParameters"]["multiplexParameters"][1]["sessionID"],
                    "mediaChannel": _h245_address(self.host, rtp),
                    "mediaControlChannel": _h245_address(self.host, rtp + 1)}),
            }  # fmt: skip
            replies.append(("response", ("openLogicalChannelAck", ack)))
        elif name == "openLogicalChannelAck":
            h2250 = value["forwardMultiplexAckParameters"][1]
            if value["forwardLogicalChannelNumber"] == 3:
                self._send_video_to(_read_h245_address(h2250.get("mediaChannel")))
            elif value["forwardLogicalChannelNumber"] == CONTENT_CHANNEL:
                self._send_content_to(_read_h245_address(h2250.get("mediaChannel")))
            else:
                self.sent_to = _read_h245_address(h2250.get("mediaChannel"))
        elif name == "miscellaneousCommand" and value["type"][0] == "videoFastUpdatePicture":
            self.fast_updates += 1
            sender = self.content_out if value["logicalChannelNumber"] == CONTENT_CHANNEL else self.video_out
            if sender is not None:
                sender.request_key_frame()
        elif name in ("genericRequest", "genericResponse", "genericCommand", "genericIndication"):
            replies += self._on_h239(name[len("generic"):].lower(), value)
        elif name == "closeLogicalChannel":
            if value["forwardLogicalChannelNumber"] == self.gateway_content:
                self.gateway_content = None
                self.content_closed += 1
            replies.append(("response", ("closeLogicalChannelAck", {"forwardLogicalChannelNumber": value["forwardLogicalChannelNumber"]})))
        elif name == "roundTripDelayRequest":
            replies.append(("response", ("roundTripDelayResponse", {"sequenceNumber": value["sequenceNumber"]})))
        if replies:
            self.send_h245(*replies)

    def _on_h239(self, kind: str, value: Any) -> list[tuple[str, tuple[str, Any]]]:
        """The gateway's H.239 messages, recorded; its request for the token (it takes the
        presentation back) is acknowledged and our presentation stops, as H.239 wants."""
        assert value["messageIdentifier"] == ("standard", (0, 0, 8, 239, 2)), value
        params = {p["parameterIdentifier"][1]: p["parameterValue"][1] for p in value.get("messageContent", [])}
        sub_message = value["subMessageIdentifier"]
        self.h239_in.append((kind, sub_message, params))
        if kind == "response" and sub_message == TOKEN_RESPONSE:
            self._token_answer.set()
        if kind == "request" and sub_message == TOKEN_REQUEST:
            self._stop_content()
            return [h239("response", TOKEN_RESPONSE, {ACKNOWLEDGE: None, TERMINAL_LABEL: params.get(TERMINAL_LABEL, 0)}),
                    ("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": CONTENT_CHANNEL, "source": ("user", None)}))]  # fmt: skip
        return []

    # -- what the test does -------------------------------------------------------------------

    def present(self, timeout: float = 10.0) -> bool:
        """The share button: presentationTokenRequest; once acknowledged, the owner indication, our
        presentation channel (session 0: the master assigns it) and the clip on it. Whether the
        gateway acknowledged it."""
        self._token_answer.clear()
        self.send_h239("request", TOKEN_REQUEST, {TERMINAL_LABEL: 1, CHANNEL_ID: CONTENT_CHANNEL, SYMMETRY_BREAKING: 1 + secrets.randbelow(127)})
        assert self._token_answer.wait(timeout), "no presentationTokenResponse"
        answer = [params for kind, sub, params in self.h239_in if kind == "response" and sub == TOKEN_RESPONSE][-1]
        if ACKNOWLEDGE not in answer:
            return False
        h2250 = {"sessionID": 0, "mediaGuaranteedDelivery": False, "dynamicRTPPayloadType": H264_PT,
                 "mediaControlChannel": _h245_address(self.host, self.content_in.port + 1),
                 "mediaPacketization": ("rtpPayloadType", {"payloadDescriptor": ("oid", "0.0.8.241.0.0.0.1"), "payloadType": H264_PT})}  # fmt: skip
        olc = {"forwardLogicalChannelNumber": CONTENT_CHANNEL, "forwardLogicalChannelParameters": {
            "dataType": ("videoData", presentation_capability()), "multiplexParameters": ("h2250LogicalChannelParameters", h2250)}}  # fmt: skip
        self.send_h245(h239("indication", TOKEN_OWNER, {TERMINAL_LABEL: 1, CHANNEL_ID: CONTENT_CHANNEL}), ("request", ("openLogicalChannel", olc)))
        return True

    def stop_presenting(self) -> None:
        """presentationTokenRelease and our presentation channel closed."""
        self._stop_content()
        self.send_h245(h239("command", TOKEN_RELEASE, {TERMINAL_LABEL: 1, CHANNEL_ID: CONTENT_CHANNEL}),
                       ("request", ("closeLogicalChannel", {"forwardLogicalChannelNumber": CONTENT_CHANNEL, "source": ("user", None)})))  # fmt: skip

    def send_h239(self, kind: str, sub_message: int, parameters: dict[int, Any]) -> None:
        self.send_h245(h239(kind, sub_message, parameters))


    def send_keys(self, keys: str, form: str = "alphanumeric") -> None:
        """The keys as H.245 userInputIndication: one `alphanumeric` string, or one `signal`
        indication per key (signalType), as many room systems send them; or `rfc2833`: as RTP
        telephone-events on the audio channel (payload type 101, what the gateway's capability set
        offers), between the tone's packets."""
        if form == "alphanumeric":
            self.send_h245(("indication", ("userInput", ("alphanumeric", keys))))
        elif form == "signal":
            for key in keys:
                self.send_h245(("indication", ("userInput", ("signal", {"signalType": key, "duration": 160}))))
        else:
            assert form == "rfc2833", form
            self._events.extend(keys)

    def hang_up(self) -> None:
        """endSessionCommand, then ReleaseComplete (normal clearing)."""
        self.send_h245(("command", ("endSessionCommand", ("disconnect", None))))
        per_value = {"protocolIdentifier": "0.0.8.2250.0.4", "callIdentifier": {"guid": self.guid}}
        per = codec().encode("H323-UserInformation", {"h323-uu-pdu": {"h323-message-body": ("releaseComplete", per_value),
                                                                       "h245Tunnelling": self.h245_mode == "tunnel"}})  # fmt: skip
        self._send(q931(RELEASE_COMPLETE, self.reference, self.answering, per, bytes([0x08, 2, 0x80, 0x90])))

    def hears(self, frequency: float, seconds: float = 1.0) -> float:
        """The share (dB, 0 = all of it) of what it heard in the last `seconds` that lies within
        20 Hz of `frequency`: about -3 dB for one of two tones heard, below -40 for one not heard."""
        samples = int(8000 * seconds)
        payload = bytes(self.heard[-samples:])
        if len(payload) < samples:
            return -100.0
        decoder = G711Decoder(AudioCodec.PCMU)
        pcm = np.concatenate([decoder.decode_narrow(payload[i : i + 160]) for i in range(0, len(payload) - 159, 160)])
        power = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size))) ** 2
        hz = np.fft.rfftfreq(pcm.size, 1 / 8000)
        band, total = power[(hz > frequency - 20) & (hz < frequency + 20)].sum(), power.sum()
        if total < pcm.size * 100.0:  # (silence: below about -50 dBov)
            return -100.0
        return float(10 * np.log10(band / total + 1e-12))

    # -- RTP ------------------------------------------------------------------------------------

    def _read_rtp(self) -> None:
        self.rtp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, _ = self.rtp.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                break
            if len(data) > 12 and data[1] & 0x7F == 0:
                self.heard += data[12:]

    def _send_tone(self) -> None:
        sequence, stamp, ssrc = 0, 0, secrets.randbits(32)
        t = np.arange(160) / 8000
        next_at = time.monotonic()
        event: list[bytes] = []  # the packets of the key being sent (RFC 4733: one timestamp, growing duration)
        while not self._stop.is_set():
            if self.sent_to is not None:
                if not event and self._events:
                    code = "0123456789*#".index(self._events.pop(0))
                    start = stamp
                    event = [struct.pack("!BBH", code, 10, 160 * (i + 1)) for i in range(6)]
                    event += [struct.pack("!BBH", code, 0x80 | 10, 160 * 7)] * 3  # (the end, three times)
                    event += [b""] * 3  # (then a gap of tone before the next key)
                if event and event[0]:
                    first = len(event) == 12
                    header = struct.pack("!BBHII", 0x80, (0x80 if first else 0) | 101, sequence & 0xFFFF, start & 0xFFFFFFFF, ssrc)
                    packet = header + event.pop(0)
                else:
                    if event:
                        event.pop(0)
                    pcm = (8000 * np.sin(2 * np.pi * self.tone_hz * (t + stamp / 8000))).astype(np.int16)
                    header = struct.pack("!BBHII", 0x80, 0, sequence & 0xFFFF, stamp & 0xFFFFFFFF, ssrc)
                    packet = header + self._encoder.encode_narrow(pcm)
                try:
                    self.rtp.sendto(packet, self.sent_to)
                except OSError:
                    pass
                sequence += 1
                stamp += 160
            next_at += 0.02
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _send_video_to(self, address: tuple[str, int] | None) -> None:
        if address is None or self.video_in is None or self.video_out is not None:
            return
        from tests.support.rtp_video import H264RtpSender

        self.video_sent_to = address
        self.video_out = H264RtpSender(address, payload_type=H264_PT, source=self.video_in.socket, fps=15).start()

    def _send_content_to(self, address: tuple[str, int] | None) -> None:
        if address is None or self.content_in is None:
            return
        from tests.support.rtp_video import H264RtpSender

        self._stop_content()
        self.content_sent_to = address
        self.content_out = H264RtpSender(address, payload_type=H264_PT, source=self.content_in.socket, fps=10).start()

    def _stop_content(self) -> None:
        sender, self.content_out = self.content_out, None
        if sender is not None:
            sender.stop()

    def close(self) -> None:
        self._stop.set()
        self._stop_content()
        for media in (self.video_out, self.video_in, self.content_in):
            if media is not None:
                media.stop()
        for sock in (self.sock, self._h245_sock, self._h245_listener, self._listener, self.rtp, self.rtcp):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(2)



def assert_tshark_reads(peer: H323Peer, tmp_path: Path, fields: tuple[str, ...] = ()) -> list[Packet]:
    """The whole signalling connection, both ways (tunnelled H.245 in it), and a separate H.245
    connection if there was one, read by Wireshark's H.225.0 and H.245 dissectors with nothing
    malformed or warned about: the packets (H.225.0's, then H.245's)."""
    packets = tshark_packets(tcp_pcap(tmp_path / f"{peer.name}.pcap", peer.wire, 1720), "h225", ["h225.h323_message_body", *fields])
    assert packets, "tshark found no H.225.0"
    if peer.h245_wire:
        pcap = tcp_pcap(tmp_path / f"{peer.name}-h245.pcap", peer.h245_wire, 41245)
        h245_packets = tshark_packets(pcap, "h245", ["h245.pdu_type", *fields], decode_as=["tcp.port==41245,h245"])
        assert {kind for p in h245_packets for kind in p.fields.get("h245.pdu_type", [])} >= {"0", "1"}, "no H.245 requests and responses"
        packets += h245_packets
    assert not [p for p in packets if p.malformed or p.problems], [(p.frame, p.problems) for p in packets]
    return packets


class Gatekeeper:
    """A gatekeeper for the tests (RAS on UDP, 127.0.0.1): confirms registrations (keeping the
    aliases registered), admits calls (or refuses them all, `refuse`), confirms disengages and
    unregistrations. Encodes with asn1tools, decodes with pycrate, as H323Peer does."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[str, Any]] = []  # every RAS message, in order
        self.wire: list[tuple[bool, bytes]] = []  # (from the endpoint, octets)
        self.aliases: list[tuple[str, str]] = []  # registered by the last full RegistrationRequest
        self.routes: dict[str, tuple[str, int]] = {}  # alias -> where an endpoint calling it is sent (ACF)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def names(self) -> list[str]:
        return [name for name, _ in self.received]

    def _run(self) -> None:
        ras = H225.H323_MESSAGES.RasMessage
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            self.wire.append((True, data))
            ras.from_aper(data)
            name, value = ras.get_val()
            self.received.append((name, value))
            answer = self._answer(name, value)
            if answer is not None:
                octets = codec().encode("RasMessage", answer)
                self.wire.append((False, octets))
                self.sock.sendto(octets, source)

    def _answer(self, name: str, value: Any) -> tuple[str, Any] | None:
        sequence = value.get("requestSeqNum") if isinstance(value, dict) else None
        if name == "registrationRequest":
            if not value.get("keepAlive"):
                self.aliases = list(value.get("terminalAlias", []))
            return ("registrationConfirm", {
                "requestSeqNum": sequence, "protocolIdentifier": "0.0.8.2250.0.4",
                "callSignalAddress": [], "endpointIdentifier": "EP-1", "gatekeeperIdentifier": "GK-Test",
                "timeToLive": value.get("timeToLive", 300), "willRespondToIRR": False, "maintainConnection": False})  # fmt: skip
        if name == "admissionRequest":
            if self.refuse:
                return ("admissionReject", {"requestSeqNum": sequence, "rejectReason": ("requestDenied", None)})
            called = [alias for _, alias in value.get("destinationInfo", []) if alias in self.routes]
            destination = self.routes[called[0]] if called and not value["answerCall"] else ("127.0.0.1", 1720)
            return ("admissionConfirm", {
                "requestSeqNum": sequence, "bandWidth": value["bandWidth"], "callModel": ("direct", None),
                "destCallSignalAddress": _address(*destination), "willRespondToIRR": False, "uuiesRequested": {
                    "setup": False, "callProceeding": False, "connect": False, "alerting": False, "information": False,
                    "releaseComplete": False, "facility": False, "progress": False, "empty": False}})  # fmt: skip
        if name == "disengageRequest":
            return ("disengageConfirm", {"requestSeqNum": sequence})
        if name == "unregistrationRequest":
            return ("unregistrationConfirm", {"requestSeqNum": sequence})
        return None

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)

