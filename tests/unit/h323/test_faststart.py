"""fastStart (gateway/h323/faststart.py): the caller's proposals, the callee's answer (one per
session and direction, the same audio codec both ways, its own channel numbers for what it sends),
and the caller's reading of that answer, each proposal and answer passed through PER as an
OpenLogicalChannel the way the Setup and Connect carry them."""

from __future__ import annotations

from gateway.h323 import h245
from gateway.h323.faststart import Transmit, accepted, answer, proposals
from gateway.h323.h245 import Capabilities, Channel, Codec, MediaKind

CALLER = Capabilities(audio=(h245.G722, h245.G711U), video=(Codec("H264", level=h245.LEVEL_3_1),))
CALLEE = Capabilities(audio=(h245.G711A, h245.G711U, h245.G722), video=(Codec("H264", level=h245.LEVEL_4),))
CALLER_AT = {MediaKind.AUDIO: (("192.0.2.1", 5000), ("192.0.2.1", 5001)), MediaKind.VIDEO: (("192.0.2.1", 5002), ("192.0.2.1", 5003))}
CALLEE_AT = {MediaKind.AUDIO: (("192.0.2.9", 7000), ("192.0.2.9", 7001)), MediaKind.VIDEO: (("192.0.2.9", 7002), ("192.0.2.9", 7003))}


def on_the_wire(channels: list[Channel]) -> list[Channel]:
    return [h245.read_fast_start_element(h245.fast_start_element(c)) for c in channels]


def test_the_caller_proposes_each_codec_both_ways() -> None:
    offered = proposals(CALLER, CALLER_AT, {"H264": 97})
    assert [(c.number, c.codec.name, c.reverse) for c in offered] == [
        (1, "G722", False), (2, "G722", True), (3, "PCMU", False), (4, "PCMU", True), (5, "H264", False), (6, "H264", True)]  # fmt: skip
    assert offered[1].media == ("192.0.2.1", 5000) and offered[0].media is None and offered[0].control == ("192.0.2.1", 5001)
    assert offered[4].payload_type == 97 and on_the_wire(offered) == offered


def test_the_callee_takes_one_per_direction_with_the_same_codec_both_ways() -> None:
    offered = on_the_wire(proposals(CALLER, CALLER_AT, {"H264": 97}))
    agreement = answer(offered, CALLEE, CALLEE_AT)
    # The caller's order: G.722 both ways (we take it), H.264 both ways.
    assert agreement.receive[MediaKind.AUDIO].codec.name == "G722" and agreement.receive[MediaKind.AUDIO].number == 1
    audio = agreement.transmit[MediaKind.AUDIO]
    assert (audio.channel.codec.name, audio.media, audio.control) == ("G722", ("192.0.2.1", 5000), ("192.0.2.1", 5001))
    assert agreement.transmit[MediaKind.VIDEO].media == ("192.0.2.1", 5002)
    answers = on_the_wire(agreement.answers)
    numbers = [c.number for c in answers]
    assert len(set(numbers)) == len(numbers) == 4
    forward = [c for c in answers if not c.reverse]
    assert [(c.number, c.media) for c in forward] == [(1, ("192.0.2.9", 7000)), (5, ("192.0.2.9", 7002))]  # (their numbers, our RTP)
    reverse = [c for c in answers if c.reverse]
    assert all(c.media is None and c.number not in (1, 3, 5) for c in reverse)  # (our own numbers, no address: we send)


def test_the_callee_may_prefer_its_own_order() -> None:
    agreement = answer(on_the_wire(proposals(CALLER, CALLER_AT, {})), CALLEE, CALLEE_AT, prefer_ours=True)
    assert agreement.receive[MediaKind.AUDIO].codec.name == agreement.transmit[MediaKind.AUDIO].channel.codec.name == "PCMU"


def test_the_caller_reads_the_answer() -> None:
    offered = proposals(CALLER, CALLER_AT, {"H264": 97})
    agreement = answer(on_the_wire(offered), CALLEE, CALLEE_AT)
    mine = accepted(offered, on_the_wire(agreement.answers))
    audio = mine.transmit[MediaKind.AUDIO]
    assert isinstance(audio, Transmit) and (audio.channel.number, audio.media, audio.control) == (1, ("192.0.2.9", 7000), ("192.0.2.9", 7001))
    assert mine.receive[MediaKind.AUDIO].control == ("192.0.2.9", 7001)  # (the callee's RTCP)
    assert mine.receive[MediaKind.VIDEO].codec.name == "H264" and mine.transmit[MediaKind.VIDEO].media == ("192.0.2.9", 7002)


def test_nothing_is_taken_that_we_cannot_handle() -> None:
    offered = [Channel(1, 1, Codec("PCMU"), control=("192.0.2.1", 5001))]  # transmit only, no receive proposal
    agreement = answer(offered, Capabilities(audio=(h245.G722,)), CALLEE_AT)
    assert not agreement.answers and not agreement.receive and not agreement.transmit
    agreement = answer(offered, CALLEE, CALLEE_AT)
    assert MediaKind.AUDIO in agreement.receive and MediaKind.AUDIO not in agreement.transmit
