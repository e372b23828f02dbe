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
