"""Every H.245 PDU our control writes (gateway/h323/h245.py, control.py), and fastStart proposals
and answers, as Wireshark reads them (tshark, an independent PER decoder): tunnelled in H.225.0
messages on TCP 1720, each PDU of the kind we meant, H.264 and H.239 capabilities with the
parameters we meant, and nothing malformed or warned about."""

from __future__ import annotations

from pathlib import Path

from gateway.h323 import h245
from gateway.h323.call import CallChannel
from gateway.h323.h225 import Alias, Signal
from gateway.h323.h245 import Capabilities, Channel, Codec
from tests.support.pcap import tcp_pcap, tshark_packets

OURS = Capabilities(
    audio=(h245.G722, h245.G711A, h245.G711U), video=(Codec("H264", level=h245.LEVEL_4, max_bitrate=40000),),
    content=(Codec("H264", level=h245.LEVEL_4, role=h245.ROLE_PRESENTATION, max_bitrate=20000),), telephone_event=101,
    user_input=frozenset({"basicString", "dtmf"}), h239=True, packetization_modes=frozenset({0, 1}),
)  # fmt: skip
CHANNELS = [
    Channel(1, 1, h245.G711A, control=("192.0.2.1", 5001)),
    Channel(2, 2, Codec("H264", level=h245.LEVEL_4), control=("192.0.2.1", 5003), payload_type=97),
    Channel(3, 1, h245.G711U, reverse=True, media=("192.0.2.1", 5000), control=("192.0.2.1", 5001)),
    Channel(4, 32, Codec("H264", role=h245.ROLE_PRESENTATION), control=("192.0.2.1", 5005), payload_type=98),
]
PDUS = [
    h245.terminal_capability_set(1, OURS), *(h245.open_logical_channel(c) for c in CHANNELS),
    h245.channel_ack(CHANNELS[1], ("192.0.2.2", 6000), ("192.0.2.2", 6001)), h245.master_slave_determination(123),
    h245.master_slave_ack(True), h245.master_slave_reject(), h245.terminal_capability_set_ack(1),
    h245.terminal_capability_set_reject(1), h245.round_trip_delay_request(3), h245.round_trip_delay_response(3),
    h245.end_session(), h245.video_fast_update(2), h245.flow_control(2, 512_000), h245.close_logical_channel(2),
    h245.close_logical_channel_ack(2), h245.open_logical_channel_reject(2), h245.user_input("5"),
    h245.generic_message("request", 3, [(44, ("unsignedMin", 5)), (42, ("unsignedMin", 4)), (43, ("unsignedMin", 77))]),
    h245.generic_message("response", 4, [(126, ("logical", 0)), (44, ("unsignedMin", 5)), (42, ("unsignedMin", 4))]),
]  # fmt: skip
# tshark's numbering of the message classes: request 0, response 1, command 2, indication 3
KINDS = {"request": "0", "response": "1", "command": "2", "indication": "3"}


def test_tshark_reads_every_h245_pdu_and_fast_start_element(tmp_path: Path) -> None:
    caller, callee = CallChannel(), CallChannel()
    setup = Signal("setup", destination_aliases=(Alias("dialledDigits", "4711"),), fast_start=tuple(h245.fast_start_element(c) for c in CHANNELS))
    caller.setup(setup)
    wire = [(True, caller.data_to_send())]
    callee.receive_data(wire[0][1])
    callee.connect(fast_start=(h245.fast_start_element(CHANNELS[0]),))
    for pdu in PDUS:
        callee.send_h245([pdu])
    wire.append((False, callee.data_to_send()))

    fields = ["h245.pdu_type", "h225.FastStart_item", "h264.par_profile", "h245.unsignedMin", "h225.h323_message_body",
              "h245.subMessageIdentifier.standard"]  # fmt: skip
    packets = tshark_packets(tcp_pcap(tmp_path / "h245.pcap", wire, 1720), "h225", fields)
    assert not [p for p in packets if p.malformed or p.problems], [(p.frame, p.problems) for p in packets]
    kinds = [value for p in packets for value in p.fields.get("h245.pdu_type", [])]
    assert kinds == [KINDS[h245.read(pdu)[0]] for pdu in PDUS]
    setup_packet = packets[0]
    assert setup_packet.first("h225.h323_message_body") == "0" and len(setup_packet.fields["h225.FastStart_item"]) == 4
    assert setup_packet.fields["h264.par_profile"] == ["0x40", "0x40"]  # (the two H.264 channels: baseline)
    assert "85" in setup_packet.fields["h245.unsignedMin"]  # (level 4)
    assert [v for p in packets for v in p.fields.get("h245.subMessageIdentifier.standard", [])] == ["3", "4"]  # (H.239's token messages)
