"""The one aiortc race the gateway quiets, and nothing more."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.exceptions import InvalidStateError

from gateway.rtp.aiortc_glue import ignore_close_races


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
