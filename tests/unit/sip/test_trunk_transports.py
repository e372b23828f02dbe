"""Trunks over TCP and TLS, sans-IO: RFC 5626 CRLF keep-alives on a stream (the framer tells pings
from pongs), the registration's reaction to a missing pong or a lost connection, what the user
agent writes for connection-oriented transports and an outbound proxy (Via alias, Contact
;transport=, the loose Route, also on CANCEL and the ACK of a failure), a connection that cannot be
opened as an immediate 503, RFC 3263 for tcp and tls, and the trunk adapter driving all of it (a
stack that only notes what it is asked)."""

from __future__ import annotations

import asyncio
import random
import types
from typing import Any

import pytest

from gateway.config import SipConfig, TrunkConfig
from gateway.sip import message, registration
from gateway.sip.dns import Naptr, Resolution, Srv, Target, resolve
from gateway.sip.message import StreamFramer
from gateway.sip.registration import PONG_TIMEOUT_S, Registration, RegistrationStatus
from gateway.sip.transport import StreamEvent
from gateway.sip.trunks import TrunkRegistrations
from gateway.sip.useragent import CallEnded, Peer, ResponseReceived, UserAgent
from tests.unit.sip.test_dns import FakeDns, shown

INVITE = (
    b"INVITE sip:4711@gw SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.5:5060;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\n"
    b"To: <sip:4711@gw>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)

# -- the framer: pings and pongs between messages ----------------------------------------------------


def test_a_double_crlf_is_a_ping_a_single_one_a_pong_and_neither_a_message() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.take_keepalives() == (1, 0)
    assert framer.feed(b"\r\n") == [] and framer.take_keepalives() == (0, 1)
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + INVITE + b"\r\n\r\n") == [INVITE]
    assert framer.take_keepalives() == (1, 1)  # (a pong before the message, a ping after it)
    assert framer.take_keepalives() == (0, 0)


def test_a_cr_cut_from_its_lf_waits_for_it() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE + b"\r") == [INVITE] and framer.take_keepalives() == (0, 0)
    assert framer.feed(b"\n\r\n" + INVITE[:10]) == [] and framer.take_keepalives() == (1, 0)
    assert framer.feed(INVITE[10:]) == [INVITE]


def test_pongs_one_after_the_other_are_pongs_each_counted_as_it_comes() -> None:
    framer = StreamFramer()
    for _ in range(3):
        framer.feed(b"\r\n")
        assert framer.take_keepalives() == (0, 1)
    framer.feed(b"\r")  # (a CR alone: its LF may follow)
    assert framer.take_keepalives() == (0, 0)
    framer.feed(b"\n")
    assert framer.take_keepalives() == (0, 1)


def test_bare_line_feeds_are_skipped_as_before_and_count_as_nothing() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\n\n" + INVITE) == [INVITE] and framer.take_keepalives() == (0, 0)


# -- the registration: pings, pongs, a failed flow -----------------------------------------------------


def registered(keepalive_s: float = 30.0) -> Registration:
    reg = Registration(
        registrar="sip:trunk.example", aor="sip:4711@trunk.example", contact="sip:4711@192.0.2.1:5060;transport=tcp",
        credentials=None, expires_s=600, keepalive_s=keepalive_s,
    )  # fmt: skip
    reg.start(0.0)
    reg.build(0.0)
    ok = message.SipMessage(status=200, reason="OK")
    ok.add("expires", "600")
    reg.answered(200, ok, 0.1)
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.keepalive_due == pytest.approx(30.1)
    return reg


def test_a_pong_in_time_answers_the_ping_and_the_next_comes_after_keepalive_s() -> None:
    reg = registered()
    reg.ping_sent(30.1)
    assert reg.keepalive_due is None and reg.pong_due == pytest.approx(30.1 + PONG_TIMEOUT_S)
    reg.pong_missed(35.0)  # (not due yet: nothing)
    reg.pong_received(30.2)
    assert reg.pong_due is None and reg.keepalives_answered == 1 and reg.keepalive_due == pytest.approx(60.2)
    reg.pong_received(31.0)  # (a pong nobody asked for counts nothing)
    assert reg.keepalives_answered == 1
    assert reg.state.status is RegistrationStatus.REGISTERED


def test_no_pong_within_10_s_registers_again_at_once() -> None:
    reg = registered()
    reg.ping_sent(30.1)
    reg.pong_missed(30.1 + PONG_TIMEOUT_S)
    state = reg.state
    assert state.status is RegistrationStatus.FAILING and state.last_status == 408 and "no pong" in state.reason
    assert reg.due == pytest.approx(40.1) and reg.pong_due is None and reg.keepalive_due is None
    uri, headers = reg.build(40.1)  # the REGISTER again, no backoff
    assert uri == "sip:trunk.example" and dict(headers)["contact"] == "<sip:4711@192.0.2.1:5060;transport=tcp>;expires=600"


def test_a_lost_connection_registers_again_at_once_only_while_registered() -> None:
    reg = registered()
    reg.flow_failed(503, "connection to the registrar closed", 12.0)
    assert (reg.state.status, reg.state.last_status, reg.due) == (RegistrationStatus.FAILING, 503, 12.0)
    reg.flow_failed(503, "again", 12.5)  # (failing already: nothing more)
    assert reg.state.reason == "connection to the registrar closed" and reg.state.failures == 1


def test_a_refresh_while_a_ping_is_out_does_not_start_a_second_ping() -> None:
    reg = registered()
    reg.ping_sent(30.1)
    reg.due = 31.0
    reg.build(31.0)
    ok = message.SipMessage(status=200, reason="OK")
    ok.add("expires", "600")
    reg.answered(200, ok, 31.1)
    assert reg.keepalive_due is None and reg.pong_due == pytest.approx(40.1)
    reg.pong_received(31.2)
    assert reg.keepalive_due == pytest.approx(61.2)


def test_a_transport_error_without_alternatives_is_a_failure_named_by_its_reason() -> None:
    reg = Registration(registrar="sip:t.example", aor="sip:1@t.example", contact="sip:1@192.0.2.1:5060", credentials=None)
    reg.start(0.0)
    reg.build(0.0)
    assert reg.answered(503, None, 0.0, alternatives=1, reason="tcp connection refused") is True
    assert "tcp connection refused" in reg.state.reason
    reg.build(0.0)
    reg.answered(503, None, 0.1, reason="tcp connection refused")
    assert (reg.state.status, reg.state.last_status, reg.state.reason) == (RegistrationStatus.FAILING, 503, "tcp connection refused")


# -- the user agent: Via, Contact, Route; transport errors --------------------------------------------


def agent() -> UserAgent:
    return UserAgent(local={"udp": ("192.0.2.1", 5060), "tcp": ("192.0.2.1", 5060), "tls": ("192.0.2.1", 5061)})


def sent(ua: UserAgent) -> list[tuple[message.SipMessage, Peer]]:
    return [(message.parse(data), peer) for data, peer in ua.datagrams_to_send(0.0)]


REGISTRAR = ("192.0.2.9", 5060)
HEADERS = [("from", "<sip:4711@t.example>;tag=1"), ("to", "<sip:4711@t.example>"), ("call-id", "r1"), ("cseq", "1 REGISTER")]
OPTIONS = [*HEADERS[:3], ("cseq", "1 OPTIONS")]


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_over_a_connection_via_says_the_transport_with_alias_and_contact_its_transport(transport: str) -> None:
    ua = agent()
    peer = Peer(transport, REGISTRAR)
    ua.request("REGISTER", "sip:t.example", peer, HEADERS)
    ua.invite("sip:4712@t.example", peer, "v=0\r\n")
    (register, to), (invite, _) = sent(ua)
    port = 5061 if transport == "tls" else 5060
    assert to == peer and (register.get("via") or "").startswith(f"SIP/2.0/{transport.upper()} 192.0.2.1:{port};branch=")
    assert (register.get("via") or "").endswith(";rport;alias")  # RFC 5923: requests for our sent-by may come back on it
    assert invite.get("contact") == f"<sip:gateway@192.0.2.1:{port};transport={transport}>"
    assert register.get("route") is None and invite.get("route") is None


def test_over_udp_no_alias() -> None:
    ua = agent()
    ua.request("OPTIONS", "sip:t.example", Peer("udp", REGISTRAR), OPTIONS)
    ((options, _),) = sent(ua)
    assert (options.get("via") or "").endswith(";rport")


def test_an_outbound_proxys_loose_route_on_requests_outside_dialogs_cancel_and_the_ack_of_a_failure() -> None:
    ua = agent()
    proxy = Peer("tcp", ("192.0.2.20", 5070))
    ua.preloaded_routes[("tcp", proxy.address)] = "<sip:proxy.example:5070;transport=tcp;lr>"
    ua.request("REGISTER", "sip:t.example", proxy, HEADERS)
    call = ua.invite("sip:4712@t.example", proxy, "v=0\r\n")
    (register, _), (invite, _) = sent(ua)
    assert register.uri == "sip:t.example" and register.get("route") == "<sip:proxy.example:5070;transport=tcp;lr>"
    assert invite.uri == "sip:4712@t.example" and invite.get("route") == "<sip:proxy.example:5070;transport=tcp;lr>"
    ua.request("OPTIONS", "sip:t.example", Peer("tcp", REGISTRAR), OPTIONS)  # (elsewhere: no route)
    ((options, _),) = sent(ua)
    assert options.get("route") is None
    # the callee rings, the call is given up: the CANCEL carries the INVITE's Route (RFC 3261 9.1)
    ringing = response_to(invite, 180, "Ringing", to_tag="t1")
    ua.receive(ringing, proxy, 1.0)
    ua.hang_up(call)
    ((cancel, _),) = sent(ua)
    assert cancel.method == "CANCEL" and cancel.get("route") == invite.get("route")
    # its 487 is ACKed hop by hop, with the same Route (RFC 3261 17.1.1.3)
    ua.receive(response_to(invite, 487, "Request Terminated", to_tag="t1"), proxy, 1.1)
    acks = [m for m, _ in sent(ua) if m.method == "ACK"]
    assert acks and acks[0].get("route") == invite.get("route")


def response_to(request: message.SipMessage, status: int, reason: str, to_tag: str) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("via", "from", "call-id", "cseq"):
        lines.append(f"{message.canonical(name)}: {request.get(name)}")
    lines.append(f"To: {request.get('to')};tag={to_tag}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_transport_error_ends_what_waits_for_that_destination_at_once_as_a_503() -> None:
    ua = agent()
    peer = Peer("tls", REGISTRAR)
    branch = ua.request("REGISTER", "sip:t.example", peer, HEADERS)
    other = ua.request("OPTIONS", "sip:t.example", Peer("tls", ("192.0.2.99", 5061)), OPTIONS)
    call = ua.invite("sip:4712@t.example", peer, "v=0\r\n")
    sent(ua)
    ua.transport_error(peer, "tls connection to 192.0.2.9:5060 failed: certificate not accepted", 0.5)
    events = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    assert ResponseReceived(branch, 503, "tls connection to 192.0.2.9:5060 failed: certificate not accepted", None) in events
    assert any(isinstance(e, CallEnded) and e.call == call and e.status == 503 for e in events)
    assert not any(isinstance(e, ResponseReceived) and e.branch == other for e in events)  # (another destination)
    assert ua.calls == {}
    ua.handle_timer(40.0)  # nothing more comes of them: no 408 later
    late = []
    while (event := ua.next_event()) is not None:
        late.append(event)
    assert [e for e in late if isinstance(e, ResponseReceived) and e.branch == branch] == []


# -- RFC 3263 for tcp and tls ---------------------------------------------------------------------------


async def test_naptr_sip_d2t_and_sips_d2t_are_followed_for_tcp_and_tls_trunks() -> None:
    naptr = {
        "trunk.example": [
            Naptr(10, 10, "S", "SIPS+D2T", "", "_sips._tcp.trunk.example."),
            Naptr(20, 10, "S", "SIP+D2T", "", "_sip._tcp.trunk.example."),
            Naptr(30, 10, "S", "SIP+D2U", "", "_sip._udp.trunk.example."),
        ]
    }
    srv = {
        "_sips._tcp.trunk.example": [Srv(10, 0, 5061, "tls.trunk.example.")],
        "_sip._tcp.trunk.example": [Srv(10, 0, 5060, "tcp.trunk.example.")],
        "_sip._udp.trunk.example": [Srv(10, 0, 5060, "udp.trunk.example.")],
    }
    a = {"tls.trunk.example": ["192.0.2.61"], "tcp.trunk.example": ["192.0.2.60"], "udp.trunk.example": ["192.0.2.50"]}
    for transport, expected in (("tls", Target("tls", "192.0.2.61", 5061, "tls.trunk.example")), ("tcp", Target("tcp", "192.0.2.60", 5060, "tcp.trunk.example"))):
        found = await resolve("trunk.example", None, FakeDns(naptr=naptr, srv=srv, a=a), transports=(transport,), rng=random.Random(1))
        assert found.targets == (expected,)


@pytest.mark.parametrize(("transport", "srv_name"), [("tcp", "_sip._tcp.trunk.example"), ("tls", "_sips._tcp.trunk.example")])
async def test_without_naptr_the_transports_srv_name_is_asked(transport: str, srv_name: str) -> None:
    lookup = FakeDns(srv={srv_name: [Srv(10, 0, 5090, "edge.trunk.example.")]}, a={"edge.trunk.example": ["192.0.2.70"]})
    found = await resolve("trunk.example", None, lookup, transports=(transport,))
    assert shown(found) == ["192.0.2.70:5090"] and found.targets[0].transport == transport
    assert ("SRV", srv_name) in lookup.asked


@pytest.mark.parametrize(("transport", "port"), [("tcp", 5060), ("tls", 5061)])
async def test_default_ports_for_tcp_and_tls(transport: str, port: int) -> None:
    assert shown(await resolve("192.0.2.7", None, FakeDns(), transports=(transport,))) == [f"192.0.2.7:{port}"]
    found = await resolve("trunk.example", None, FakeDns(a={"trunk.example": ["192.0.2.8"]}), transports=(transport,))
    assert shown(found) == [f"192.0.2.8:{port}"]


# -- the trunk adapter over a connection --------------------------------------------------------------


class Stack:
    """Notes what the trunks ask of the SIP stack."""

    def __init__(self) -> None:
        self.ua = types.SimpleNamespace(local_address=lambda peer: ("192.0.2.1", 5061 if peer.transport == "tls" else 5060))
        self.stream_listeners: list[Any] = []
        self.sent: list[tuple[str, str, Peer, dict[str, str]]] = []  # (branch, method, peer, headers)
        self.reached: dict[tuple[str, tuple[str, int]], dict[str, Any]] = {}
        self.pings: list[tuple[str, tuple[str, int]]] = []
        self.closed: list[tuple[str, tuple[str, int]]] = []
        self.flow_up = True

    def reach(self, transport: str, address: tuple[str, int], **how: Any) -> Peer:
        self.reached[(transport, address)] = how
        return Peer(transport, address)

    def request(self, method: str, uri: str, peer: Peer, headers: list[tuple[str, str]]) -> str:
        branch = f"z9hG4bK-{len(self.sent)}"
        self.sent.append((branch, method, peer, {"uri": uri, **dict(headers)}))
        return branch

    def ping(self, transport: str, address: tuple[str, int]) -> bool:
        self.pings.append((transport, address))
        return self.flow_up

    def close_flow(self, transport: str, address: tuple[str, int]) -> None:
        self.closed.append((transport, address))

    def tell(self, event: StreamEvent) -> None:
        for listener in self.stream_listeners:
            listener(event)


class Resolver:
    def __init__(self, targets: dict[str, list[Target]]) -> None:
        self.targets = targets
        self.asked: list[tuple[str, int | None, tuple[str, ...]]] = []

    async def resolve(self, host: str, port: int | None, transports: Any = ("udp",)) -> Resolution:
        self.asked.append((host, port, tuple(transports)))
        return Resolution(tuple(self.targets.get(host, [])))


REGISTRAR_TCP = Target("tcp", "192.0.2.9", 5060, "trunk.example")


def trunks(stack: Stack, resolver: Resolver, **trunk: Any) -> TrunkRegistrations:
    settings = {"id": "carrier", "registrar": "trunk.example", "user": "4711", "password": "pw", "keepalive_s": 30, **trunk}
    config = SipConfig(trunks=[TrunkConfig(**settings)])
    return TrunkRegistrations(config, stack, resolver=resolver)  # type: ignore[arg-type]


async def sends(stack: Stack, count: int) -> tuple[str, str, Peer, dict[str, str]]:
    for _ in range(200):
        if len(stack.sent) >= count:
            return stack.sent[count - 1]
        await asyncio.sleep(0)
    raise AssertionError(f"nothing sent (sent: {stack.sent})")


def ok(registrations: TrunkRegistrations, branch: str, contact: str) -> None:
    answer = message.SipMessage(status=200, reason="OK")
    answer.add("contact", f"<{contact}>;expires=600")
    assert registrations.on_response(ResponseReceived(branch, 200, "OK", answer))


def state(registrations: TrunkRegistrations) -> dict[str, Any]:
    (only,) = registrations.states()
    return only


async def registered_over_tcp(stack: Stack, **trunk: Any) -> TrunkRegistrations:
    registrations = trunks(stack, Resolver({"trunk.example": [REGISTRAR_TCP]}), transport="tcp", **trunk)
    registrations.start()
    branch, method, peer, headers = await sends(stack, 1)
    assert (method, peer) == ("REGISTER", Peer("tcp", REGISTRAR_TCP.peer_address))
    assert headers["contact"] == "<sip:4711@192.0.2.1:5060;transport=tcp>;expires=600"
    ok(registrations, branch, "sip:4711@192.0.2.1:5060;transport=tcp")
    assert state(registrations)["status"] == "registered" and state(registrations)["transport"] == "tcp"
    return registrations


async def test_over_tcp_the_keepalive_is_a_crlf_ping_answered_by_a_pong_no_options() -> None:
    stack = Stack()
    registrations = await registered_over_tcp(stack)
    loop = asyncio.get_running_loop()
    trunk = registrations._trunks["carrier"]
    assert trunk.keepalive_timer is not None and trunk.keepalive_timer.when() == pytest.approx(loop.time() + 30, abs=0.5)
    trunk.keepalive_timer._run()  # (its time has come)
    assert stack.pings == [("tcp", REGISTRAR_TCP.peer_address)] and trunk.pong_timer is not None
    stack.tell(StreamEvent("pong", "tcp", REGISTRAR_TCP.peer_address))
    assert trunk.pong_timer is None and state(registrations)["keepalives_answered"] == 1
    assert [m for _, m, _, _ in stack.sent] == ["REGISTER"]  # (never an OPTIONS over a connection)
    await registrations.stop(timeout_s=0)


async def test_no_pong_closes_that_connection_and_registers_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registration, "PONG_TIMEOUT_S", 0.05)
    stack = Stack()
    registrations = await registered_over_tcp(stack)
    trunk = registrations._trunks["carrier"]
    assert trunk.keepalive_timer is not None
    trunk.keepalive_timer._run()
    assert trunk.pong_timer is not None
    for _ in range(100):
        if trunk.pong_timer is None:
            break
        await asyncio.sleep(0.01)
    assert stack.closed == [("tcp", REGISTRAR_TCP.peer_address)]
    shown_state = state(registrations)
    assert shown_state["status"] == "failing" and "no pong" in shown_state["reason"]
    _, method, peer, _ = await sends(stack, 2)  # at once, not after a backoff
    assert (method, peer) == ("REGISTER", Peer("tcp", REGISTRAR_TCP.peer_address))
    await registrations.stop(timeout_s=0)


async def test_a_closed_connection_or_none_to_ping_on_registers_again_at_once() -> None:
    stack = Stack()
    registrations = await registered_over_tcp(stack)
    stack.tell(StreamEvent("closed", "tcp", ("192.0.2.77", 5060)))  # (another destination's: nothing)
    assert state(registrations)["status"] == "registered"
    stack.tell(StreamEvent("closed", "tcp", REGISTRAR_TCP.peer_address))
    assert state(registrations)["status"] == "failing" and state(registrations)["reason"] == "connection to the registrar closed"
    branch, method, _, _ = await sends(stack, 2)
    assert method == "REGISTER"
    ok(registrations, branch, "sip:4711@192.0.2.1:5060;transport=tcp")
    trunk = registrations._trunks["carrier"]
    stack.flow_up = False  # the keep-alive finds no connection
    assert trunk.keepalive_timer is not None
    trunk.keepalive_timer._run()
    assert state(registrations)["status"] == "failing"
    assert (await sends(stack, 3))[1] == "REGISTER"
    await registrations.stop(timeout_s=0)


async def test_a_connection_that_cannot_be_opened_fails_over_to_the_next_target_at_once() -> None:
    stack = Stack()
    second = Target("tcp", "192.0.2.10", 5060, "trunk.example")
    registrations = trunks(stack, Resolver({"trunk.example": [REGISTRAR_TCP, second]}), transport="tcp")
    registrations.start()
    branch, _, _, _ = await sends(stack, 1)
    # (what the user agent reports for a REGISTER whose connection was refused)
    assert registrations.on_response(ResponseReceived(branch, 503, "tcp connection to 192.0.2.9:5060 failed: refused", None))
    _, method, peer, _ = await sends(stack, 2)
    assert (method, peer.address) == ("REGISTER", second.peer_address)
    assert "failed: refused" in state(registrations)["reason"]
    await registrations.stop(timeout_s=0)


async def test_tls_trunk_connections_check_the_registrars_name_with_its_ca() -> None:
    stack = Stack()
    target = Target("tls", "192.0.2.9", 5061, "edge.trunk.example")
    registrations = trunks(stack, Resolver({"trunk.example": [target]}), transport="tls")
    registrations.start()
    _, _, peer, headers = await sends(stack, 1)
    assert peer == Peer("tls", target.peer_address)
    assert headers["contact"] == "<sip:4711@192.0.2.1:5061;transport=tls>;expires=600"
    how = stack.reached[("tls", target.peer_address)]
    assert how["server_name"] == "trunk.example" and how["route"] is None  # RFC 5922: the configured host, not the SRV target
    context = how["ssl_context"]
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"
    await registrations.stop(timeout_s=0)


async def test_an_outbound_proxy_is_the_next_hop_the_request_uri_stays_the_registrars() -> None:
    stack = Stack()
    proxy = Target("tcp", "192.0.2.30", 5070, "proxy.example")
    resolver = Resolver({"proxy.example": [proxy]})
    registrations = trunks(stack, resolver, transport="tcp", outbound_proxy="proxy.example:5070", domain="carrier.example")
    registrations.start()
    _, method, peer, headers = await sends(stack, 1)
    assert resolver.asked == [("proxy.example", 5070, ("tcp",))]  # (the registrar's name is the proxy's business)
    assert (method, peer.address, headers["uri"]) == ("REGISTER", proxy.peer_address, "sip:carrier.example")
    assert stack.reached[("tcp", proxy.peer_address)]["route"] == "<sip:proxy.example:5070;transport=tcp;lr>"
    assert stack.reached[("tcp", proxy.peer_address)]["server_name"] == "proxy.example"
    # a dial-out through the trunk goes the same way
    assert await registrations.peer_for(registrations._trunks["carrier"].config) == Peer("tcp", proxy.peer_address)
    await registrations.stop(timeout_s=0)


async def test_a_trunk_that_does_not_register_is_dialled_at_its_resolved_next_hop() -> None:
    stack = Stack()
    pbx = Target("tls", "192.0.2.40", 5061, "pbx.example")
    config = TrunkConfig(id="pbx", registrar="pbx.example", user="gw", registers=False, transport="tls")  # type: ignore[call-arg]
    registrations = TrunkRegistrations(SipConfig(trunks=[config]), stack, resolver=Resolver({"pbx.example": [pbx]}))  # type: ignore[arg-type]
    assert await registrations.peer_for(config) == Peer("tls", pbx.peer_address)
    assert stack.reached[("tls", pbx.peer_address)]["server_name"] == "pbx.example"
    unresolved = TrunkConfig(id="nowhere", registrar="nowhere.example", user="gw", registers=False)  # type: ignore[call-arg]
    assert await registrations.peer_for(unresolved) is None
