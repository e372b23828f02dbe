"""The one aiortc race the gateway quiets, and nothing more."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.exceptions import InvalidStateError
from aiortc.rtcdtlstransport import RtpRouter
from aiortc.rtp import RtpPacket

from gateway.rtp.aiortc_glue import ignore_close_races, offer_simulcast, route_by_mid


async def _handled(future: asyncio.Future[Any], exception: BaseException) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        ignore_close_races(loop)
        loop.call_exception_handler({"message": "Task exception was never retrieved", "exception": exception, "future": future})
    finally:
        loop.set_exception_handler(before)
    return seen


async def test_a_peer_connection_closed_while_connecting_is_not_an_error() -> None:
    pc = RTCPeerConnection()
    await pc.close()
    connect = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    await connect
    assert await _handled(connect, InvalidStateError("RTCIceTransport is closed")) == []


async def test_other_exceptions_still_reach_the_previous_handler() -> None:
    pc = RTCPeerConnection()
    await pc.close()
    connect = asyncio.ensure_future(pc._RTCPeerConnection__connect())  # type: ignore[attr-defined]
    await connect
    (seen,) = await _handled(connect, ValueError("a real bug"))
    assert isinstance(seen["exception"], ValueError)

    async def elsewhere() -> None:
        return None

    other = asyncio.ensure_future(elsewhere())
    await other
    (seen,) = await _handled(other, InvalidStateError("same type, other task"))
    assert isinstance(seen["exception"], InvalidStateError)


async def test_pre_encoded_audio_carries_its_level_as_rfc_6464_says() -> None:
    """aiortc keeps a frame's level in dBov (-127..0) and writes its negation into the header
    extension: a -20 dBov frame goes out as 20 (it went out as 108, silence, before)."""
    from types import SimpleNamespace

    from gateway.rtp.aiortc_glue import send_audio_level

    frame = SimpleNamespace(audio_level=None)

    async def next_frame(codec: object) -> object:
        return frame

    sender = SimpleNamespace(_next_encoded_frame=next_frame)
    send_audio_level(sender, lambda: -20.4)  # type: ignore[arg-type]
    assert await sender._next_encoded_frame(None) is frame
    assert frame.audio_level == -20 and -frame.audio_level == 20  # (what aiortc writes)


def test_simulcast_is_asked_for_on_the_camera_line_only_lowest_layer_first() -> None:
    sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\n"
    asked = offer_simulcast(sdp, "1", ("l", "h"))
    camera, screen = asked.split("m=video")[1:]
    assert "a=rid:l recv\r\na=rid:h recv\r\na=simulcast:recv l;h\r\n" in camera
    assert "simulcast" not in screen and "a=rid" not in screen
    assert offer_simulcast(sdp, "7", ("l", "h")) == sdp  # (no such line: unchanged)


def test_packets_of_unannounced_ssrcs_are_routed_by_their_mid() -> None:
    route_by_mid()
    router = RtpRouter()
    camera, screen = object(), object()
    router.register_receiver(camera, ssrcs=[], payload_types=[97], mid="1")  # type: ignore[arg-type]
    router.register_receiver(screen, ssrcs=[], payload_types=[97], mid="2")  # type: ignore[arg-type]
    packet = RtpPacket(payload_type=97, ssrc=1234)
    assert router.route_rtp(packet) is None  # (no MID: two receivers take payload type 97)
    packet.extensions.mid = "2"
    assert router.route_rtp(packet) is screen
    assert router.route_rtp(RtpPacket(payload_type=97, ssrc=1234)) is screen  # (its SSRC learnt)
    stray = RtpPacket(payload_type=96, ssrc=99)
    stray.extensions.mid = "1"
    assert router.route_rtp(stray) is None  # (a payload type the line did not agree on)
