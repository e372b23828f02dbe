"""Attacks on the SIP edge through the real gateway process, the way scanners and toll-fraud bots
send them: broken SDP that must not leave a call behind, digit floods, floods of transactions and
TCP connections (bounded memory), injection through dial-out, PIN guessing through a carrier trunk
(one guesser must not lock out every caller of the trunk), a forged From claiming a trusted room
system, and new calls refused while the gateway is overloaded."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    mentions,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.sip_client import RawCaller, Response, sdp_offer

HARDENED = TEST_CONFIG.replace(
    "sip: {host: 127.0.0.1, port: 0,",
    "sip: {host: 127.0.0.1, port: 0, trunk_sources: ['127.0.0.3/32'], max_transactions: 500,"
    " tcp_max_per_address: 8, tcp_idle_s: 2, dial_out_per_minute: 3, max_calls_per_source: 3,"
    r" dial_out_allow: ['sip:[0-9]+@127\.0\.0\.1:[0-9]+'],",
)


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("hardened"), HARDENED)
    yield running
    stop_and_check(running)


def calls_active(gateway: RunningGateway) -> float:
    text = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("gateway_sip_calls_active "))
    return float(line.split()[1])


def rss_kib(gateway: RunningGateway) -> int:
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")




def hang_up(caller: RawCaller, dialog: object) -> None:
    try:
        caller.bye(dialog)  # type: ignore[arg-type]
    except AssertionError:
        pass  # the gateway ended it already


BAD_SDP = {
    "superscript digit in the format list": "m=audio {port} RTP/AVP 0 \u00b2",
    "superscript digit as the port": "m=audio \u00b2 RTP/AVP 0",
    "Arabic-Indic digit as payload type": "m=audio {port} RTP/AVP \u0663",
    "port out of range": "m=audio 99999999999999999999 RTP/AVP 0",
    "host name as connection address": "c=IN IP4 victim.example\r\nm=audio {port} RTP/AVP 0",
}


def test_broken_sdp_is_refused_and_leaves_no_call_behind(hardened: RunningGateway) -> None:
    caller = RawCaller(hardened.sip_port)
    try:
        for what, media in BAD_SDP.items():
            body = sdp_offer("127.0.0.1", caller.rtp_port).split("m=audio")[0].replace("c=IN IP4 127.0.0.1\r\n", "")
            if "c=" not in media:
                body += "c=IN IP4 127.0.0.1\r\n"
            body += media.format(port=caller.rtp_port) + "\r\n"
            dialog, answer = caller.call("demo", body)
            assert answer.status in (400, 488), f"{what}: answered {answer.status} {answer.reason}"
        wait_until(lambda: calls_active(hardened) == 0, 10, what="no call left active")
        assert "never retrieved" not in hardened.log_path.read_text()
        # and the next good call is served
        dialog, answer = caller.call("demo")
        assert answer.status == 200
        hang_up(caller, dialog)
    finally:
        caller.close()


def test_digit_floods_are_refused_and_typed_digits_stay_out_of_the_log(hardened: RunningGateway) -> None:
    caller = RawCaller(hardened.sip_port, number="+4930777")
    try:
        dialog, answer = caller.call("secret")
        assert answer.status == 200
        # Thousands of digits in one INFO: refused, and none of them counts.
        assert caller.info(dialog, "1" * 5000, "application/dtmf").status == 400
        assert caller.info(dialog, "Signal=" + "1" * 5000).status in (200, 400)  # not a key: ignored or refused
        # A burst of single-key INFOs faster than anyone presses keys: the excess is dropped.
        for _ in range(60):
            caller.info(dialog, "Signal=2")
        # The keys that got through (10 a second) end as one wrong PIN: the menu asks again.
        assert caller.info(dialog, "Signal=#").status == 200
        wait_until(lambda: any(line.get("event") == "wrong PIN" for line in hardened.log_lines()), 10, what="a wrong PIN")
        time.sleep(1.0)  # deliberate: the keys' one-second window must pass, or the burst would still block the next keys
        # The guest PIN typed at a person's pace lets the caller in.
        for key in "5555#":
            assert caller.info(dialog, f"Signal={key}\r\nDuration=160").status == 200
            time.sleep(0.15)
        wait_until(lambda: any(p["name"] == "Caller" for p in participants(hardened, "secret")), 15, what="caller joined")
        lines = hardened.log_lines()
        assert not any("digit" in line for line in lines), "typed digits were logged before the meeting"
        assert not any(mentions(line, "5555") for line in lines), "the PIN was logged"
        assert any(line.get("event") == "DTMF flood: keys dropped" for line in lines)
        hang_up(caller, dialog)
    finally:
        caller.close()


def test_floods_of_transactions_and_connections_cost_bounded_memory(hardened: RunningGateway) -> None:
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.bind(("127.0.0.1", 0))
    port = flood.getsockname()[1]
    probe = RawCaller(hardened.sip_port)
    try:
        probe.options()
        before = rss_kib(hardened)
        # 40,000 requests, each a new transaction (distinct branches and Call-IDs), never read back.
        for n in range(40_000):
            method = ("OPTIONS", "BYE", "INFO")[n % 3]
            message = (
                f"{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{n}x{secrets.token_hex(6)}\r\n"
                f"From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: {n}-{secrets.token_hex(8)}\r\n"
                f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            flood.sendto(message, ("127.0.0.1", hardened.sip_port))
            if n % 200 == 0:
                time.sleep(0.005)  # (let the gateway read: a kernel buffer overflow would hide the cost)

        def caught_up() -> bool:
            try:
                return probe.options(timeout=1.0) < 0.1
            except AssertionError:
                return False

        wait_until(caught_up, 30, what="the gateway through the flood, answering at once again")
        grown = rss_kib(hardened) - before
        assert grown < 12_000, f"RSS grew by {grown} KiB for 40,000 transactions (max_transactions: 500)"

        # Connections: at most tcp_max_per_address (8) from one address; others still get in.
        held = [socket.create_connection(("127.0.0.1", hardened.sip_port)) for _ in range(8)]
        extra = socket.create_connection(("127.0.0.1", hardened.sip_port))
        extra.settimeout(5)
        assert extra.recv(10) == b"", "a ninth connection from one address was kept"
        other = socket.create_connection(("127.0.0.1", hardened.sip_port), source_address=("127.0.0.2", 0))
        other.sendall(
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:5;branch=z9hG4bKtcp1\r\n"
            b"From: <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: tcp-1\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        other.settimeout(5)
        assert other.recv(100).startswith(b"SIP/2.0 200"), "another address was refused too"
        # Idle connections that carry no call are closed (tcp_idle_s: 2).
        started = time.monotonic()
        held[0].settimeout(10)
        assert held[0].recv(10) == b""
        assert time.monotonic() - started < 8
        for sock in [*held, extra, other]:
            sock.close()
    finally:
        flood.close()
        probe.close()


def test_dial_out_refuses_injection_and_is_rate_limited(hardened: RunningGateway) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a callee that never answers
    silent.bind(("127.0.0.1", 0))
    callee = silent.getsockname()[1]
    try:
        for uri in (
            f"sip:123@127.0.0.1:{callee}\r\nVia: SIP/2.0/UDP evil",
            f"sip:123@127.0.0.1:{callee}\nRoute: <sip:carrier>",
            f"sip:123@127.0.0.1:{callee}?Route=%3Csip:00491234@carrier%3E",
            f"sip:123@127.0.0.1:{callee};maddr=198.51.100.7",
            f"sip:12 3@127.0.0.1:{callee}",
            f"sips:123@127.0.0.1:{callee}",
            f"sip:%0D%0A123@127.0.0.1:{callee}",
        ):
            refused = hardened.api("POST", "/api/rooms/demo/dial", json={"uri": uri})
            assert refused.status_code == 400 and refused.json()["error"] == "bad_uri", (uri, refused.text)
        # percent-encoding is decoded before the rules see it: %34%39 is 49, digits, allowed
        placed = [hardened.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:%34%39{n}@127.0.0.1:{callee}"}) for n in range(3)]
        assert [p.status_code for p in placed] == [202, 202, 202], [p.text for p in placed]
        assert placed[0].json()["uri"] == f"sip:490@127.0.0.1:{callee}"
        limited = hardened.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:4999@127.0.0.1:{callee}"})
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        silent.settimeout(5)
        data, _ = silent.recvfrom(65536)
        first_line, _, rest = data.partition(b"\r\n")
        assert first_line.startswith(b"INVITE sip:49") and b"\r\nRoute" not in rest
        events = [line for line in hardened.log_lines() if str(line.get("event", "")).startswith("dial-out")]
        assert len([e for e in events if e["event"] == "dial-out refused"]) == 8
        assert len([e for e in events if e["event"] == "dial-out placed"]) == 3
    finally:
        silent.close()


def _guess(gateway: RunningGateway, caller: RawCaller, room: str, pins: list[str]) -> Response:
    """Calls `room`, types each PIN (then #) at a person's pace; returns the INVITE's answer."""
    dialog, answer = caller.call(room)
    if answer.status != 200:
        return answer
    for count, pin in enumerate(pins, 1):
        for key in pin + "#":
            caller.info(dialog, f"Signal={key}")
            time.sleep(0.12)
        # Refused (the menu asks again at once: keys cut its "wrong PIN" prompt short).
        wait_until(
            lambda count=count: len(
                [line for line in gateway.log_lines() if line.get("event") == "wrong PIN" and line.get("call_id") == dialog.call_id]
            ) == count,
            10,
            what=f"wrong PIN number {count}",
        )
    hang_up(caller, dialog)
    return answer


def test_pin_guessing_through_a_trunk_locks_out_the_guesser_not_the_trunk(hardened: RunningGateway) -> None:
    guesser = RawCaller(hardened.sip_port, host="127.0.0.3", number="+4930111")  # 127.0.0.3 is a trunk
    honest = RawCaller(hardened.sip_port, host="127.0.0.3", number="+4930222")
    try:
        assert _guess(hardened, guesser, "secret", ["0000", "0001", "0002"]).status == 200
        assert _guess(hardened, guesser, "secret", ["0003", "0004"]).status == 200
        wait_until(
            lambda: any(line.get("event") == "wrong PIN" and line.get("now_locked_out") for line in hardened.log_lines()),
            10,
            what="the guesser locked out",
        )
        # Locked out: answered so that the caller hears why, then a BYE whose Reason says 403.
        dialog, answer = guesser.call("secret")
        assert answer.status == 200
        bye = guesser.bye_from_gateway(dialog)
        assert "cause=403" in bye.headers["reason"][0]
        # Another caller of the same trunk (same address) is not locked out: gets in with the PIN.
        dialog, answer = honest.call("secret")
        assert answer.status == 200
        for key in "5555#":
            honest.info(dialog, f"Signal={key}")
            time.sleep(0.12)
        wait_until(lambda: len(participants(hardened, "secret")) >= 1, 15, what="the honest caller joined")
        hang_up(honest, dialog)
    finally:
        guesser.close()
        honest.close()


def test_a_forged_from_does_not_make_a_trusted_room_system(hardened: RunningGateway) -> None:
    system = {"id": "chamber", "name": "Chamber", "uri": "sip:chamber@127.0.0.2", "trusted": True, "default_room": "lobby"}
    assert hardened.api("POST", "/api/systems", json=system).status_code in (200, 201)
    forger = RawCaller(hardened.sip_port, host="127.0.0.1", number="chamber")
    genuine = RawCaller(hardened.sip_port, host="127.0.0.2", number="chamber")
    try:
        forged, answer = forger.call("lobby", from_uri="sip:chamber@127.0.0.2")
        assert answer.status == 200  # answered: it is asked for a PIN like anybody
        real, answer = genuine.call("lobby", from_uri="sip:chamber@127.0.0.2")
        assert answer.status == 200
        wait_until(lambda: participants(hardened, "lobby"), 15, what="the genuine system in its room")
        assert len(participants(hardened, "lobby")) == 1
        room = hardened.api("GET", "/api/rooms/lobby").json()
        assert room["live"]["lobby_waiting"] == 0, "the forger skipped the menu into the waiting room"
        assert any(line.get("event") == "caller claims a directory room system but calls from elsewhere" for line in hardened.log_lines())
        hang_up(forger, forged)
        hang_up(genuine, real)
    finally:
        forger.close()
        genuine.close()


def test_an_overloaded_gateway_refuses_new_calls_with_retry_after(tmp_path: Path) -> None:
    config = TEST_CONFIG.replace("admission: {max_loop_lag_ms: 1000}", "admission: {max_cpu: 0.000001, retry_after_s: 17}")
    running = start_gateway(tmp_path, config)
    caller = RawCaller(running.sip_port)
    try:

        def refused() -> Response | None:
            dialog, answer = caller.call("demo")
            if answer.status == 200:
                hang_up(caller, dialog)
                return None
            return answer

        answer = wait_until(refused, 10, interval=0.3, what="a 503")
        assert isinstance(answer, Response)
        assert answer.status == 503 and answer.header("retry-after") == "17"
    finally:
        caller.close()
        stop_and_check(running)


def test_a_room_system_that_must_use_srtp_is_refused_without_it(hardened: RunningGateway) -> None:
    import base64

    system = {"id": "secure", "name": "Secure", "uri": "sip:secure@127.0.0.4", "srtp": "required", "default_room": "demo"}
    assert hardened.api("POST", "/api/systems", json=system).status_code in (200, 201)
    caller = RawCaller(hardened.sip_port, host="127.0.0.4", number="secure")
    anybody = RawCaller(hardened.sip_port, host="127.0.0.1", number="+4930999")
    try:
        dialog, plain = caller.call("demo", from_uri="sip:secure@127.0.0.4")
        assert plain.status == 488 and "SRTP" in plain.reason
        key = base64.b64encode(bytes(range(30))).decode()
        secure = sdp_offer("127.0.0.4", caller.rtp_port, "0 101", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")
        dialog, answer = caller.call("demo", secure.replace("RTP/AVP", "RTP/SAVP"), from_uri="sip:secure@127.0.0.4")
        assert answer.status == 200 and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80" in answer.body
        hang_up(caller, dialog)
        # the policy is the room system's: other callers may still use plain RTP (sip.srtp: optional)
        dialog, answer = anybody.call("demo")
        assert answer.status == 200
        hang_up(anybody, dialog)
    finally:
        caller.close()
        anybody.close()


def test_one_address_cannot_take_every_line(hardened: RunningGateway) -> None:
    caller = RawCaller(hardened.sip_port, host="127.0.0.5")
    other = RawCaller(hardened.sip_port, host="127.0.0.6")
    try:
        held = [caller.call("demo") for _ in range(3)]
        assert [answer.status for _, answer in held] == [200, 200, 200]
        _, fourth = caller.call("demo")
        assert fourth.status == 486 and "address" in fourth.reason
        dialog, answer = other.call("demo")  # another address is served
        assert answer.status == 200
        hang_up(other, dialog)
        for dialog, _ in held:
            hang_up(caller, dialog)
    finally:
        caller.close()
        other.close()


def test_guesses_spread_over_addresses_pause_the_room_for_phones_and_browsers_alike(tmp_path: Path) -> None:
    """Wrong PINs from browsers on several addresses add up per room (security.room_pin_max_failures):
    the room takes no PINs for a short while, a phone caller included (it hears why: BYE 403); after
    the pause the right PIN works again."""
    import asyncio
    import json

    import websockets

    config = TEST_CONFIG.replace(
        "admission: {max_loop_lag_ms: 1000}",
        "admission: {max_loop_lag_ms: 1000}\nsecurity: {room_pin_max_failures: 4, room_pin_pause_s: 3}",
    )
    running = start_gateway(tmp_path, config)
    caller = RawCaller(running.sip_port, host="127.0.0.9")

    async def attempt(pin: str, local: str) -> str:
        async with websockets.connect(running.ws_url, local_addr=(local, 0)) as ws:
            await ws.send(json.dumps({"type": "join", "room": "secret", "name": "Mallory", "pin": pin}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return str(answer.get("reason") or answer["type"])

    try:
        for local in ("127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.4"):  # nobody locked out alone (5)
            assert asyncio.run(attempt("0000", local)) == "wrong_pin"
        assert asyncio.run(attempt("5555", "127.0.0.5")) == "locked_out"  # the right PIN, a new address
        dialog, answer = caller.call("secret")
        assert answer.status == 200
        assert "cause=403" in caller.bye_from_gateway(dialog).headers["reason"][0]
        assert any(line.get("event") == "too many wrong PINs for one room: PIN entry paused" for line in running.log_lines())
        wait_until(lambda: asyncio.run(attempt("5555", "127.0.0.5")) == "joined", 10, interval=0.5, what="the pause over")
    finally:
        caller.close()
        stop_and_check(running)


def test_a_trunk_that_must_use_srtp_is_refused_without_it(tmp_path: Path) -> None:
    import base64

    config = TEST_CONFIG.replace(
        "sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, trunk_sources: ['127.0.0.7'], trunk_srtp: required,"
    )
    running = start_gateway(tmp_path, config)
    trunk = RawCaller(running.sip_port, host="127.0.0.7", number="+4930123")
    other = RawCaller(running.sip_port, host="127.0.0.1")
    try:
        _, plain = trunk.call("demo")
        assert plain.status == 488 and "SRTP" in plain.reason
        key = base64.b64encode(bytes(range(30))).decode()
        secure = sdp_offer("127.0.0.7", trunk.rtp_port, "8 101", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")
        dialog, answer = trunk.call("demo", secure.replace("RTP/AVP", "RTP/SAVP"))
        assert answer.status == 200
        hang_up(trunk, dialog)
        dialog, answer = other.call("demo")  # not from the trunk: sip.srtp (optional) holds
        assert answer.status == 200
        hang_up(other, dialog)
    finally:
        trunk.close()
        other.close()
        stop_and_check(running)
