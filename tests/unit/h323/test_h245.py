"""H.245 messages (gateway/h323/h245.py): every PDU the control writes read back, our capability set
read back as we meant it, a room system's capability set written in pycrate's own terms (H.263,
G.722.1, H.264 with custom maximums, H.239 presentation, Polycom's short packetization OID) read
right, logical channels both directions and their acks, and what cannot be read refused with
H245Error only."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.h323 import h245, per
from gateway.h323.h245 import Capabilities, Channel, Codec, H245Error, MediaKind

H264 = Codec("H264", level=h245.LEVEL_4, max_bitrate=40000)
CONTENT = Codec("H264", level=h245.LEVEL_4, role=h245.ROLE_PRESENTATION, max_bitrate=20000)
OURS = Capabilities(
    audio=(h245.G722, h245.G711A, h245.G711U), video=(H264,), content=(CONTENT,), telephone_event=101,
    user_input=frozenset({"basicString", "dtmf"}), h239=True, packetization_modes=frozenset({0, 1}),
)  # fmt: skip


@pytest.mark.parametrize(
    ("pdu", "kind", "name"),
    [
        (h245.master_slave_determination(123), "request", "masterSlaveDetermination"),
        (h245.master_slave_ack(True), "response", "masterSlaveDeterminationAck"),
        (h245.master_slave_reject(), "response", "masterSlaveDeterminationReject"),
        (h245.terminal_capability_set_ack(7), "response", "terminalCapabilitySetAck"),
        (h245.terminal_capability_set_reject(7), "response", "terminalCapabilitySetReject"),
        (h245.round_trip_delay_request(3), "request", "roundTripDelayRequest"),
        (h245.round_trip_delay_response(3), "response", "roundTripDelayResponse"),
        (h245.end_session(), "command", "endSessionCommand"),
        (h245.video_fast_update(2), "command", "miscellaneousCommand"),
        (h245.flow_control(2, 512_000), "command", "flowControlCommand"),
        (h245.close_logical_channel(2), "request", "closeLogicalChannel"),
        (h245.close_logical_channel_ack(2), "response", "closeLogicalChannelAck"),
        (h245.open_logical_channel_reject(2), "response", "openLogicalChannelReject"),
        (h245.user_input("5"), "indication", "userInput"),
        (h245.generic_message("request", 3, [(44, ("unsignedMin", 5)), (42, ("unsignedMin", 4))]), "request", "genericRequest"),
    ],
)
def test_every_pdu_reads_back_as_what_it_is(pdu: bytes, kind: str, name: str) -> None:
    assert h245.read(pdu)[:2] == (kind, name)


def test_our_capability_set_reads_back_as_we_meant_it() -> None:
    kind, name, value = h245.read(h245.terminal_capability_set(1, OURS))
    assert (kind, name, value["sequenceNumber"]) == ("request", "terminalCapabilitySet", 1)
    theirs = h245.read_capabilities(value)
    assert [c.name for c in theirs.audio] == ["G722", "PCMA", "PCMU"] and all(c.frames >= 60 for c in theirs.audio)
    assert theirs.video == (H264,) and theirs.content == (CONTENT,)
    assert (theirs.telephone_event, theirs.user_input, theirs.h239, theirs.packetization_modes) == (
        101, frozenset({"basicString", "dtmf"}), True, frozenset({0, 1}))  # fmt: skip
    (descriptor,) = value["capabilityDescriptors"]
    assert [len(s) for s in descriptor["simultaneousCapabilities"]] == [3, 1, 1, 1, 2, 1]  # one alternative set per kind


def _generic(identifier: tuple[int, ...], *parameters: tuple[int, tuple[str, int]], bitrate: int | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"capabilityIdentifier": ("standard", identifier),
                             "collapsing": [{"parameterIdentifier": ("standard", i), "parameterValue": v} for i, v in parameters]}  # fmt: skip
    if bitrate is not None:
        value["maxBitRate"] = bitrate
    return value


def test_a_room_systems_capability_set_is_read_right() -> None:
    """Written with pycrate alone, the way a Polycom of the 2010s fills it in."""
    h264 = _generic(h245.H264_CAPABILITY, (41, ("booleanArray", 64)), (42, ("unsignedMin", 71)), (3, ("unsignedMin", 216)),
                    (4, ("unsignedMin", 14)), bitrate=19200)  # fmt: skip
    presentation = ("extendedVideoCapability", {
        "videoCapability": [("genericVideoCapability", h264)],
        "videoCapabilityExtension": [_generic(h245.H239_EXTENDED_VIDEO, (1, ("booleanArray", 1)))]})  # fmt: skip
    table = [
        ("receiveAudioCapability", ("genericAudioCapability", _generic((0, 0, 7, 7221, 1, 0), (1, ("unsignedMin", 240))))),
        ("receiveAudioCapability", ("g722-64k", 60)),
        ("receiveAndTransmitAudioCapability", ("g711Ulaw64k", 30)),
        ("transmitAudioCapability", ("g711Alaw64k", 30)),  # (what it sends: not a receive capability)
        ("receiveVideoCapability", ("h263VideoCapability", {"cif4MPI": 1, "maxBitRate": 19200, "unrestrictedVector": False,
            "arithmeticCoding": False, "advancedPrediction": False, "pbFrames": False, "temporalSpatialTradeOffCapability": False,
            "errorCompensation": False})),  # fmt: skip
        ("receiveVideoCapability", ("genericVideoCapability", h264)),
        ("receiveVideoCapability", presentation),
        ("receiveRTPAudioTelephonyEventCapability", {"dynamicRTPPayloadType": 100, "audioTelephoneEvent": "0-15"}),
        ("genericControlCapability", {"capabilityIdentifier": ("standard", h245.H239_CONTROL)}),
    ]
    value = {
        "sequenceNumber": 1, "protocolIdentifier": (0, 0, 8, 245, 0, 7),
        "multiplexCapability": ("h2250Capability", {
            "maximumAudioDelayJitter": 60,
            **{k: {"multicastCapability": False, "multiUniCastConference": False, "mediaDistributionCapability": [
                {"centralizedControl": False, "distributedControl": False, "centralizedAudio": False, "distributedAudio": False,
                 "centralizedVideo": False, "distributedVideo": False}]}
               for k in ("receiveMultipointCapability", "transmitMultipointCapability", "receiveAndTransmitMultipointCapability")},
            "mcCapability": {"centralizedConferenceMC": False, "decentralizedConferenceMC": False},
            "rtcpVideoControlCapability": False,
            "mediaPacketizationCapability": {"h261aVideoPacketization": False,
                                             "rtpPayloadType": [{"payloadDescriptor": ("oid", (0, 0, 8, 241, 0, 0, 0))}]},
            "logicalChannelSwitchingCapability": False, "t120DynamicPortCapability": False}),
        "capabilityTable": [{"capabilityTableEntryNumber": i + 1, "capability": c} for i, c in enumerate(table)],
    }  # fmt: skip
    pdu = per.encode(h245._MESSAGE, ("request", ("terminalCapabilitySet", value)))
    theirs = h245.read_capabilities(h245.read(pdu)[2])
    assert [(c.name, c.frames) for c in theirs.audio] == [("G722", 60), ("PCMU", 30)]
    assert [c.name for c in theirs.video] == ["H263", "H264"]
    assert theirs.video[1] == Codec("H264", profile=64, level=71, max_mbps=216, max_fs=14, max_bitrate=19200)
    assert theirs.content == (Codec("H264", profile=64, level=71, max_mbps=216, max_fs=14, max_bitrate=19200, role=1),)
    assert (theirs.telephone_event, theirs.h239, theirs.packetization_modes) == (100, True, frozenset({0}))


@pytest.mark.parametrize(
    "channel",
    [
        Channel(1, 1, h245.G711A, control=("192.0.2.1", 5001)),
        Channel(2, 2, Codec("H264", level=h245.LEVEL_4), control=("192.0.2.1", 5003), payload_type=97),
        Channel(3, 2, Codec("H264", packetization_mode=0), control=("192.0.2.1", 5003), payload_type=97),
        Channel(4, 1, h245.G711U, reverse=True, media=("192.0.2.1", 5000), control=("192.0.2.1", 5001)),
        Channel(5, 32, CONTENT, control=("2001:db8::1", 5005), payload_type=98),
        Channel(6, 1, h245.G722, media=("192.0.2.1", 5000), control=("192.0.2.1", 5001)),  # (a fastStart answer)
    ],
)
def test_logical_channels_read_back_as_requests_and_as_fast_start_elements(channel: Channel) -> None:
    kind, name, value = h245.read(h245.open_logical_channel(channel))
    assert (kind, name) == ("request", "openLogicalChannel")
    assert h245.read_channel(value) == channel
    assert h245.read_fast_start_element(h245.fast_start_element(channel)) == channel


def test_a_channel_of_a_codec_we_do_not_take_is_refused_naming_it() -> None:
    value = h245.open_logical_channel_value(Channel(1, 1, h245.G711A, control=("192.0.2.1", 5001)))
    value["forwardLogicalChannelParameters"]["dataType"] = ("audioData", ("g728", 0))
    with pytest.raises(H245Error, match="g728"):
        h245.read_channel(value)


def test_a_channel_ack_says_where_media_goes() -> None:
    pdu = h245.channel_ack(Channel(2, 2, H264, payload_type=97), ("192.0.2.2", 6000), ("192.0.2.2", 6001))
    ack = h245.read_channel_ack(h245.read(pdu)[2])
    assert ack == h245.ChannelAck(2, 2, ("192.0.2.2", 6000), ("192.0.2.2", 6001))


def test_user_input_as_text_and_as_a_signal() -> None:
    assert h245.read_user_input(h245.read(h245.user_input("1234#"))[2]) == "1234#"
    signal = per.encode(h245._MESSAGE, ("indication", ("userInput", ("signal", {"signalType": "7", "duration": 100}))))
    assert h245.read_user_input(h245.read(signal)[2]) == "7"


def test_an_h239_message_reads_back_with_its_parameters() -> None:
    pdu = h245.generic_message("response", 4, [(126, ("logical", 0)), (42, ("unsignedMin", 4))])
    oid, sub, parameters = h245.read_generic(h245.read(pdu)[2])
    assert (oid, sub, parameters) == (h245.H239_MESSAGE, 4, {126: ("logical", 0), 42: ("unsignedMin", 4)})


def test_codecs_know_their_kind() -> None:
    assert [c.kind for c in (h245.G711A, H264, CONTENT)] == [MediaKind.AUDIO, MediaKind.VIDEO, MediaKind.CONTENT]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_octets_are_read_or_refused_with_h245error(data: bytes) -> None:
    try:
        h245.read(data)
    except H245Error:
        pass


def test_audio_we_do_not_speak_is_named_for_the_log() -> None:
    """G.722.1 (a generic capability), Siren 14 and G.723.1 in a capability set: no codec of ours,
    but named in other_audio, so that the log says why a room system offering only them is silent."""
    tcs = {"sequenceNumber": 1, "capabilityTable": [
        {"capabilityTableEntryNumber": 1, "capability": ("receiveAudioCapability", ("genericAudioCapability", {
            "capabilityIdentifier": ("standard", (0, 0, 7, 7221, 1, 0)), "maxBitRate": 320}))},
        {"capabilityTableEntryNumber": 2, "capability": ("receiveAudioCapability", ("genericAudioCapability", {
            "capabilityIdentifier": ("standard", (0, 0, 7, 7221, 1, 1, 0)), "maxBitRate": 480}))},
        {"capabilityTableEntryNumber": 3, "capability": ("receiveAudioCapability", ("g7231", {"maxAl-sduAudioFrames": 1, "silenceSuppression": False}))},
        {"capabilityTableEntryNumber": 4, "capability": ("receiveAudioCapability", ("g711Alaw64k", 20))},
    ]}  # fmt: skip
    read = h245.read_capabilities(tcs)
    assert [c.name for c in read.audio] == ["PCMA"]
    assert read.other_audio == ("G.722.1", "G.722.1C (Siren 14)", "g7231")
