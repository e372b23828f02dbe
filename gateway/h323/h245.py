"""H.245 messages (ITU-T H.245, aligned PER by pycrate through gateway/h323/per.py): the
capabilities and logical channels of an H.323 call in plain objects, and the PDUs that carry them.

- `Codec` is one media format as H.245 names it: G.711 A/µ-law and G.722 (a frames-per-packet
  count, in ms), H.264 as H.241's generic capability (0.0.8.241.0.0.1: profile bits, level, the
  custom MBPS/FS maximums, packetization mode by the RTP payload descriptor OIDs
  0.0.8.241.0.0.0.0/.1), H.263 read only. `role` "presentation" marks H.239 content (the extended
  video capability with role label 1).
- `Capabilities` is what a TerminalCapabilitySet says (ours written by `terminal_capability_set`,
  the far end's read by `read_capabilities`): receive codecs per kind, RFC 2833 telephone-event,
  user input, H.239 control.
- `Channel` is one OpenLogicalChannel (normal or a fastStart proposal/answer): its number, session,
  direction (forward: the opener transmits; reverse: a fastStart proposal to receive), codec and
  RTP/RTCP addresses; `open_logical_channel`/`read_channel` write and read it, `channel_ack` and
  `read_channel_ack` the OpenLogicalChannelAck.

Every PDU is a MultimediaSystemControlMessage: `read(pdu)` gives (class, message, value) with
pycrate's value form; builders give octets. Reading raises only H245Error.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from pycrate_asn1dir import H245

from gateway.h323.per import PerError, decode, encode

PROTOCOL_IDENTIFIER = (0, 0, 8, 245, 0, 13)
H264_CAPABILITY = (0, 0, 8, 241, 0, 0, 1)
H264_SINGLE_NAL = (0, 0, 8, 241, 0, 0, 0, 0)  # packetization-mode 0
H264_NON_INTERLEAVED = (0, 0, 8, 241, 0, 0, 0, 1)  # packetization-mode 1
H239_CONTROL = (0, 0, 8, 239, 1, 1)
H239_EXTENDED_VIDEO = (0, 0, 8, 239, 1, 2)
H239_MESSAGE = (0, 0, 8, 239, 2)
TERMINAL_TYPE_MCU = 190  # MCU with audio, video and data MPs (H.245 terminalType, H.323 table 1)
MAX_TABLE = 64  # capability table entries read from one TerminalCapabilitySet
MAX_DESCRIPTORS = 16

_MESSAGE = H245.MULTIMEDIA_SYSTEM_CONTROL.MultimediaSystemControlMessage
_OPEN_LOGICAL_CHANNEL = H245.MULTIMEDIA_SYSTEM_CONTROL.OpenLogicalChannel

# H.241 parameters of the H.264 capability (collapsing, standard identifiers) and profile bits
_PROFILE, _LEVEL, _MAX_MBPS, _MAX_FS, _MAX_BR = 41, 42, 3, 4, 6
PROFILE_BASELINE, PROFILE_MAIN, PROFILE_HIGH = 64, 32, 8
LEVEL_3_1, LEVEL_4 = 71, 85  # H.241 level values (level 1: 15 ... 5.1: 113)
_ROLE_LABEL = 1  # H.239 extended video capability parameter
ROLE_PRESENTATION, ROLE_LIVE = 1, 2


class H245Error(ValueError):
    """A PDU we cannot read, or a message whose contents make no sense."""


class MediaKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"
    CONTENT = "content"  # H.239 presentation


class Session(enum.IntEnum):
    """The RTP sessions of H.225.0 (sessionID): audio 1, video 2, data 3; content gets its own."""

    AUDIO = 1
    VIDEO = 2
    DATA = 3
    CONTENT = 32  # (a session the master assigns; any free number above 3 would do)


@dataclass(frozen=True)
class Codec:
    name: str  # PCMU, PCMA, G722, H264, H263
    frames: int = 20  # audio: frames (ms) per packet
    profile: int = PROFILE_BASELINE  # H.264: H.241 profile bits
    level: int = LEVEL_3_1  # H.264: H.241 level value
    max_mbps: int | None = None  # H.264: custom maximum macroblocks per second (in units of 500)
    max_fs: int | None = None  # H.264: custom maximum frame size (in units of 256 macroblocks)
    max_bitrate: int | None = None  # video: in units of 100 bit/s
    packetization_mode: int = 1  # H.264
    role: int | None = None  # H.239 role label: 1 presentation, 2 live; None for main video

    @property
    def kind(self) -> MediaKind:
        if self.name in ("PCMU", "PCMA", "G722"):
            return MediaKind.AUDIO
        return MediaKind.CONTENT if self.role == ROLE_PRESENTATION else MediaKind.VIDEO


G711A, G711U, G722 = Codec("PCMA"), Codec("PCMU"), Codec("G722")
_AUDIO = {"PCMA": "g711Alaw64k", "PCMU": "g711Ulaw64k", "G722": "g722-64k"}
_AUDIO_NAMES = {asn1: name for name, asn1 in _AUDIO.items()}


@dataclass(frozen=True)
class Capabilities:
    """A TerminalCapabilitySet: what an endpoint receives (and how), in its order of preference."""

    audio: tuple[Codec, ...] = ()
    video: tuple[Codec, ...] = ()
    content: tuple[Codec, ...] = ()  # H.239 presentation (extended video capability, role label 1)
    telephone_event: int | None = None  # RFC 2833's dynamic payload type
    user_input: frozenset[str] = frozenset()  # basicString, dtmf, iA5String ...
    h239: bool = False  # the H.239 control capability
    packetization_modes: frozenset[int] = frozenset({0})  # H.264 modes its mediaPacketization lists
    other_audio: tuple[str, ...] = ()  # audio it receives that we do not speak (G.722.1, Siren 14, G.729 ...)

    def codecs(self, kind: MediaKind) -> tuple[Codec, ...]:
        return {MediaKind.AUDIO: self.audio, MediaKind.VIDEO: self.video, MediaKind.CONTENT: self.content}[kind]


@dataclass(frozen=True)
class Channel:
    """An OpenLogicalChannel. `reverse`: the parameters are reverse ones (a fastStart proposal to
    receive, or the callee's answer to it: the opener receives); otherwise the opener transmits."""

    number: int
    session: int
    codec: Codec
    reverse: bool = False
    media: tuple[str, int] | None = None  # mediaChannel: where the receiver wants RTP
    control: tuple[str, int] | None = None  # mediaControlChannel: the sender's (or receiver's) RTCP
    payload_type: int | None = None  # dynamicRTPPayloadType (96..127)

    @property
    def kind(self) -> MediaKind:
        return self.codec.kind


# -- PDUs --------------------------------------------------------------------------------------


def read(pdu: bytes) -> tuple[str, str, Any]:
    """(request|response|command|indication, message name, value) of one PDU."""
    try:
        kind, (name, value) = decode(_MESSAGE, pdu)
    except (PerError, TypeError, ValueError) as exc:
        raise H245Error(str(exc)) from None
    return kind, name, value


def message(kind: str, name: str, value: Any) -> bytes:
    try:
        return encode(_MESSAGE, (kind, (name, value)))
    except PerError as exc:
        raise H245Error(str(exc)) from None


def master_slave_determination(number: int, terminal_type: int = TERMINAL_TYPE_MCU) -> bytes:
    return message("request", "masterSlaveDetermination", {"terminalType": terminal_type, "statusDeterminationNumber": number})


def master_slave_ack(peer_is_master: bool) -> bytes:
    """The decision, as the recipient's role."""
    return message("response", "masterSlaveDeterminationAck", {"decision": ("master" if peer_is_master else "slave", 0)})


def master_slave_reject() -> bytes:
    return message("response", "masterSlaveDeterminationReject", {"cause": ("identicalNumbers", 0)})


def terminal_capability_set_ack(sequence: int) -> bytes:
    return message("response", "terminalCapabilitySetAck", {"sequenceNumber": sequence})


def terminal_capability_set_reject(sequence: int) -> bytes:
    return message("response", "terminalCapabilitySetReject", {"sequenceNumber": sequence, "cause": ("unspecified", 0)})


def round_trip_delay_request(sequence: int) -> bytes:
    return message("request", "roundTripDelayRequest", {"sequenceNumber": sequence})


def round_trip_delay_response(sequence: int) -> bytes:
    return message("response", "roundTripDelayResponse", {"sequenceNumber": sequence})


def end_session() -> bytes:
    return message("command", "endSessionCommand", ("disconnect", 0))


def video_fast_update(channel: int) -> bytes:
    return message("command", "miscellaneousCommand", {"logicalChannelNumber": channel, "type": ("videoFastUpdatePicture", 0)})


def flow_control(channel: int, bitrate: int | None) -> bytes:
    """flowControlCommand: at most `bitrate` bit/s on the channel (None: no restriction)."""
    restriction = ("noRestriction", 0) if bitrate is None else ("maximumBitRate", min(bitrate // 100, 16_777_215))
    return message("command", "flowControlCommand", {"scope": ("logicalChannelNumber", channel), "restriction": restriction})


def close_logical_channel(channel: int) -> bytes:
    return message("request", "closeLogicalChannel", {"forwardLogicalChannelNumber": channel, "source": ("user", 0)})


def close_logical_channel_ack(channel: int) -> bytes:
    return message("response", "closeLogicalChannelAck", {"forwardLogicalChannelNumber": channel})


def open_logical_channel_reject(channel: int, cause: str = "dataTypeNotSupported") -> bytes:
    return message("response", "openLogicalChannelReject", {"forwardLogicalChannelNumber": channel, "cause": (cause, 0)})


def user_input(text: str) -> bytes:
    """userInputIndication alphanumeric (keys a room system's keypad shows)."""
    return message("indication", "userInput", ("alphanumeric", text))


def function_not_understood(kind: str, name: str, value: Any) -> bytes:
    return message("indication", "functionNotUnderstood", (kind, (name, value)))


def generic_message(kind: str, sub_message: int, parameters: list[tuple[int, tuple[str, Any]]]) -> bytes:
    """An H.239 message (genericRequest/Response/Command/Indication, 0.0.8.239.2)."""
    value: dict[str, Any] = {"messageIdentifier": ("standard", H239_MESSAGE), "subMessageIdentifier": sub_message}
    if parameters:
        value["messageContent"] = [{"parameterIdentifier": ("standard", ident), "parameterValue": v} for ident, v in parameters]
    name = {"request": "genericRequest", "response": "genericResponse", "command": "genericCommand", "indication": "genericIndication"}[kind]
    return message(kind, name, value)


def read_generic(value: Any) -> tuple[tuple[int, ...], int | None, dict[int, tuple[str, Any]]]:
    """(message identifier OID, sub message, {parameter id: (kind, value)}) of a generic message."""
    identifier = value.get("messageIdentifier", ("", ()))
    oid = tuple(identifier[1]) if identifier[0] == "standard" and isinstance(identifier[1], tuple) else ()
    parameters = {}
    for item in value.get("messageContent", ())[:16]:
        ident = item.get("parameterIdentifier", ("", None))
        if ident[0] == "standard" and isinstance(ident[1], int):
            parameters[ident[1]] = item.get("parameterValue")
    return oid, value.get("subMessageIdentifier"), parameters


def read_user_input(value: Any) -> str | None:
    """The keys of a userInputIndication: alphanumeric text or one signal."""
    kind, content = value
    if kind == "alphanumeric" and isinstance(content, str):
        return content[:32]
    if kind == "signal" and isinstance(content, dict) and isinstance(content.get("signalType"), str):
        return str(content["signalType"])[:1]
    return None


# -- capabilities -----------------------------------------------------------------------------------


def _generic_h264(codec: Codec) -> dict[str, Any]:
    collapsing: list[dict[str, Any]] = [
        {"parameterIdentifier": ("standard", _PROFILE), "parameterValue": ("booleanArray", codec.profile)},
        {"parameterIdentifier": ("standard", _LEVEL), "parameterValue": ("unsignedMin", codec.level)},
    ]
    if codec.max_mbps:
        collapsing.append({"parameterIdentifier": ("standard", _MAX_MBPS), "parameterValue": ("unsignedMin", codec.max_mbps)})
    if codec.max_fs:
        collapsing.append({"parameterIdentifier": ("standard", _MAX_FS), "parameterValue": ("unsignedMin", codec.max_fs)})
    capability: dict[str, Any] = {"capabilityIdentifier": ("standard", H264_CAPABILITY), "collapsing": collapsing}
    if codec.max_bitrate:
        capability["maxBitRate"] = codec.max_bitrate
    return capability


def _video_capability(codec: Codec) -> tuple[str, Any]:
    if codec.name != "H264":
        raise H245Error(f"no H.245 capability written for {codec.name}")
    main = ("genericVideoCapability", _generic_h264(codec))
    if codec.role is None:
        return main
    extension = {
        "capabilityIdentifier": ("standard", H239_EXTENDED_VIDEO),
        "collapsing": [{"parameterIdentifier": ("standard", _ROLE_LABEL), "parameterValue": ("booleanArray", codec.role)}],
    }
    return ("extendedVideoCapability", {"videoCapability": [main], "videoCapabilityExtension": [extension]})


def data_type(codec: Codec) -> tuple[str, Any]:
    """The DataType of a channel carrying `codec`."""
    if codec.kind is MediaKind.AUDIO:
        return ("audioData", (_AUDIO[codec.name], codec.frames))
    return ("videoData", _video_capability(codec))


def _read_video(value: Any) -> Codec | None:
    kind, content = value
    if kind == "genericVideoCapability":
        return _read_h264(content)
    if kind == "h263VideoCapability":
        return Codec("H263", max_bitrate=content.get("maxBitRate"))
    if kind == "extendedVideoCapability":
        role = None
        for extension in content.get("videoCapabilityExtension", ())[:8]:
            if _oid(extension.get("capabilityIdentifier")) == H239_EXTENDED_VIDEO:
                for parameter in extension.get("collapsing", ())[:8]:
                    if parameter.get("parameterIdentifier") == ("standard", _ROLE_LABEL):
                        role = _number(parameter.get("parameterValue"))
        for video in content.get("videoCapability", ())[:8]:
            codec = _read_video(video)
            if codec is not None and codec.role is None:
                return replace(codec, role=role or ROLE_LIVE)
    return None


def _read_h264(capability: Any) -> Codec | None:
    if _oid(capability.get("capabilityIdentifier")) != H264_CAPABILITY:
        return None
    found: dict[int, int] = {}
    for parameter in capability.get("collapsing", ())[:16]:
        ident = parameter.get("parameterIdentifier")
        value = _number(parameter.get("parameterValue"))
        if isinstance(ident, tuple) and ident[0] == "standard" and value is not None:
            found[ident[1]] = value
    return Codec(
        "H264",
        profile=found.get(_PROFILE, PROFILE_BASELINE),
        level=found.get(_LEVEL, 29),  # (H.241's default: level 1.2)
        max_mbps=found.get(_MAX_MBPS),
        max_fs=found.get(_MAX_FS),
        max_bitrate=capability.get("maxBitRate"),
    )


def _oid(identifier: Any) -> tuple[int, ...]:
    if isinstance(identifier, tuple) and identifier[0] == "standard" and isinstance(identifier[1], tuple):
        return tuple(identifier[1])
    return ()


def _number(value: Any) -> int | None:
    """An unsignedMin/Max/booleanArray parameter value as a number."""
    if isinstance(value, tuple) and value[0] in ("booleanArray", "unsignedMin", "unsignedMax", "unsigned32Min", "unsigned32Max"):
        return int(value[1])
    return None


def _address(address: tuple[str, int]) -> tuple[str, Any]:
    ip = ipaddress.ip_address(address[0])
    if ip.version == 4:
        return ("unicastAddress", ("iPAddress", {"network": ip.packed, "tsapIdentifier": address[1]}))
    return ("unicastAddress", ("iP6Address", {"network": ip.packed, "tsapIdentifier": address[1]}))


def _read_address(value: Any) -> tuple[str, int] | None:
    if not isinstance(value, tuple) or value[0] != "unicastAddress":
        return None
    kind, content = value[1]
    if kind not in ("iPAddress", "iP6Address"):
        return None
    try:
        return str(ipaddress.ip_address(bytes(content["network"]))), int(content["tsapIdentifier"])
    except (KeyError, TypeError, ValueError):
        return None


def terminal_capability_set(sequence: int, ours: Capabilities) -> bytes:
    """Our TerminalCapabilitySet: each codec as a receive capability, one descriptor in which each
    kind of media is one alternative set (one of them at a time)."""
    table: list[dict[str, Any]] = []
    sets: list[list[int]] = []

    def add(capability: tuple[str, Any]) -> int:
        table.append({"capabilityTableEntryNumber": len(table) + 1, "capability": capability})
        return len(table)

    for kind in MediaKind:
        entries = []
        for codec in ours.codecs(kind):
            if kind is MediaKind.AUDIO:
                entries.append(add(("receiveAudioCapability", (_AUDIO[codec.name], max(codec.frames, 60)))))
            else:
                entries.append(add(("receiveVideoCapability", _video_capability(codec))))
        if entries:
            sets.append(entries)
    if ours.telephone_event is not None:
        sets.append([add(("receiveRTPAudioTelephonyEventCapability", {"dynamicRTPPayloadType": ours.telephone_event,
                                                                       "audioTelephoneEvent": "0-16"}))])  # fmt: skip
    inputs = [add(("receiveUserInputCapability", (name, 0))) for name in sorted(ours.user_input)]
    if inputs:
        sets.append(inputs)
    if ours.h239:
        sets.append([add(("genericControlCapability", {"capabilityIdentifier": ("standard", H239_CONTROL)}))])
    no_distribution = {"centralizedControl": False, "distributedControl": False, "centralizedAudio": False,
                       "distributedAudio": False, "centralizedVideo": False, "distributedVideo": False}  # fmt: skip
    multipoint = {"multicastCapability": False, "multiUniCastConference": False, "mediaDistributionCapability": [no_distribution]}
    packetization = [{"payloadDescriptor": ("oid", H264_SINGLE_NAL if mode == 0 else H264_NON_INTERLEAVED)}
                     for mode in sorted(ours.packetization_modes)]  # fmt: skip
    h2250: dict[str, Any] = {
        "maximumAudioDelayJitter": 250,
        "receiveMultipointCapability": multipoint,
        "transmitMultipointCapability": multipoint,
        "receiveAndTransmitMultipointCapability": multipoint,
        "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
        "rtcpVideoControlCapability": False,
        "mediaPacketizationCapability": {"h261aVideoPacketization": False, **({"rtpPayloadType": packetization} if packetization else {})},
        "logicalChannelSwitchingCapability": False,
        "t120DynamicPortCapability": False,
    }
    value = {
        "sequenceNumber": sequence,
        "protocolIdentifier": PROTOCOL_IDENTIFIER,
        "multiplexCapability": ("h2250Capability", h2250),
        "capabilityTable": table,
        "capabilityDescriptors": [{"capabilityDescriptorNumber": 0, "simultaneousCapabilities": sets}],
    }
    return message("request", "terminalCapabilitySet", value)


def read_capabilities(value: Any) -> Capabilities:
    """The far end's TerminalCapabilitySet: its receive (and receive-and-transmit) capabilities;
    transmit-only entries and what we do not know are skipped."""
    audio: list[Codec] = []
    video: list[Codec] = []
    content: list[Codec] = []
    telephone_event, user_input, h239 = None, set(), False
    other_audio: list[str] = []
    for entry in value.get("capabilityTable", ())[:MAX_TABLE]:
        capability = entry.get("capability")
        if not isinstance(capability, tuple):
            continue
        kind, content_value = capability
        if kind in ("receiveAudioCapability", "receiveAndTransmitAudioCapability"):
            name = _AUDIO_NAMES.get(content_value[0])
            if name is not None:
                audio.append(Codec(name, frames=int(content_value[1])))
            elif len(other_audio) < 8:
                other_audio.append(_audio_name(content_value))
        elif kind in ("receiveVideoCapability", "receiveAndTransmitVideoCapability"):
            codec = _read_video(content_value)
            if codec is not None:
                (content if codec.role == ROLE_PRESENTATION else video).append(codec)
        elif kind == "receiveRTPAudioTelephonyEventCapability":
            telephone_event = content_value.get("dynamicRTPPayloadType")
        elif kind in ("receiveUserInputCapability", "receiveAndTransmitUserInputCapability"):
            user_input.add(content_value[0])
        elif kind == "genericControlCapability" and _oid(content_value.get("capabilityIdentifier")) == H239_CONTROL:
            h239 = True
    modes: set[int] = set()
    multiplex = value.get("multiplexCapability")
    if isinstance(multiplex, tuple) and multiplex[0] == "h2250Capability":
        for payload in multiplex[1].get("mediaPacketizationCapability", {}).get("rtpPayloadType", ())[:8]:
            descriptor = payload.get("payloadDescriptor", ("", ()))
            oid = tuple(descriptor[1]) if descriptor[0] == "oid" else ()
            if oid[:7] == H264_SINGLE_NAL[:7]:  # (Polycom writes 0.0.8.241.0.0.0 for mode 0)
                modes.add(oid[7] if len(oid) > 7 else 0)
    return Capabilities(tuple(audio), tuple(video), tuple(content), telephone_event, frozenset(user_input), h239,
                        frozenset(modes or {0}), tuple(dict.fromkeys(other_audio)))  # fmt: skip


_GENERIC_AUDIO = {(0, 0, 7, 7221, 1, 0): "G.722.1", (0, 0, 7, 7221, 1, 1, 0): "G.722.1C (Siren 14)", (0, 0, 7, 7221, 1, 1): "G.722.1C (Siren 14)",
                  (0, 0, 8, 722, 2, 1): "G.722.2 (AMR-WB)"}  # fmt: skip


def _audio_name(value: Any) -> str:
    """What an audio capability we do not speak is, for the log: its H.245 name, or the codec a
    generic capability's identifier names."""
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        if value[0] == "genericAudioCapability" and isinstance(value[1], dict):
            oid = _oid(value[1].get("capabilityIdentifier"))
            return _GENERIC_AUDIO.get(oid, "generic " + ".".join(map(str, oid)))
        return value[0][:40]
    return "?"


# -- logical channels -----------------------------------------------------------------------------


def _channel_parameters(channel: Channel, *, with_media: bool) -> dict[str, Any]:
    h2250: dict[str, Any] = {"sessionID": channel.session}
    if with_media and channel.media is not None:
        h2250["mediaChannel"] = _address(channel.media)
    if not channel.reverse:
        h2250["mediaGuaranteedDelivery"] = False
    if channel.control is not None:
        h2250["mediaControlChannel"] = _address(channel.control)
    if channel.payload_type is not None and channel.payload_type >= 96:
        h2250["dynamicRTPPayloadType"] = channel.payload_type
    if channel.codec.name == "H264":
        oid = H264_NON_INTERLEAVED if channel.codec.packetization_mode == 1 else H264_SINGLE_NAL
        packetization: dict[str, Any] = {"payloadDescriptor": ("oid", oid)}
        if channel.payload_type is not None:
            packetization["payloadType"] = channel.payload_type
        h2250["mediaPacketization"] = ("rtpPayloadType", packetization)
    return h2250


def open_logical_channel_value(channel: Channel) -> dict[str, Any]:
    """The OpenLogicalChannel of `channel`: forward parameters when the opener transmits; nullData
    forward and reverse parameters (with where it receives) for a fastStart receive proposal."""
    if channel.reverse:
        return {
            "forwardLogicalChannelNumber": channel.number,
            "forwardLogicalChannelParameters": {"dataType": ("nullData", 0), "multiplexParameters": ("none", 0)},
            "reverseLogicalChannelParameters": {
                "dataType": data_type(channel.codec),
                "multiplexParameters": ("h2250LogicalChannelParameters", _channel_parameters(channel, with_media=True)),
            },
        }
    return {
        "forwardLogicalChannelNumber": channel.number,
        "forwardLogicalChannelParameters": {
            "dataType": data_type(channel.codec),
            "multiplexParameters": ("h2250LogicalChannelParameters", _channel_parameters(channel, with_media=True)),
        },
    }


def open_logical_channel(channel: Channel) -> bytes:
    """An OpenLogicalChannel request (H.245 proper)."""
    return message("request", "openLogicalChannel", open_logical_channel_value(channel))


def fast_start_element(channel: Channel) -> bytes:
    """One fastStart element: an OpenLogicalChannel on its own (not inside a message)."""
    try:
        return encode(_OPEN_LOGICAL_CHANNEL, open_logical_channel_value(channel))
    except PerError as exc:
        raise H245Error(str(exc)) from None


def read_fast_start_element(data: bytes) -> Channel:
    try:
        value = decode(_OPEN_LOGICAL_CHANNEL, data)
    except PerError as exc:
        raise H245Error(str(exc)) from None
    return read_channel(value)


def read_channel(value: Any) -> Channel:
    """The Channel of an OpenLogicalChannel value; H245Error for a data type we do not take
    (H245Error's text names it) or a channel without H.225.0 parameters."""
    number = value["forwardLogicalChannelNumber"]
    forward = value["forwardLogicalChannelParameters"]
    reverse = value.get("reverseLogicalChannelParameters")
    if forward["dataType"][0] == "nullData" and reverse is not None:
        parameters, reversed_ = reverse, True
    else:
        parameters, reversed_ = forward, False
    codec = _codec_of(parameters["dataType"])
    multiplex = parameters.get("multiplexParameters")
    if not isinstance(multiplex, tuple) or multiplex[0] != "h2250LogicalChannelParameters":
        raise H245Error("a logical channel without H.225.0 parameters")
    h2250 = multiplex[1]
    packetization = h2250.get("mediaPacketization")
    if codec.name == "H264" and isinstance(packetization, tuple) and packetization[0] == "rtpPayloadType":
        descriptor = packetization[1].get("payloadDescriptor", ("", ()))
        oid = tuple(descriptor[1]) if descriptor[0] == "oid" else ()
        codec = replace(codec, packetization_mode=oid[7] if len(oid) > 7 and oid[:7] == H264_SINGLE_NAL[:7] else 0)
    return Channel(
        number=number,
        session=h2250.get("sessionID", 0),
        codec=codec,
        reverse=reversed_,
        media=_read_address(h2250.get("mediaChannel")),
        control=_read_address(h2250.get("mediaControlChannel")),
        payload_type=h2250.get("dynamicRTPPayloadType"),
    )


def _codec_of(value: Any) -> Codec:
    kind, content = value
    if kind == "audioData" and isinstance(content, tuple) and content[0] in _AUDIO_NAMES:
        return Codec(_AUDIO_NAMES[content[0]], frames=int(content[1]))
    if kind == "videoData" and isinstance(content, tuple):
        codec = _read_video(content)
        if codec is not None:
            return codec
        raise H245Error(f"video data type {content[0]} not supported")
    name = content[0] if isinstance(content, tuple) else kind
    raise H245Error(f"data type {kind}/{name} not supported")


def channel_ack(channel: Channel, media: tuple[str, int], control: tuple[str, int]) -> bytes:
    """OpenLogicalChannelAck of the far end's channel: where we receive its RTP and our RTCP."""
    h2250: dict[str, Any] = {"sessionID": channel.session, "mediaChannel": _address(media), "mediaControlChannel": _address(control)}
    if channel.payload_type is not None and channel.payload_type >= 96:
        h2250["dynamicRTPPayloadType"] = channel.payload_type
    value = {
        "forwardLogicalChannelNumber": channel.number,
        "forwardMultiplexAckParameters": ("h2250LogicalChannelAckParameters", h2250),
    }
    return message("response", "openLogicalChannelAck", value)


@dataclass(frozen=True)
class ChannelAck:
    number: int
    session: int | None
    media: tuple[str, int] | None
    control: tuple[str, int] | None


def read_channel_ack(value: Any) -> ChannelAck:
    parameters = value.get("forwardMultiplexAckParameters")
    h2250 = parameters[1] if isinstance(parameters, tuple) else {}
    return ChannelAck(
        value["forwardLogicalChannelNumber"],
        h2250.get("sessionID"),
        _read_address(h2250.get("mediaChannel")),
        _read_address(h2250.get("mediaControlChannel")),
    )
