"""The gateway as registrar for its directory's room systems (RFC 3261 10.3), sans-IO: REGISTERs
written as a room system would (answered with our own digest client), a fake clock."""

from __future__ import annotations

import pytest

from gateway.sip import message
from gateway.sip.digest import DigestClient, parse_challenge
from gateway.sip.message import SipMessageError
from gateway.sip.registrar import MAX_EXPIRES, MAX_FAILURES, Account, Answer, Registrar

BOARD = Account("boardroom", "boardroom", "Raum-Geheimnis-7")
SOURCE = ("192.0.2.50", 5062)


def registrar(changes: list[str] | None = None) -> Registrar:
    accounts = {BOARD.user: BOARD}
    return Registrar("gateway.example", accounts.get, on_change=(changes.append if changes is not None else None))


def register(
    user: str = "boardroom",
    contact: str = "<sip:boardroom@192.0.2.50:5062>",
    expires: str | None = "600",
    authorization: str | None = None,
    cseq: int = 1,
    call_id: str = "reg-1@192.0.2.50",
) -> message.SipMessage:
    lines = [
        "REGISTER sip:gateway.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKreg" + str(cseq),
        f"From: <sip:{user}@gateway.example>;tag=r1",
        f"To: <sip:{user}@gateway.example>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "User-Agent: Room Kit",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return message.parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


def answered(challenge: Answer, user: str = "boardroom", password: str = BOARD.password) -> str:
    """Our digest client's answer to the registrar's strongest challenge."""
    assert challenge.status == 401
    offered = [parse_challenge(v) for k, v in challenge.headers if k == "www-authenticate"]
    assert [c.algorithm for c in offered] == ["SHA-256", "MD5"]
    return DigestClient(user, password).authorization(offered[0], "REGISTER", "sip:gateway.example")


def registered(reg: Registrar, now: float = 0.0, **kwargs: object) -> Answer:
    challenge = reg.handle(register(**kwargs), "udp", SOURCE, now)  # type: ignore[arg-type]
    return reg.handle(register(authorization=answered(challenge), cseq=2, **kwargs), "udp", SOURCE, now)  # type: ignore[arg-type]


def test_a_room_system_registers_with_digest_and_is_reachable_where_it_registered_from() -> None:
    changes: list[str] = []
    reg = registrar(changes)
    ok = registered(reg)
    assert (ok.status, ok.headers) == (200, [("contact", "<sip:boardroom@192.0.2.50:5062>;expires=600")])
    binding = reg.binding("boardroom", 10.0)
    assert binding is not None and (binding.contact, binding.source, binding.user_agent) == (
        "sip:boardroom@192.0.2.50:5062",
        SOURCE,
        "Room Kit",
    )
    assert changes == ["boardroom"]
    assert reg.binding("boardroom", 600.0) is None and changes == ["boardroom", "boardroom"]  # expired


def test_every_register_without_credentials_is_challenged_known_or_not() -> None:
    reg = registrar()
    for user in ("boardroom", "nobody"):
        challenge = reg.handle(register(user=user), "udp", SOURCE, 0.0)
        assert challenge.status == 401 and all(k == "www-authenticate" for k, _ in challenge.headers)


@pytest.mark.parametrize(
    ("user", "password"),
    [("boardroom", "wrong"), ("nobody", BOARD.password)],
    ids=["wrong-password", "unknown-device"],
)
def test_a_wrong_password_or_an_unknown_device_gets_403_and_no_binding(user: str, password: str) -> None:
    reg = registrar()
    challenge = reg.handle(register(user=user), "udp", SOURCE, 0.0)
    refused = reg.handle(register(user=user, authorization=answered(challenge, user, password), cseq=2), "udp", SOURCE, 0.0)
    assert refused.status == 403 and reg.bindings(1.0) == {}


def test_a_source_that_keeps_guessing_is_refused_for_a_while() -> None:
    reg = registrar()
    for attempt in range(MAX_FAILURES):
        challenge = reg.handle(register(cseq=2 * attempt + 1), "udp", SOURCE, float(attempt))
        wrong = register(authorization=answered(challenge, password=f"guess{attempt}"), cseq=2 * attempt + 2)
        assert reg.handle(wrong, "udp", SOURCE, float(attempt)).status == 403
    # now that source gets no challenge to answer, until the window has passed
    assert reg.handle(register(), "udp", SOURCE, 20.0) == Answer(403, "Forbidden (too many failed attempts)")
    assert registered(reg, now=400.0).status == 200
    assert reg.handle(register(), "udp", ("192.0.2.99", 5060), 20.0).status == 401  # others are not locked out


def test_expiry_is_bounded_and_a_too_brief_one_gets_423() -> None:
    reg = registrar()
    assert registered(reg, expires="30").headers == [("min-expires", "60")]
    ok = registered(reg, expires="999999")
    assert ok.headers == [("contact", f"<sip:boardroom@192.0.2.50:5062>;expires={MAX_EXPIRES}")]
    ok = registered(reg, contact="<sip:boardroom@192.0.2.50:5062>;expires=120", expires=None, call_id="reg-2")
    assert ok.headers == [("contact", "<sip:boardroom@192.0.2.50:5062>;expires=120")]


def test_expires_zero_and_contact_star_remove_the_binding() -> None:
    reg = registrar()
    registered(reg)
    assert registered(reg, expires="0", call_id="reg-2").status == 200 and reg.binding("boardroom", 1.0) is None
    registered(reg, call_id="reg-3")
    assert registered(reg, contact="*", expires="0", call_id="reg-4").status == 200
    assert reg.binding("boardroom", 1.0) is None


def test_a_register_out_of_order_is_refused_and_garbage_raises_for_a_400() -> None:
    reg = registrar()
    registered(reg)  # CSeq 2 on reg-1
    challenge = reg.handle(register(cseq=1), "udp", SOURCE, 1.0)
    stale = reg.handle(register(authorization=answered(challenge), cseq=1), "udp", SOURCE, 1.0)
    assert stale.status == 500
    challenge = reg.handle(register(cseq=5), "udp", SOURCE, 1.0)
    with pytest.raises(SipMessageError):
        reg.handle(register(contact="*", expires="60", authorization=answered(challenge), cseq=6), "udp", SOURCE, 1.0)
    with pytest.raises(SipMessageError):
        reg.handle(register(contact="<not a uri", authorization=answered(challenge), cseq=7), "udp", SOURCE, 1.0)


def test_a_replayed_register_is_refused() -> None:
    """The same Authorization again (nonce count not raised) is a replay, not a registration."""
    reg = registrar()
    challenge = reg.handle(register(), "udp", SOURCE, 0.0)
    authorization = answered(challenge)
    assert reg.handle(register(authorization=authorization, cseq=2), "udp", SOURCE, 0.0).status == 200
    assert reg.handle(register(authorization=authorization, cseq=3), "udp", SOURCE, 0.0).status == 403


def test_the_workers_of_one_machine_share_their_bindings_over_udp() -> None:
    """Worker a takes the REGISTER and tells worker b (as the backplane carries it: JSON), which
    then finds the binding for a dial-out; an unregister is told too; a binding over TCP is not (its
    connection is a's), and what comes in malformed is refused."""
    import json

    from gateway.sip.registrar import binding_from_wire, binding_to_wire

    a, b = registrar(), registrar()
    told: list[tuple[str, object]] = []
    a.share = lambda system, binding: told.append((system, json.loads(json.dumps(binding_to_wire(binding))) if binding else None))
    assert registered(a, now=10.0).status == 200
    system, wire = told[-1]
    b.learn(system, binding_from_wire(wire))
    found = b.binding("boardroom", 11.0)
    assert found is not None and found.source == SOURCE and found.contact == "sip:boardroom@192.0.2.50:5062"
    assert b.binding("boardroom", 10.0 + 601) is None  # (it expires on b's clock as on a's)
    a.forget("boardroom")  # (the entry lost its password, or the device unregistered)
    assert told[-1] == ("boardroom", None)
    b.learn("boardroom", None)
    assert b.binding("boardroom", 12.0) is None

    tcp = registrar()
    tcp.share = lambda system, binding: told.append((system, binding))
    challenge = tcp.handle(register(), "tcp", SOURCE, 0.0, connection=7)
    tcp.handle(register(authorization=answered(challenge), cseq=2), "tcp", SOURCE, 0.0, connection=7)
    assert told[-1] == ("boardroom", None)  # (b cannot send on a's connection)
    for bad in (None, {}, {**(wire or {}), "transport": "tcp"}, {**(wire or {}), "source": "x"}, {**(wire or {}), "cseq": "1"}):
        with pytest.raises(ValueError):
            binding_from_wire(bad)
