"""PIN guessing over the real WebSocket: the guessing address is locked out, others are not."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.support.gateway import RunningGateway, mentions


async def test_a_guessing_address_is_locked_out_and_others_are_not(gateway: RunningGateway) -> None:
    async def attempt(pin: str, local: str = "127.0.0.1", room: str = "secret") -> dict[str, object]:
        async with websockets.connect(gateway.ws_url, local_addr=(local, 0)) as ws:
            await ws.send(json.dumps({"type": "join", "room": room, "name": "Mallory", "pin": pin}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[no-any-return]

    for guess in ("0000", "1111", "2222", "3333", "4444"):
        assert (await attempt(guess))["reason"] == "wrong_pin"
    locked = await attempt("5555")  # even the right PIN: the address is locked out
    assert locked == {"type": "ended", "reason": "locked_out"}
    other = await attempt("5555", local="127.0.0.2")
    assert other["type"] == "joined"
    # Per room, and only joins with a PIN: the same address still enters a room without one.
    assert (await attempt("", room="demo"))["type"] == "joined"
    # Knowing the guest PIN does not buy more guesses at the host PIN.
    for guess in ("1000", "1001", "1002", "1003"):
        assert (await attempt(guess, local="127.0.0.3"))["reason"] == "wrong_pin"
    assert (await attempt("5555", local="127.0.0.3"))["type"] == "joined"  # the guest PIN
    assert (await attempt("1004", local="127.0.0.3"))["reason"] == "wrong_pin"
    assert (await attempt("1234", local="127.0.0.3"))["reason"] == "locked_out"  # even the host PIN
    lines = gateway.log_lines()
    assert sum(1 for line in lines if line.get("event") == "wrong PIN") == 10
    assert any(line.get("event", "").startswith("join refused: source locked out") for line in lines)  # type: ignore[union-attr]
    assert not any(mentions(line, "5555") or mentions(line, "0000") for line in lines), "a PIN was logged"
