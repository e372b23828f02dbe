"""Keeping a trunk registered, sans-IO (sip/registration.py), against a registrar made of our own
digest server: challenge and answer, refresh before expiry with the nonce counted, 423 with
Min-Expires, wrong password and silence with backoff, stale nonces, unregistering."""

from __future__ import annotations

import pytest

from gateway.sip.digest import DigestClient, DigestServer
from gateway.sip.message import NameAddr, SipMessage
from gateway.sip.registration import Registration, RegistrationStatus

CONTACT = "sip:trunk@192.0.2.10:5060"


class Registrar:
    """A registrar in a few lines: digest with our DigestServer, bindings by Call-ID."""

    def __init__(self, users: dict[str, str], grant: int | None = None, min_expires: int | None = None) -> None:
        self.server = DigestServer("telekom.example")
        self.users = users
        self.grant = grant
        self.min_expires = min_expires
        self.seen: list[dict[str, str]] = []
        self.replies: list[SipMessage] = []

    def __call__(self, uri: str, headers: list[tuple[str, str]]) -> SipMessage:
        request = dict(headers)
        self.seen.append(request)
        reply = self._reply(request)
        self.replies.append(reply)
        return reply

    def _reply(self, request: dict[str, str]) -> SipMessage:
        reply = SipMessage(status=200, reason="OK")
        authorization = request.get("authorization")
        if authorization is None:
            return self._challenge()
        verdict = self.server.verify(authorization, "REGISTER", self.users.get)
        if verdict.stale:
            return self._challenge(stale=True)
        if not verdict.ok:
            return self._challenge()
        expires = int(request["expires"])
        if self.min_expires is not None and 0 < expires < self.min_expires:
            too_brief = SipMessage(status=423, reason="Interval Too Brief")
            too_brief.add("min-expires", str(self.min_expires))
            return too_brief
        granted = min(expires, self.grant) if self.grant is not None else expires
        ours = NameAddr.parse(request["contact"]).uri
        reply.add("contact", f"<sip:someone-else@198.51.100.1>;expires=3600, <{ours}>;expires={granted}")
        return reply

    def _challenge(self, stale: bool = False) -> SipMessage:
        reply = SipMessage(status=401, reason="Unauthorized")
        for value in self.server.challenges(stale=stale):
            reply.add("www-authenticate", value)
        return reply


def registration(password: str = "pw", expires: int = 600) -> Registration:
    return Registration(
        registrar="sip:telekom.example",
        aor="sip:+4930123456@telekom.example",
        contact=CONTACT,
        credentials=DigestClient("+4930123456", password),
        expires_s=expires,
        rng=lambda: 0.0,
    )


def run(reg: Registration, registrar: Registrar, now: float, rounds: int = 5) -> None:
    """Sends what is due at `now` and hands the answers back, until nothing more is due now."""
    for _ in range(rounds):
        if reg.due is None or reg.due > now:
            return
        uri, headers = reg.build(now)
        reply = registrar(uri, headers)
        reg.answered(reply.status, reply, now)


def test_challenged_then_registered_then_refreshed_before_expiry_with_the_nonce_counted() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.state.last_status == 200
    assert reg.state.registered_until == 600 and reg.due == 540  # a minute before the end
    first, second = registrar.seen
    assert "authorization" not in first and "SHA-256" in second["authorization"] and "nc=00000001" in second["authorization"]
    assert first["call-id"] == second["call-id"] and int(second["cseq"].split()[0]) == int(first["cseq"].split()[0]) + 1
    assert second["expires"] == "600" and second["contact"] == f"<{CONTACT}>;expires=600"
    run(reg, registrar, 540.0)
    assert "nc=00000002" in registrar.seen[-1]["authorization"]  # no new challenge needed
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.state.registered_until == 1140


def test_the_registrars_shorter_grant_for_our_contact_sets_the_refresh() -> None:
    registrar = Registrar({"+4930123456": "pw"}, grant=60)
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)
    assert reg.state.registered_until == 60 and reg.due == 30


def test_423_is_answered_with_its_min_expires() -> None:
    registrar = Registrar({"+4930123456": "pw"}, min_expires=1800)
    reg = registration(expires=300)
    reg.start(0.0)
    run(reg, registrar, 0.0)
    assert reg.state.status is RegistrationStatus.REGISTERED
    assert registrar.seen[-1]["expires"] == "1800" and reg.state.registered_until == 1800


def test_a_wrong_password_is_failing_with_backoff_and_no_retry_storm() -> None:
    registrar = Registrar({"+4930123456": "right"})
    reg = registration(password="wrong")
    reg.start(0.0)
    run(reg, registrar, 0.0, rounds=10)
    assert len(registrar.seen) == 2  # the first REGISTER and one answer to its challenge, no more
    assert reg.state.status is RegistrationStatus.FAILING and reg.state.last_status == 401
    assert reg.state.reason == "credentials refused" and reg.due == 5.0
    for step, at in enumerate((5.0, 15.0, 45.0, 105.0, 225.0, 525.0, 825.0)):
        run(reg, registrar, at, rounds=10)
        assert reg.state.failures == step + 2
    assert reg.due == 1125.0  # every 300 s from the sixth failure on


def test_silence_is_a_408_failure_and_the_next_attempt_follows_the_backoff() -> None:
    reg = registration()
    reg.start(0.0)
    reg.build(0.0)
    reg.answered(408, None, 32.0)
    assert reg.state.status is RegistrationStatus.FAILING and reg.state.last_status == 408 and reg.due == 37.0


def test_a_stale_nonce_is_answered_again_at_once() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    clock = [0.0]
    registrar.server = DigestServer("telekom.example", lifetime_s=100, clock=lambda: clock[0])
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)
    clock[0] = 540.0
    run(reg, registrar, 540.0)
    assert "stale=true" in (registrar.replies[-2].get("www-authenticate") or "")
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.state.registered_until == 1140
    assert len(registrar.seen) == 4  # refresh (stale nonce), then the answer to the stale challenge


def test_unregistering_sends_expires_0_and_goes_idle() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)
    reg.stop(10.0)
    uri, headers = reg.build(10.0)
    assert dict(headers)["expires"] == "0" and dict(headers)["contact"].endswith(";expires=0")
    reg.answered(200, SipMessage(status=200, reason="OK"), 10.0)
    assert reg.state.status is RegistrationStatus.IDLE and reg.due is None


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["Basic realm=\"x\""],
        ['Digest realm="x"'],
        ['Digest realm="telekom.example", nonce="n", algorithm=SHA3-999'],
        ["Digest " + "a=b, " * 50],
    ],
)
def test_challenges_we_cannot_answer_are_a_failure_not_a_loop(values: list[str]) -> None:
    reg = registration()
    reg.start(0.0)
    reg.build(0.0)
    reply = SipMessage(status=401, reason="Unauthorized")
    for value in values:
        reply.add("www-authenticate", value)
    reg.answered(401, reply, 0.0)
    assert reg.state.status is RegistrationStatus.FAILING and reg.state.reason == "no digest challenge we can answer"


def test_keepalives_while_registered_and_an_unanswered_one_registers_again_at_once() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    reg = registration()
    reg.keepalive_s = 30
    reg.start(0.0)
    run(reg, registrar, 0.0)
    assert reg.keepalive_due == 30.0
    uri, headers = reg.keepalive_request()
    assert uri == "sip:telekom.example" and dict(headers)["cseq"] == "1 OPTIONS" and reg.keepalive_due is None
    reg.keepalive_answered(405, 30.1)  # any answer: the registrar is there
    assert reg.keepalives_answered == 1 and reg.keepalive_due == pytest.approx(60.1)
    reg.keepalive_request()
    reg.keepalive_answered(408, 92.1)  # none in 64*T1: gone, or the NAT forgot us
    assert reg.state.status is RegistrationStatus.FAILING and reg.state.last_status == 408
    assert "keep-alive" in reg.state.reason and reg.due == 92.1 and reg.keepalive_due is None
    run(reg, registrar, 92.1)
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.keepalive_due == pytest.approx(122.1)


def test_no_keepalives_when_off_or_not_registered() -> None:
    reg = registration()
    reg.start(0.0)
    run(reg, Registrar({"+4930123456": "pw"}), 0.0)
    assert reg.keepalive_due is None  # keepalive_s 0
    failing = registration(password="wrong")
    failing.keepalive_s = 30
    failing.start(0.0)
    run(failing, Registrar({"+4930123456": "pw"}), 0.0)
    assert failing.keepalive_due is None
    failing.keepalive_answered(408, 1.0)  # (a late answer after failing: nothing changes)
    assert failing.state.reason == "credentials refused"


# -- failover between the registrar's addresses (RFC 3263 4.3) ------------------------------------


@pytest.mark.parametrize("status", [408, 503])
def test_no_answer_or_503_with_another_address_left_sends_again_at_once_without_a_failure(status: int) -> None:
    reg = registration()
    reg.start(0.0)
    reg.build(0.0)
    reply = SipMessage(status=503, reason="Service Unavailable") if status == 503 else None
    assert reg.answered(status, reply, 32.0, alternatives=1) is True
    assert reg.state.status is RegistrationStatus.REGISTERING and reg.state.failures == 0
    assert reg.state.last_status == status and "trying the next address" in reg.state.reason
    assert reg.due == 32.0 and not reg.in_flight
    # the next one answers: registered, no failure counted on the way
    run(reg, Registrar({"+4930123456": "pw"}), 32.0)
    assert reg.state.status is RegistrationStatus.REGISTERED and reg.state.failures == 0


def test_when_no_address_is_left_it_is_a_failure_with_backoff() -> None:
    reg = registration()
    reg.start(0.0)
    reg.build(0.0)
    assert reg.answered(408, None, 32.0, alternatives=1)
    reg.build(32.0)
    assert reg.answered(408, None, 64.0, alternatives=0) is False
    assert reg.state.status is RegistrationStatus.FAILING and reg.state.failures == 1 and reg.due == 69.0


@pytest.mark.parametrize("status", [401, 403, 404, 500, 486])
def test_other_answers_do_not_fail_over(status: int) -> None:
    reg = registration()
    reg.start(0.0)
    reg.build(0.0)
    assert reg.answered(status, SipMessage(status=status, reason="No"), 1.0, alternatives=3) is False
    assert reg.state.status is RegistrationStatus.FAILING


def test_a_challenge_of_the_silent_address_is_not_carried_to_the_next() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)  # registered at the first address, its nonce answered
    assert reg.due is not None
    refresh_at = reg.due
    reg.build(refresh_at)
    assert reg.answered(408, None, refresh_at + 32, alternatives=1)
    _, headers = reg.build(refresh_at + 32)
    assert "authorization" not in dict(headers)  # afresh: the next address challenges with its own nonce
    assert reg.keepalive_due is None


def test_unregistering_does_not_fail_over() -> None:
    registrar = Registrar({"+4930123456": "pw"})
    reg = registration()
    reg.start(0.0)
    run(reg, registrar, 0.0)
    reg.stop(10.0)
    reg.build(10.0)
    assert reg.answered(408, None, 42.0, alternatives=2) is False
    assert reg.state.status is RegistrationStatus.IDLE and reg.due is None
