"""Who the gateway trusts, and what it announces: a trusted room system is trusted only from the
address its directory entry names; wrong PINs from a browser behind a trusted proxy and from a
phone add up in one PIN guard (the address X-Forwarded-For names is the phone's address); behind
NAT, `sip.public_address` is what the gateway's answers and requests name, while its RTP still
reaches the caller. What callers hear is told by the shipped prompts found in their audio."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    participants,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.prompts import Phone, assert_heard, assert_not_heard, phones

# -- a trusted room system, from its own address and from another -------------------------------


def test_a_trusted_room_system_is_trusted_only_from_its_own_address(gateway: RunningGateway) -> None:
    # The council's system, trusted in its own room `secret` (guest PIN 5555, host PIN 1234).
    system = {"id": "council", "name": "Council chamber", "uri": "sip:council@127.0.0.2", "trusted": True, "default_room": "secret"}
    assert gateway.api("POST", "/api/systems", json=system).status_code == 201
    with phones() as made:
        # The same From, the same room, from 127.0.0.3: asked for the PIN like anybody.
        elsewhere = Phone(gateway, "127.0.0.3", number="council", display="Not the council")
        made.append(elsewhere)
        assert elsewhere.call("secret", from_uri="sip:council@127.0.0.2").status == 200
        elsewhere.wait_to_hear("enter_pin")
        assert_heard(*elsewhere.recording(), "welcome", "enter_pin")
        assert participants(gateway, "secret") == [], "let in without a PIN from a foreign address"

        # From its configured address: straight into its room, no welcome, no PIN, under its directory name.
        own = Phone(gateway, "127.0.0.2", number="council", display="Whatever it says")
        made.append(own)
        assert own.call("secret", from_uri="sip:council@127.0.0.2").status == 200
        wait_until(lambda: participants(gateway, "secret"), 15, what="the trusted system in its room")
        [member] = participants(gateway, "secret")
        assert member["name"] == "Council chamber" and member["kind"] == "sip_room_system"
        own.wait_to_hear("joined")
        assert_not_heard(*own.recording(), "welcome", "enter_pin", "enter_pin_optional")

        # The caller from elsewhere is a guest like any other once it gives the guest PIN, under the
        # name it gave, not the directory's.
        elsewhere.keys("5555#")
        wait_until(lambda: len(participants(gateway, "secret")) == 2, 15, what="the other caller in with the PIN")
        names = sorted(str(p["name"]) for p in participants(gateway, "secret"))
        assert names == ["Council chamber", "Not the council"]


# -- phone and browser guesses behind trusted_proxies ------------------------------------------

BEHIND_PROXY = TEST_CONFIG.replace(
    "server: {host: 127.0.0.1, port: 0}", "server: {host: 127.0.0.1, port: 0, trusted_proxies: ['127.0.0.1']}"
) + "security: {pin_max_failures: 3, pin_lockout_s: 600, room_pin_max_failures: 5, room_pin_pause_s: 600}\n"
assert "trusted_proxies" in BEHIND_PROXY


def browser_join(gateway: RunningGateway, room: str, pin: str, forwarded_for: str) -> str:
    """Joins over the meeting WebSocket as a browser behind the proxy at 127.0.0.1 would (the proxy
    names the browser's address in X-Forwarded-For); returns the `ended` reason, or 'joined'."""
    from websockets.sync.client import connect

    with connect(gateway.ws_url, open_timeout=10, additional_headers={"X-Forwarded-For": forwarded_for}) as ws:
        ws.send(json.dumps({"type": "join", "room": room, "name": "Guesser", "pin": pin}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=20))
            if message["type"] == "ended":
                return str(message["reason"])
            if message["type"] in ("joined", "lobby"):
                return str(message["type"])
    raise AssertionError("no answer to join")


def test_browser_and_phone_guesses_share_one_lockout_behind_a_trusted_proxy(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, BEHIND_PROXY)
    try:
        with phones() as made:
            # A browser at 127.0.0.2 (so says the trusted proxy) guesses three times: locked out.
            assert [browser_join(gateway, "secret", pin, "127.0.0.2") for pin in ("1111", "2222", "3333")] == ["wrong_pin"] * 3
            assert browser_join(gateway, "secret", "5555", "127.0.0.2") == "locked_out"

            # A phone at that same address is locked out too: answered, told why, and put out.
            same = Phone(gateway, "127.0.0.2")
            made.append(same)
            assert same.call("secret").status == 200
            bye = same.caller.bye_from_gateway(same.dialog, 20)  # type: ignore[arg-type]
            assert "cause=403" in bye.headers["reason"][0]
            assert_heard(*same.recording(), "too_many_attempts")
            assert_not_heard(*same.recording(), "enter_pin")

            # The proxy's own address is not who guessed: a phone from 127.0.0.1 is asked for the PIN.
            proxy_host = Phone(gateway, "127.0.0.1")
            made.append(proxy_host)
            assert proxy_host.call("secret").status == 200
            proxy_host.wait_to_hear("enter_pin")
            # Two wrong PINs by phone: with the browser's three that makes the room's five, so the
            # second already ends the call (the menu alone would allow a third attempt).
            proxy_host.keys("1212#")
            proxy_host.wait_to_hear("wrong_pin")
            proxy_host.keys("3434#")
            bye = proxy_host.caller.bye_from_gateway(proxy_host.dialog, 20)  # type: ignore[arg-type]
            assert "cause=403" in bye.headers["reason"][0]
            assert_heard(*proxy_host.recording(), "enter_pin", "wrong_pin", "too_many_attempts")

            # PIN entry for the room is paused now, for browsers too: even the right PIN from a
            # fresh address is refused, while another room takes it.
            assert browser_join(gateway, "secret", "5555", "127.0.0.9") == "locked_out"
            assert browser_join(gateway, "demo", "1234", "127.0.0.9") == "joined"
    finally:
        stop_and_check(gateway)


# -- behind NAT: sip.public_address --------------------------------------------------------------

PUBLIC = "192.0.2.1"
BEHIND_NAT = TEST_CONFIG.replace("sip: {host: 127.0.0.1, port: 0,", f"sip: {{host: 127.0.0.1, port: 0, public_address: {PUBLIC},")
assert "public_address" in BEHIND_NAT


def test_the_public_address_is_announced_behind_nat_and_media_still_flows(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path, BEHIND_NAT)
    try:
        with phones() as made:
            phone = Phone(gateway, "127.0.0.1")
            made.append(phone)
            answer = phone.call("demo")
            assert answer.status == 200
            assert f"@{PUBLIC}:" in answer.header("contact"), answer.header("contact")
            sdp = answer.body.decode()
            assert f"c=IN IP4 {PUBLIC}\r\n" in sdp and f" IN IP4 {PUBLIC}\r\n" in sdp.split("o=", 1)[1].split("\r\n", 1)[0] + "\r\n", sdp
            assert "127.0.0.1" not in sdp, sdp
            # (the caller's own Via comes back with where its request came from)
            assert "received=127.0.0.1" in answer.header("via") or f"{phone.caller.host}:{phone.caller.port}" in answer.header("via")

            # The media itself reaches the caller: it hears the welcome and the PIN prompt.
            phone.wait_to_hear("enter_pin_optional")
            assert_heard(*phone.recording(), "welcome", "enter_pin_optional")
            assert all(source[0] == "127.0.0.1" for source in phone.recorder.sources)

            # In the meeting, removed by the host: it hears so, and the gateway's BYE names the
            # public address in its Via (where the caller's answer must go) and its Contact.
            phone.keys("#")
            wait_until(lambda: participants(gateway, "demo"), 15, what="the caller in the meeting")
            phone.wait_to_hear("joined")
            [member] = participants(gateway, "demo")
            assert gateway.api("DELETE", f"/api/rooms/demo/participants/{member['id']}").status_code == 204
            bye = phone.caller.bye_from_gateway(phone.dialog, 20)  # type: ignore[arg-type]
            assert bye.headers["via"][0].startswith(f"SIP/2.0/UDP {PUBLIC}:"), bye.headers["via"]
            assert_heard(*phone.recording(), "joined", "removed")
    finally:
        stop_and_check(gateway)
