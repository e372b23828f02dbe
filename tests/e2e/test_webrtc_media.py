"""Real WebRTC media through a running gateway, with aiortc participants (fast; no browser).

Each participant sends its own tone; what each one receives is analysed for frequencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import websockets

from gateway.webrtc.probe import Probe
from tests.support.gateway import RunningGateway


async def join(gateway: RunningGateway, name: str, tone: float | None, pin: str = "", room: str = "demo") -> Probe:
    probe = Probe(gateway.ws_url, room, name, pin, tone)
    await probe.start()
    await asyncio.wait_for(probe.joined.wait(), 10)
    return probe


async def settle(*probes: Probe, seconds: float = 2.0) -> None:
    for p in probes:
        p.reset_spectrum()
    await asyncio.sleep(seconds)


async def assert_silent_but_alive(probe: Probe, *tones: float, seconds: float = 1.5, what: str = "") -> None:
    """The probe's meeting audio keeps arriving (20 ms frames at about their pace) and carries none
    of these tones: silence that a stream which stopped cannot fake."""
    probe.reset_spectrum()
    before = probe.stats.audio_frames
    await asyncio.sleep(seconds)  # deliberate: the silence is proven over this much time
    frames = probe.stats.audio_frames - before
    assert frames >= 25 * seconds, f"{probe.name}'s meeting audio is not alive: {frames} frames in {seconds} s"
    for hz in tones:
        assert probe.stats.energy_near(hz) < 0.01, f"{probe.name} hears {hz:g} Hz: {what}"


async def wait_for_audio(*probes: Probe, frames: int = 50, within_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while any(p.stats.audio_frames < frames for p in probes):
        assert loop.time() < deadline, f"audio never arrived: {[p.stats.audio_frames for p in probes]}"
        await asyncio.sleep(0.1)


async def until(condition: Callable[[], object], within_s: float = 5.0, what: str = "") -> None:
    """Waits on state (the API, a probe's messages) without blocking the probes' event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, f"timed out after {within_s} s waiting for {what or condition}"
        await asyncio.sleep(0.05)


async def test_everyone_hears_the_others_but_not_themselves(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    c = await join(gateway, "Cem", 1700)
    try:
        await wait_for_audio(a, b, c)
        await settle(a, b, c, seconds=3)
        for probe, own, others in ((a, 440, (1000, 1700)), (b, 1000, (440, 1700)), (c, 1700, (440, 1000))):
            for hz in others:
                assert probe.stats.energy_near(hz) > 0.05, f"{probe.name} does not hear {hz} Hz"
            assert probe.stats.energy_near(own) < 0.01, f"{probe.name} hears itself (no mix-minus)"
    finally:
        for p in (a, b, c):
            await p.close()


async def test_admin_api_lists_counters_and_mute_silences_within_a_second(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        await wait_for_audio(a, b)
        await asyncio.sleep(1)
        listing = gateway.api("GET", "/api/rooms/demo/participants")
        assert listing.status_code == 200
        by_name = {p["name"]: p for p in listing.json()}
        assert set(by_name) == {"Anna", "Ben"}
        assert by_name["Anna"]["role"] == "host" and by_name["Ben"]["role"] == "guest"
        assert by_name["Ben"]["kind"] == "browser"
        media = by_name["Ben"]["media"]
        assert media["audio_packets_in"] > 20 and media["audio_frames_out"] > 20
        assert -30 < media["audio_level_dbov"] < 0

        ben = by_name["Ben"]["id"]
        muted = gateway.api("POST", f"/api/rooms/demo/participants/{ben}/mute")
        assert muted.status_code == 200 and muted.json()["id"] == ben and muted.json()["muted"] is True
        await asyncio.sleep(1.0)  # deliberate: the mute must take within a second
        await assert_silent_but_alive(a, 1000, what="the host still hears the muted guest a second later")
        assert b.you is not None and b.you["muted"] and b.you["host_muted"]
        after = {p["name"]: p for p in gateway.api("GET", "/api/rooms/demo/participants").json()}
        assert after["Ben"]["muted"] is True
        assert after["Ben"]["media"]["audio_frames_dropped_muted"] > 0

        assert gateway.api("POST", f"/api/rooms/demo/participants/{ben}/unmute").json()["muted"] is False
        await until(lambda: b.you is not None and not b.you["muted"], what="Ben told he is unmuted")
        await settle(a, seconds=1.5)
        assert a.stats.energy_near(1000) > 0.05
    finally:
        await a.close()
        await b.close()


async def test_forbidden_self_unmute_keeps_the_audio_out(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        await wait_for_audio(a, b)
        ben = b.you["id"]  # type: ignore[index]
        await a.send({"type": "mute", "participant": ben, "forbid_self_unmute": True})
        await until(lambda: b.you is not None and b.you["muted"] and b.you["self_unmute_forbidden"], what="Ben muted, forbidden")
        await b.send({"type": "mute_self", "muted": False})  # a modified client trying to get around it
        await until(lambda: any(m["type"] == "error" for m in b.stats.messages), what="an answer to the unmute")
        errors = [m for m in b.stats.messages if m["type"] == "error"]
        assert errors and errors[-1]["code"] == "self_unmute_forbidden"
        await assert_silent_but_alive(a, 1000, seconds=2, what="a forbidden self-unmute went through")
        # The host allows it again: now the guest's own unmute works.
        await a.send({"type": "forbid_self_unmute", "participant": ben, "forbidden": False})
        await until(lambda: b.you is not None and not b.you["self_unmute_forbidden"], what="Ben allowed to unmute")
        await b.send({"type": "mute_self", "muted": False})
        await until(lambda: b.you is not None and not b.you["muted"], what="Ben unmuted")
        await settle(a, seconds=1.5)
        assert a.stats.energy_near(1000) > 0.05
    finally:
        await a.close()
        await b.close()


async def test_bad_messages_get_errors_and_the_room_keeps_working(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        async with websockets.connect(gateway.ws_url) as raw:
            for bad, code in (
                ("not json", "bad_message"),
                ("[1,2]", "bad_message"),
                ('{"type": "fly"}', "bad_message"),
                ('{"type": "join", "room": "demo"}', "bad_message"),
                ('{"type": "mute", "participant": "x"}', "not_in_meeting"),
            ):
                await raw.send(bad)
                reply = json.loads(await asyncio.wait_for(raw.recv(), 5))
                assert reply["type"] == "error" and reply["code"] == code, (bad, reply)
            # Same socket still usable: join now works.
            await raw.send(json.dumps({"type": "join", "room": "demo", "name": "Late"}))
            kinds = set()
            for _ in range(3):
                kinds.add(json.loads(await asyncio.wait_for(raw.recv(), 5))["type"])
            assert "joined" in kinds
        # A guest may not use host controls.
        await b.send({"type": "mute", "participant": a.you["id"]})  # type: ignore[index]
        await until(lambda: any(m["type"] == "error" for m in b.stats.messages), what="an answer to the guest")
        assert any(m["type"] == "error" and m["code"] == "not_allowed" for m in b.stats.messages)
        await wait_for_audio(a, b)
        await settle(a, b, seconds=1.5)
        assert a.stats.energy_near(1000) > 0.05 and b.stats.energy_near(440) > 0.05
        warnings = [line for line in gateway.log_lines() if line.get("event") == "bad websocket message"]
        assert len(warnings) == 4
    finally:
        await a.close()
        await b.close()


async def test_join_refusals_end_the_session_with_a_reason(gateway: RunningGateway) -> None:
    async def answer(room: str, pin: str = "") -> tuple[str, str]:
        """The gateway's first answer to a join: ("joined", "") or ("ended", its reason)."""
        async with websockets.connect(gateway.ws_url) as raw:
            await raw.send(json.dumps({"type": "join", "room": room, "name": "X", "pin": pin}))
            reply = json.loads(await asyncio.wait_for(raw.recv(), 5))
            return str(reply["type"]), str(reply.get("reason", ""))

    async def refusal(room: str, pin: str = "") -> str:
        kind, reason = await answer(room, pin)
        assert kind == "ended", (room, pin, kind)
        return reason

    assert await refusal("nowhere") == "unknown_room"
    assert await refusal("secret") == "wrong_pin"
    assert await refusal("secret", "9999") == "wrong_pin"
    assert await refusal("demo", "9999") == "wrong_pin"
    a = await join(gateway, "Anna", None, pin="1234", room="small")
    b = await join(gateway, "Ben", None, room="small")
    try:
        assert await refusal("small") == "full"
    finally:
        await a.close()
        await b.close()

    # A locked room refuses a newcomer who has the right PIN, with the lock as the reason; the
    # same PIN gets in before the lock and after the unlock.
    host = await join(gateway, "Anna", None, pin="1234", room="secret")
    try:
        assert await answer("secret", "5555") == ("joined", "")
        await host.send({"type": "lock", "locked": True})
        await until(lambda: gateway.api("GET", "/api/rooms/secret").json()["live"]["locked"], what="secret locked")
        assert await refusal("secret", "5555") == "locked"
        await host.send({"type": "lock", "locked": False})
        await until(lambda: not gateway.api("GET", "/api/rooms/secret").json()["live"]["locked"], what="secret unlocked")
        assert await answer("secret", "5555") == ("joined", "")
    finally:
        await host.close()


async def test_admin_api_refuses_bad_requests(gateway: RunningGateway) -> None:
    assert gateway.api("GET", "/api/rooms", token=None).status_code == 401
    wrong = gateway.api("GET", "/api/rooms", token="wrong-token-wrong-token")
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorised"
    rooms = gateway.api("GET", "/api/rooms").json()
    assert {r["id"] for r in rooms} == {"demo", "lobby", "secret", "small"}
    missing = gateway.api("GET", "/api/rooms/nowhere/participants")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_room"
    nobody = gateway.api("POST", "/api/rooms/demo/participants/nobody/mute")
    assert nobody.status_code == 404 and "reason" in nobody.json()


async def test_a_lost_connection_keeps_the_place_and_the_mute(gateway: RunningGateway) -> None:
    """A host-muted guest whose connection drops comes back on the same place, still muted."""
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        ben, token = b.you["id"], next(m["resume"] for m in b.stats.messages if m["type"] == "joined")  # type: ignore[index]
        await wait_for_audio(a, b)  # Ben's media is up: his place is kept when his connection drops
        await a.send({"type": "mute", "participant": ben, "forbid_self_unmute": True})
        await until(lambda: b.you is not None and b.you["muted"], what="Ben muted")
        await b.close()  # the connection is lost (no leave)

        def roster() -> dict[str, dict[str, object]]:
            return {p["id"]: p for p in gateway.api("GET", "/api/rooms/demo/participants").json()}

        await until(lambda: ben in roster() and roster()[ben]["connected"] is False, what="Ben's connection lost")
        assert roster()[ben]["muted"] is True

        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "demo", "name": "Ben", "resume": token}))
            joined = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert joined["type"] == "joined"
            assert joined["you"]["id"] == ben and joined["you"]["muted"] and joined["you"]["self_unmute_forbidden"]
            now = roster()
            assert now[ben]["connected"] is True and len(now) == 2
            assert joined["resume"] != token  # rotated
        # That connection is gone too; the old token must not take the place.
        await until(lambda: not roster().get(ben, {}).get("connected"), what="the resumed connection gone")
        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "demo", "name": "Eve", "resume": token}))
            replay = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert replay["type"] != "joined" or replay["you"]["id"] != ben
    finally:
        await a.close()


async def test_leaving_and_rejoining_does_not_lift_a_host_mute(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        await a.send({"type": "mute_all", "forbid_self_unmute": True})
        await until(lambda: b.you is not None and b.you["host_muted"], what="Ben muted by mute-all")
        await b.send({"type": "leave"})
        await b.close()
        b = await join(gateway, "Ben", 1000)  # same address, same name: a returner
        assert b.you is not None and b.you["host_muted"] and b.you["self_unmute_forbidden"]
        c = await join(gateway, "Cem", 1700)  # a newcomer after "mute all guests": muted too
        assert c.you is not None and c.you["muted"] and c.you["self_unmute_forbidden"]
        await wait_for_audio(a)
        await assert_silent_but_alive(a, 1000, 1700, seconds=2, what="a muted returner or newcomer is heard")
        await a.send({"type": "allow_all_unmute"})
        await until(lambda: c.you is not None and not c.you["self_unmute_forbidden"], what="Cem allowed to unmute")
        await c.send({"type": "mute_self", "muted": False})
        await until(lambda: c.you is not None and not c.you["muted"], what="Cem unmuted")
        await settle(a, seconds=1.5)
        assert a.stats.energy_near(1700) > 0.05 and a.stats.energy_near(1000) < 0.01
        await c.close()
    finally:
        await a.close()
        await b.close()


async def test_a_place_removed_during_the_reconnect_grace_is_not_reentered(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", None, pin="1234")
    b = await join(gateway, "Ben", None)
    try:
        await asyncio.sleep(1.0)  # Ben's media is up: his place is kept when his connection drops
        ben = b.you["id"]  # type: ignore[index]
        token = next(m["resume"] for m in b.stats.messages if m["type"] == "joined")
        await b.close()
        await asyncio.sleep(0.3)
        await a.send({"type": "remove", "participant": ben})
        await asyncio.sleep(0.3)
        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "demo", "name": "Ben", "resume": token}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ended", "reason": "removed"}
    finally:
        await a.close()


async def test_floods_and_oversize_messages_are_refused_without_hurting_the_room(gateway: RunningGateway) -> None:
    a = await join(gateway, "Anna", 440, pin="1234")
    b = await join(gateway, "Ben", 1000)
    try:
        await wait_for_audio(a, b)
        async with websockets.connect(gateway.ws_url, max_size=2**20) as raw:
            await raw.send("x" * (300 * 1024))  # over the 256 KiB limit: an error, the socket stays
            reply = json.loads(await asyncio.wait_for(raw.recv(), 5))
            assert reply["type"] == "error" and "too large" in reply["message"]
            for _ in range(300):
                await raw.send('{"type": "ping"}')
            replies = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    replies.append(json.loads(await asyncio.wait_for(raw.recv(), 1)))
            assert any(r.get("code") == "rate_limited" for r in replies)
            assert sum(1 for r in replies if r["type"] == "pong") < 100
        await settle(a, b, seconds=1.5)
        assert a.stats.energy_near(1000) > 0.05 and b.stats.energy_near(440) > 0.05
    finally:
        await a.close()
        await b.close()


async def test_a_lost_connection_in_the_waiting_room_keeps_the_place_in_the_queue(gateway: RunningGateway) -> None:
    host = await join(gateway, "Anna", None, pin="1234", room="lobby")

    async def wait_in_lobby(name: str) -> tuple[websockets.ClientConnection, dict[str, object]]:
        ws = await websockets.connect(gateway.ws_url)
        await ws.send(json.dumps({"type": "join", "room": "lobby", "name": name}))
        return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))

    try:
        carl_ws, carl = await wait_in_lobby("Carl")
        dora_ws, dora = await wait_in_lobby("Dora")
        assert (carl["position"], dora["position"]) == (1, 2) and carl["host_present"] is True
        await carl_ws.close()  # Carl's connection drops
        await asyncio.sleep(0.3)
        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "lobby", "name": "Carl", "resume": carl["resume"]}))
            back = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert back["type"] == "lobby" and back["position"] == 1
        # Dora drops, and the host denies her meanwhile: her return is told so.
        await dora_ws.close()
        await asyncio.sleep(0.3)
        lobby = next(m["room"]["lobby"] for m in reversed(host.stats.messages) if m["type"] == "state")
        dora_id = next(e["id"] for e in lobby if e["name"] == "Dora")
        await host.send({"type": "deny", "participant": dora_id})
        await asyncio.sleep(0.3)
        async with websockets.connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "lobby", "name": "Dora", "resume": dora["resume"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ended", "reason": "denied"}
    finally:
        await host.close()

