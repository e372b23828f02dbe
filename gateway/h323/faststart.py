"""fastStart (H.323 8.1.7): the media of a call agreed inside the Setup and its first answer, before
H.245 runs. Each proposal is an OpenLogicalChannel (gateway/h323/h245.py's Channel):

- the caller's transmit proposals carry forward parameters (codec, its RTCP address);
- its receive proposals carry nullData forward and reverse parameters (codec, where it receives
  RTP, its RTCP address). A proposal without reverse parameters is the caller's transmit channel.

The callee answers with the proposals it takes, one per session and direction: a transmit proposal
comes back under its number with the callee's RTP and RTCP addresses (the caller sends there); a
receive proposal comes back under a number of the callee's own with its RTCP address (the callee
sends to the caller's address). The caller matches answers by direction and session.

A leg sends and receives one audio codec (the RTP engine's model), so the callee picks the same
codec both ways where the caller proposes it both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gateway.h323.h245 import Capabilities, Channel, Codec, MediaKind, Session

Address = tuple[str, int]
_SESSIONS = {MediaKind.AUDIO: Session.AUDIO, MediaKind.VIDEO: Session.VIDEO}


@dataclass(frozen=True)
class Transmit:
    """A channel we send on: our channel, where to send RTP and RTCP."""

    channel: Channel
    media: Address
    control: Address | None


@dataclass
class Agreement:
    """What fastStart agreed, per kind of media: what we send and what we receive."""

    transmit: dict[MediaKind, Transmit] = field(default_factory=dict)
    receive: dict[MediaKind, Channel] = field(default_factory=dict)  # the far end's channels (their codec, RTCP)
    answers: list[Channel] = field(default_factory=list)  # (the callee's fastStart answer)


def proposals(ours: Capabilities, addresses: dict[MediaKind, tuple[Address, Address]], payload_types: dict[str, int]) -> list[Channel]:
    """The caller's proposals: per kind with an address, each codec to send and to receive."""
    out: list[Channel] = []
    for kind, (rtp, rtcp) in addresses.items():
        if kind not in _SESSIONS:
            continue  # (content is opened by H.245 once H.239 is agreed)
        for codec in ours.codecs(kind):
            pt = payload_types.get(codec.name)
            out.append(Channel(len(out) + 1, _SESSIONS[kind], codec, control=rtcp, payload_type=pt))
            out.append(Channel(len(out) + 1, _SESSIONS[kind], codec, reverse=True, media=rtp, control=rtcp, payload_type=pt))
    return out


def _takes(ours: Iterable[Codec], proposed: Codec) -> bool:
    return any(codec.name == proposed.name for codec in ours)


def _ranked(channels: list[Channel], ranking: list[str] | None) -> list[Channel]:
    """`channels` in our order of preference (`ranking`), or as the caller proposed them."""
    return sorted(channels, key=lambda channel: ranking.index(channel.codec.name)) if ranking else channels


def answer(
    offered: list[Channel],
    ours: Capabilities,
    addresses: dict[MediaKind, tuple[Address, Address]],
    *,
    prefer_ours: bool = False,
    first_number: int = 1,
) -> Agreement:
    """The callee's choice among the caller's proposals, for the kinds we have addresses for."""
    agreement = Agreement()
    number = first_number
    for kind, (rtp, rtcp) in addresses.items():
        session = _SESSIONS.get(kind)
        if session is None:
            continue
        ranking = [c.name for c in ours.codecs(kind)] if prefer_ours else None
        taken = [c for c in offered if c.session == session and _takes(ours.codecs(kind), c.codec)]
        sends = _ranked([c for c in taken if not c.reverse], ranking)
        receives = _ranked([c for c in taken if c.reverse and c.media is not None], ranking)
        chosen = sends[0].codec.name if sends else receives[0].codec.name if receives else None
        if sends:  # the caller sends: we receive (on our RTP address)
            theirs = sends[0]
            agreement.receive[kind] = theirs
            agreement.answers.append(replace(theirs, media=rtp, control=rtcp))
        same = [c for c in receives if c.codec.name == chosen] or receives
        if same:  # the caller receives: we send to its address
            theirs = same[0]
            while any(c.number == number for c in offered if not c.reverse):
                number += 1
            mine = replace(theirs, number=number, media=None, control=rtcp)
            number += 1
            assert theirs.media is not None
            agreement.transmit[kind] = Transmit(replace(mine, reverse=False), theirs.media, theirs.control)
            agreement.answers.append(mine)
    return agreement


def accepted(proposed: list[Channel], answers: list[Channel]) -> Agreement:
    """The caller's reading of the callee's answers to its `proposed` channels."""
    agreement = Agreement()
    for reply in answers:
        kind = reply.kind
        taken = agreement.receive if reply.reverse else agreement.transmit
        if kind in taken:
            continue  # (one per kind and direction; the rest are ignored)
        ours = [p for p in proposed if p.reverse == reply.reverse and p.session == reply.session and p.codec.name == reply.codec.name]
        if not ours:
            continue
        if reply.reverse:  # the callee sends to our receive address
            agreement.receive[kind] = reply
        elif reply.media is not None:  # the callee receives our transmit channel there
            agreement.transmit[kind] = Transmit(replace(ours[0], number=reply.number), reply.media, reply.control)
    return agreement
