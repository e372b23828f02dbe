"""The backplane's control link: the two ends prove the cluster secret to each other, and nothing
forged, altered, replayed or oversized reaches the meeting."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cluster.wire import MAX_FRAME_BYTES, ControlLink, LinkState

SECRET = b"s" * 40


def pair(a_secret: bytes = SECRET, b_secret: bytes = SECRET) -> tuple[ControlLink, ControlLink]:
    a = ControlLink(a_secret, "node-a", initiator=True)
    b = ControlLink(b_secret, "node-b", initiator=False)
    for _ in range(3):
        b.receive(a.data_to_send())
        a.receive(b.data_to_send())
    return a, b


def test_both_ends_open_and_messages_pass_both_ways() -> None:
    a, b = pair()
    assert a.state is b.state is LinkState.OPEN
    assert (a.peer, b.peer) == ("node-b", "node-a")
    a.send({"type": "x", "n": 1})
    a.send({"type": "x", "n": 2})
    b.receive(a.data_to_send())
    assert [b.next_message(), b.next_message(), b.next_message()] == [{"type": "x", "n": 1}, {"type": "x", "n": 2}, None]
    b.send({"type": "y"})
    a.receive(b.data_to_send())
    assert a.next_message() == {"type": "y"}
    # Both derive the same media keys, crosswise, and the same stream ids
    assert a.media_keys() == tuple(reversed(b.media_keys()))
    assert a.media_ssrc("council", "node-a") == b.media_ssrc("council", "node-a")
    assert a.media_ssrc("council", "node-a") != a.media_ssrc("council", "node-b")


def test_a_wrong_secret_opens_nothing_on_either_side() -> None:
    a, b = pair(b_secret=b"t" * 40)
    assert a.state is LinkState.FAILED and a.failure == "no proof of the cluster secret"
    assert b.state is not LinkState.OPEN


def test_a_responder_without_the_secret_cannot_learn_a_proof() -> None:
    """An attacker answering as responder gets no initiator proof to replay: the initiator stops."""
    a = ControlLink(SECRET, "node-a", initiator=True)
    attacker = ControlLink(b"x" * 40, "node-b", initiator=False)
    attacker.receive(a.data_to_send())
    a.receive(attacker.data_to_send())
    assert a.state is LinkState.FAILED
    assert a.data_to_send() == b""  # (it sent no proof of its own)


def _frames(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    while data:
        (n,) = struct.unpack_from("!I", data)
        frame = data[4 : 4 + n]
        out.append((frame[:32], frame[32:]))
        data = data[4 + n :]
    return out


def _pack(tag: bytes, body: bytes) -> bytes:
    return struct.pack("!I", len(tag) + len(body)) + tag + body


def test_altered_replayed_and_untagged_frames_end_the_link() -> None:
    for attack in ("altered", "replayed", "untagged"):
        a, b = pair()
        a.send({"type": "command", "action": "host_mute"})
        [(tag, body)] = _frames(a.data_to_send())
        if attack == "altered":
            data = _pack(tag, body.replace(b"host_mute", b"remove___"))
        elif attack == "replayed":
            data = _pack(tag, body) + _pack(tag, body)
        else:
            data = _pack(bytes(32), body)
        b.receive(data)
        if attack == "replayed":
            assert b.next_message() == {"type": "command", "action": "host_mute"}  # (the first one)
        assert b.state is LinkState.FAILED, attack
        assert b.failure == "a frame with a wrong tag"
        assert b.next_message() is None


def test_oversized_and_broken_frames_are_refused_at_once() -> None:
    b = ControlLink(SECRET, "node-b", initiator=False)
    b.receive(struct.pack("!I", MAX_FRAME_BYTES + 1))
    assert b.state is LinkState.FAILED and b.failure == f"a frame of {MAX_FRAME_BYTES + 1} bytes"
    b = ControlLink(SECRET, "node-b", initiator=False)
    b.receive(_pack(bytes(32), b"\xff\xfe not json"))
    assert b.failure == "a frame that is not JSON"
    b = ControlLink(SECRET, "node-b", initiator=False)
    b.receive(_pack(bytes(32), json.dumps({"hello": 1, "node": "bad name!", "nonce": "0" * 32}).encode()))
    assert b.failure == "a node name that is not one"
    b = ControlLink(SECRET, "node-b", initiator=False)
    b.receive(_pack(bytes(32), json.dumps({"hello": 1, "node": "node-b", "nonce": "0" * 32}).encode()))
    assert b.failure == "a node of our own name"


def test_a_link_before_its_handshake_sends_nothing() -> None:
    b = ControlLink(SECRET, "node-b", initiator=False)
    with pytest.raises(RuntimeError):
        b.send({"type": "x"})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_leave_the_link_failed_or_waiting_never_raise(data: bytes) -> None:
    b = ControlLink(SECRET, "node-b", initiator=False)
    b.receive(data)
    assert b.state in (LinkState.HELLO, LinkState.FAILED)
    assert b.next_message() is None
