"""Trunks: the gateway registers with a carrier's registrar (Debian's kamailio, digest over SQLite)
with SHA-256 or MD5 digest, refreshes before expiry, takes a call routed through the proxy to its
registered contact into the right room, removes its binding when it stops, says so when the
password is wrong (and never says the password), and registers again after the registrar restarts."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.test_admin_page import open_admin, sign_in
from tests.e2e.test_mqtt import BASE, NODE, Client, Mosquitto, mqtt_config
from tests.support import scenarios as sc
from tests.support.gateway import (
    ADMIN_TOKEN,
    TEST_CONFIG,
    RunningGateway,
    metric,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.kamailio import DOMAIN, Kamailio
from tests.support.sipp import (
    Sipp,
    free_udp_port,
    sipp_uas,
    stop_uas,
    trace_messages,
    udp_port_bound,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "mosquitto")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


TRUNK_USER = "4711"  # the demo room's alias: calls to the trunk's number land in demo
PASSWORD = "Trunk-Geheimnis-2026"


SIP_LINE = "sip: {host: 127.0.0.1, port: 0, language: en, digit_timeout_s: 2}"


def with_trunks(config: str, kamailio: Kamailio, trunks: dict[str, tuple[str, str]], expires_s: int = 10, keepalive_s: int = 1) -> str:
    """`config` with sip.trunks registering at kamailio: {id: (user, password)}."""
    assert SIP_LINE in config
    entries = ", ".join(
        f'{{id: {trunk_id}, registrar: "127.0.0.1:{kamailio.port}", domain: {DOMAIN}, user: "{user}", '
        f'password: "{password}", expires_s: {expires_s}, keepalive_s: {keepalive_s}}}'
        for trunk_id, (user, password) in trunks.items()
    )
    return config.replace(SIP_LINE, SIP_LINE[:-1] + f", trunks: [{entries}]}}")


def gateway_with_trunk(tmp_path: Path, kamailio: Kamailio, password: str = PASSWORD, expires_s: int = 10) -> RunningGateway:
    return start_gateway(tmp_path, with_trunks(TEST_CONFIG, kamailio, {"carrier": (TRUNK_USER, password)}, expires_s))


def trunk_state(gateway: RunningGateway, trunk: str = "carrier") -> dict[str, object]:
    (state,) = [s for s in gateway.api("GET", "/api/trunks").json() if s["id"] == trunk]
    assert isinstance(state, dict)
    return state


def participants(gateway: RunningGateway, room: str) -> list[dict[str, object]]:
    found = gateway.api("GET", f"/api/rooms/{room}/participants").json()
    assert isinstance(found, list)
    return found


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_registered_through_kamailio_refreshed_reached_by_calls_and_unregistered_at_the_end(algorithm: str, tmp_path: Path) -> None:
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD}, algorithm=algorithm)
    kamailio.start()
    gateway = gateway_with_trunk(tmp_path, kamailio)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered")
        assert metric(gateway, "gateway_sip_trunk_registered", trunk="carrier") == 1
        assert kamailio.probe(TRUNK_USER) == 200  # the proxy reaches the gateway at its contact
        # expires 10 s: refreshed every 5 s, the binding never lapses
        first = int(trunk_state(gateway)["registrations"])  # type: ignore[call-overload]
        wait_until(lambda: int(trunk_state(gateway)["registrations"]) >= first + 2, 20, what="two refreshes")  # type: ignore[call-overload]
        state = trunk_state(gateway)
        assert state["status"] == "registered" and state["failures"] == 0 and state["last_status"] == 200
        assert int(state["keepalives_answered"]) >= 2  # type: ignore[call-overload]  # OPTIONS every second, answered

        # A carrier's call to the trunk's number, through the proxy, lands in the demo room.
        call = Sipp(types.SimpleNamespace(sip_port=kamailio.port), tmp_path / "call", "via_proxy_guest.xml", TRUNK_USER)  # type: ignore[arg-type]
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "demo")), 20, what="the caller in demo")
        result = call.wait(60)
        assert result.returncode == 0, result.describe()
    finally:
        stop_and_check(gateway)
        try:
            assert kamailio.probe(TRUNK_USER) == 404, "the binding outlived the gateway"  # removed at shutdown
        finally:
            kamailio.stop()
    assert PASSWORD not in gateway.log_path.read_text()


def test_a_wrong_password_shows_as_failing_with_backoff_and_the_password_is_never_logged(tmp_path: Path) -> None:
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD})
    kamailio.start()
    wrong = "Falsches-Passwort-42"
    gateway = gateway_with_trunk(tmp_path, kamailio, password=wrong)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "failing", 15, what="the trunk failing")
        state = trunk_state(gateway)
        assert state["last_status"] == 401 and state["reason"] == "credentials refused", state
        assert state["next_attempt_at"] is not None and "password" not in state
        assert metric(gateway, "gateway_sip_trunk_registered", trunk="carrier") == 0
        assert kamailio.probe(TRUNK_USER) == 404
        # the first retry after about 5 s, and it fails the same way
        wait_until(lambda: int(trunk_state(gateway)["failures"]) >= 2, 15, what="a second attempt")  # type: ignore[call-overload]
        assert trunk_state(gateway)["failures_in_a_row"] == 2
    finally:
        gateway.process.terminate()
        gateway.process.wait(30)
        kamailio.stop()
    text = gateway.log_path.read_text()
    assert wrong not in text and PASSWORD not in text
    assert any(line.get("event") == "trunk registration failed" and line.get("status") == 401 for line in gateway.log_lines())


def test_a_trunk_made_through_the_api_registers_follows_its_changes_and_unregisters_when_deleted(tmp_path: Path) -> None:
    """An administrator adds the carrier's trunk through the API (no restart): it registers; a wrong
    password put in makes it fail, the right one registers it again, an edit without a password keeps
    it; deleting it removes the binding. The password is shown as ********** only, and a trunk of the
    configuration file cannot be changed through the API."""
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD})
    kamailio.start()
    file_trunk = '{id: file-pbx, registrar: "127.0.0.1:9", registers: false, user: gateway}'
    gateway = start_gateway(tmp_path, TEST_CONFIG.replace(SIP_LINE, SIP_LINE[:-1] + f", trunks: [{file_trunk}]}}"))
    settings = {
        "registrar": f"127.0.0.1:{kamailio.port}", "domain": DOMAIN, "user": TRUNK_USER, "password": PASSWORD,
        "expires_s": 10, "keepalive_s": 1,
    }  # fmt: skip
    try:
        assert [(t["id"], t["origin"], t["status"]) for t in gateway.api("GET", "/api/trunks").json()] == [
            ("file-pbx", "config", "not_registering")
        ]
        made = gateway.api("POST", "/api/trunks", json={"id": "carrier", **settings})
        assert made.status_code == 201, made.text
        assert made.json()["settings"]["password"] == "**********" and made.json()["origin"] == "api"
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the API's trunk registered")
        assert kamailio.probe(TRUNK_USER) == 200

        wrong = gateway.api("PUT", "/api/trunks/carrier", json={**settings, "password": "Falsches-Passwort-7"})
        assert wrong.status_code == 200, wrong.text
        wait_until(lambda: trunk_state(gateway)["status"] == "failing", 15, what="the trunk failing with the wrong password")
        assert gateway.api("PUT", "/api/trunks/carrier", json=settings).status_code == 200
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 20, what="registered again with the right one")
        kept = gateway.api("PUT", "/api/trunks/carrier", json={k: v for k, v in settings.items() if k != "password"} | {"expires_s": 20})
        assert kept.status_code == 200 and kept.json()["settings"]["password"] == "**********", kept.text
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 20, what="still registered with the kept password")

        refused = gateway.api("PUT", "/api/trunks/file-pbx", json={"registrar": "127.0.0.1:9", "user": "x", "registers": False})
        assert refused.status_code == 409, refused.text
        assert gateway.api("DELETE", "/api/trunks/carrier").status_code == 204
        wait_until(lambda: kamailio.probe(TRUNK_USER) == 404, 10, what="the binding removed")
        assert [t["id"] for t in gateway.api("GET", "/api/trunks").json()] == ["file-pbx"]
    finally:
        try:
            stop_and_check(gateway)
        finally:
            kamailio.stop()
    text = gateway.log_path.read_text()
    assert PASSWORD not in text and "Falsches-Passwort-7" not in text


def test_the_gateway_registers_again_after_kamailio_restarts(tmp_path: Path) -> None:
    """kamailio keeps bindings in memory: after a restart it knows none; the gateway's next refresh
    (or its retransmission) finds the new one, is challenged and registers again."""
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD})
    kamailio.start()
    gateway = gateway_with_trunk(tmp_path, kamailio)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered")
        kamailio.stop()
        kamailio.start()
        assert kamailio.probe(TRUNK_USER) == 404  # a fresh kamailio: no binding
        wait_until(lambda: kamailio.probe(TRUNK_USER, timeout=0.5) == 200, 30, what="the binding back in the restarted kamailio")
        assert trunk_state(gateway)["status"] == "registered"
    finally:
        stop_and_check(gateway)
        kamailio.stop()


def test_trunk_states_on_the_admin_page_and_over_mqtt(open_participant, broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two trunks, one with the right password, one with a wrong one: the admin page's summary says
    which is registered and which is failing and why; MQTT carries each state change on
    <prefix>/<node>/trunks/<id>/state; neither shows a password."""
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD, "4712": "other-password"})
    kamailio.start()
    watcher = Client(broker.port, subscribe=f"{BASE}/trunks/#").ready()
    wrong = "Falsches-Passwort-42"
    config = with_trunks(mqtt_config(broker), kamailio, {"carrier": (TRUNK_USER, PASSWORD), "backup": ("4712", wrong)})
    gateway = start_gateway(tmp_path, config)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered" and trunk_state(gateway, "backup")["status"] == "failing", 15, what="one registered, one failing")

        def published(trunk: str, status: str) -> dict[str, object] | None:
            for message in watcher.received(f"{BASE}/trunks/{trunk}/state"):
                if isinstance(message.payload, dict) and message.payload.get("status") == status:
                    return message.payload
            return None

        registered = wait_until(lambda: published("carrier", "registered"), 15, what="carrier's state over MQTT")
        failing = wait_until(lambda: published("backup", "failing"), 15, what="backup's state over MQTT")
        assert isinstance(registered, dict) and isinstance(failing, dict)
        assert registered["last_status"] == 200 and registered["node"] == NODE
        assert failing["last_status"] == 401 and failing["reason"] == "credentials refused"

        page = open_admin(open_participant, gateway)
        sign_in(page, ADMIN_TOKEN)
        summary = page.locator("#live-summary")
        expect(summary).to_contain_text("Trunk carrier", timeout=20_000)
        expect(summary).to_contain_text("registered")
        expect(summary).to_contain_text("failing (401: credentials refused)")
        page.screenshot(path=str(tmp_path / "admin-trunks.png"))
        for text in (summary.inner_text(), json.dumps([m.payload for m in watcher.received()]), gateway.log_path.read_text()):
            assert wrong not in text and PASSWORD not in text
    finally:
        watcher.close()
        gateway.process.terminate()
        gateway.process.wait(30)
        kamailio.stop()


def test_dial_out_over_the_trunk_answers_the_carriers_proxy_challenge(tmp_path: Path) -> None:
    """A host invites a number behind the carrier: the gateway's INVITE goes to kamailio with the
    trunk's number as From, is challenged (407, as kamailio demands of its own users), is sent again
    with Proxy-Authorization, and reaches the callee (sipp's uas behind kamailio), which answers and
    joins the demo room; ending the meeting, the BYE is challenged as well and answered."""
    callee_port = free_udp_port()
    kamailio = Kamailio(tmp_path / "kamailio", {TRUNK_USER: PASSWORD}, static_routes={"4712": callee_port})
    kamailio.start()
    rule = r"sip:4712@127\.0\.0\.1:[0-9]+"
    config = (
        with_trunks(TEST_CONFIG, kamailio, {"carrier": (TRUNK_USER, PASSWORD)})
        .replace("trunks: [", f"dial_out_allow: ['{rule}'], trunks: [", 1)
        .replace("keepalive_s: 1}", 'keepalive_s: 1, caller_id: "+4930901820", display_name: "Stadt Musterstadt"}', 1)
    )
    gateway = start_gateway(tmp_path, config)
    callee = sipp_uas(tmp_path / "callee", callee_port)
    try:
        wait_until(lambda: trunk_state(gateway)["status"] == "registered", 15, what="the trunk registered")
        wait_until(lambda: udp_port_bound(callee_port), 10, what="the callee listening")
        reply = gateway.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:4712@127.0.0.1:{kamailio.port}"})
        assert reply.status_code == 202, reply.text
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "demo")), 20, what="the callee in demo")
        received = [m for m in trace_messages(tmp_path / "callee" / "messages.log") if not m.sent and m.start_line.startswith("INVITE")]
        assert received, "the callee got no INVITE"
        invite = received[0]
        # the trunk's caller ID calls, under the town's name (not the room's, nor whoever invited)
        assert (invite.header("From") or "").startswith(f'"Stadt Musterstadt" <sip:+4930901820@{DOMAIN}>')
        assert invite.header("P-Preferred-Identity") == f"<sip:+4930901820@{DOMAIN}>"
        # the second INVITE of the call: the first was challenged (407), this one answered it (kamailio
        # takes its Proxy-Authorization off before relaying: consume_credentials)
        assert invite.header("CSeq") == "2 INVITE"
        # the host ends the meeting: the BYE is challenged too, answered, and reaches the callee
        assert gateway.api("POST", "/api/rooms/demo/end").status_code == 200
        assert callee.wait(20) == 0, "the callee's call did not end by a BYE"
        byes = [m for m in trace_messages(tmp_path / "callee" / "messages.log") if not m.sent and m.start_line.startswith("BYE")]
        assert byes and byes[0].header("CSeq") == "4 BYE", [m.start_line for m in byes]  # (3 was challenged)
    finally:
        stop_and_check(gateway)
        stop_uas(callee)
        kamailio.stop()
    assert PASSWORD not in gateway.log_path.read_text()


CITIZEN = '"Citizen" <sip:+4917012345678@carrier.example>'
OFFICE_CONFIG = (
    TEST_CONFIG.replace("rooms:\n", 'rooms:\n  - {id: buergeramt, name: "Bürgeramt", aliases: ["+4930901820"]}\n', 1)
    .replace(SIP_LINE, SIP_LINE[:-1] + ', trunks: [{id: pbx, registrar: "127.0.0.1:9", registers: false, user: gateway}]}')
)

def call_with_headers(caller: str, to: str, headers: list[str]) -> str:
    """A carrier's call naming its number in its own way: INVITE with `headers`, 200, ACK, 4 s, BYE."""
    to_addr = f"<sip:{to}@carrier.example>"
    return sc.scenario(
        "a carrier's call naming its number in its own way",
        sc.invite(caller, to_addr, headers),
        '  <recv response="180" optional="true"/>',
        sc.answer(200),
        sc.ack(caller, to_addr),
        sc.pause(4000),
        sc.bye(2, caller, to_addr),
    )


@pytest.mark.parametrize(
    ("request_user", "to", "headers"),
    [
        ("trunk-contact", "trunk-contact", ["P-Called-Party-ID: <tel:+4930901820>"]),  # the network says it
        ("trunk-contact", "030901820", []),  # only To names it, nationally
        ("0049-30-901820", "trunk-contact", []),  # the Request-URI, internationally
        ("trunk-contact", "trunk-contact", ["Diversion: <sip:0309011111@carrier.example>;reason=unconditional, <sip:004930901820@carrier.example>;reason=no-answer"]),
    ],
    ids=["p-called-party-id", "to-national", "request-uri-international", "diversion-original"],
)
def test_a_call_over_the_trunk_finds_its_room_by_the_number_in_e164(request_user: str, to: str, headers: list[str], tmp_path: Path) -> None:
    """A trunk that does not register (a PBX that knows our address) is told by its address; its
    calls route by P-Called-Party-ID, the Request-URI, To, then the original number of a diversion,
    each as it came or in E.164 (030 -> +4930, 0049 -> +49): the citizen office's number
    +4930901820 reaches its room whichever header carries it, written however the carrier writes it."""
    gateway = start_gateway(tmp_path, OFFICE_CONFIG)
    scenario = tmp_path / "call.xml"
    scenario.write_text(call_with_headers(CITIZEN, to, headers))
    try:
        call = Sipp(gateway, tmp_path / "sipp", str(scenario), request_user)
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "buergeramt")), 20, what="the citizen in the Bürgeramt")
        assert participants(gateway, "demo") == []
        result = call.wait(60)
        assert result.returncode == 0, result.describe()
    finally:
        stop_and_check(gateway)




def test_a_trunk_bound_to_its_rooms_reaches_no_other(tmp_path: Path) -> None:
    """The citizen office's trunk may reach only the Bürgeramt (`rooms`): its call to the demo
    room's number is refused as if no room had it (404), its call to its own number lands."""
    config = OFFICE_CONFIG.replace("registers: false, user: gateway}", "registers: false, user: gateway, rooms: [buergeramt]}").replace(
        "sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, menu: false,"
    )
    assert "rooms: [buergeramt]" in config and "menu: false" in config
    gateway = start_gateway(tmp_path, config)
    refused = tmp_path / "refused.xml"
    to_addr = "<sip:[service]@carrier.example>"
    refused.write_text(sc.scenario("refused", sc.invite(CITIZEN, to_addr), sc.answer(404), sc.ack(CITIZEN, to_addr)))
    landing = tmp_path / "call.xml"
    landing.write_text(call_with_headers(CITIZEN, "030901820", []))
    try:
        result = Sipp(gateway, tmp_path / "refused", str(refused), "4711").wait(30)
        assert result.returncode == 0, result.describe()  # (404: sipp checked it)
        assert participants(gateway, "demo") == []
        call = Sipp(gateway, tmp_path / "sipp", str(landing), "trunk-contact")
        wait_until(lambda: any(p.get("kind") == "phone" for p in participants(gateway, "buergeramt")), 20, what="the citizen in the Bürgeramt")
        assert call.wait(60).returncode == 0
    finally:
        stop_and_check(gateway)


@pytest.mark.parametrize(
    ("caller", "headers", "shown", "number"),
    [
        # From says one thing, the carrier's network asserts the real one (RFC 3325): believed from a
        # trunk, shown masked to the room, whole to administrators
        ('<sip:0301111111@carrier.example>', ["P-Asserted-Identity: <sip:01701234567@carrier.example>"], "+49170•••••67", "+491701234567"),
        # the caller withheld the number (RFC 3323): a label for everyone, no number anywhere
        ('"Citizen" <sip:+4917012345678@carrier.example>', ["Privacy: id", "P-Asserted-Identity: <tel:+4917012345678>"], "Withheld number", None),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', [], "Withheld number", None),
    ],
    ids=["asserted-masked", "privacy-id", "anonymous"],
)
def test_a_citizens_number_is_masked_for_the_room_whole_for_administrators_and_withheld_when_asked(
    caller: str, headers: list[str], shown: str, number: str | None, tmp_path: Path
) -> None:
    gateway = start_gateway(tmp_path, OFFICE_CONFIG)
    scenario = tmp_path / "call.xml"
    scenario.write_text(call_with_headers(caller, "gateway", ["P-Called-Party-ID: <tel:+4930901820>", *headers]))
    try:
        call = Sipp(gateway, tmp_path / "sipp", str(scenario), "gateway")
        found = wait_until(lambda: [p for p in participants(gateway, "buergeramt") if p.get("kind") == "phone"], 20, what="the caller in the room")
        assert isinstance(found, list)
        (person,) = found
        assert person["name"] == shown
        assert person.get("number") == number  # (the API is the administrators')
        result = call.wait(60)
        assert result.returncode == 0, result.describe()
    finally:
        stop_and_check(gateway)
    log = gateway.log_path.read_text()
    for secret in ("01701234567", "1701234567", "17012345678"):
        assert secret not in log, "a caller's number in the log"
