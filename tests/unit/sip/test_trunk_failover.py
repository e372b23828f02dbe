"""Failover between a trunk registrar's addresses in the asyncio adapter (sip/trunks.py), with a
stack that only notes what it is asked to send and a resolver that returns fixed targets: no
answer or 503 from one target sends the REGISTER to the next at once, a refresh stays with the
target in use, a silent keep-alive starts again from the best target, and only when every target
failed does the trunk back off."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from gateway.config import SipConfig, TrunkConfig
from gateway.sip.dns import Resolution, Target
from gateway.sip.message import SipMessage
from gateway.sip.trunks import TrunkRegistrations
from gateway.sip.useragent import Peer, ResponseReceived

PRIMARY = Target("udp", "192.0.2.2", 5060, "primary.trunk.example")
SECONDARY = Target("udp", "192.0.2.3", 5062, "secondary.trunk.example")


class Stack:
    def __init__(self) -> None:
        self.ua = types.SimpleNamespace(local_address=lambda peer: ("127.0.0.1", 5060))
        self.sent: list[tuple[str, str, tuple[str, int]]] = []  # (branch, method, address)
        self.stream_listeners: list[Any] = []

    def reach(self, transport: str, address: tuple[str, int], **how: Any) -> Peer:
        return Peer(transport, address)

    def request(self, method: str, uri: str, peer: Peer, headers: list[tuple[str, str]]) -> str:
        branch = f"z9hG4bK-{len(self.sent)}"
        self.sent.append((branch, method, (str(peer.address[0]), int(peer.address[1]))))
        return branch


class Resolver:
    def __init__(self, *targets: Target) -> None:
        self.targets = list(targets)
        self.asked = 0

    async def resolve(self, host: str, port: int | None, transports: Any = ("udp",)) -> Resolution:
        self.asked += 1
        assert (host, port) == ("trunk.example", None)
        return Resolution(tuple(self.targets), "" if self.targets else "trunk.example: no address")


def trunks(resolver: Resolver, stack: Stack) -> TrunkRegistrations:
    config = SipConfig(
        trunks=[TrunkConfig(id="carrier", registrar="trunk.example", user="4711", password="pw", keepalive_s=30)]  # type: ignore[arg-type]
    )
    return TrunkRegistrations(config, stack, resolver=resolver)  # type: ignore[arg-type]


async def next_send(stack: Stack, count: int) -> tuple[str, str, tuple[str, int]]:
    for _ in range(200):
        if len(stack.sent) >= count:
            return stack.sent[count - 1]
        await asyncio.sleep(0)
    raise AssertionError(f"nothing sent (sent: {stack.sent})")


def answer(registrations: TrunkRegistrations, branch: str, status: int, expires: int = 600) -> None:
    message = None
    if status != 408:
        message = SipMessage(status=status, reason="OK" if status == 200 else "Service Unavailable")
        if status == 200:
            message.add("expires", str(expires))
    assert registrations.on_response(ResponseReceived(branch, status, message.reason if message else "", message))


def state(registrations: TrunkRegistrations) -> dict[str, Any]:
    (only,) = registrations.states()
    return only


async def test_no_answer_fails_over_to_the_next_target_at_once_and_the_state_shows_it() -> None:
    stack, resolver = Stack(), Resolver(PRIMARY, SECONDARY)
    registrations = trunks(resolver, stack)
    registrations.start()
    branch, method, address = await next_send(stack, 1)
    assert (method, address) == ("REGISTER", PRIMARY.peer_address)
    assert state(registrations)["address"] == "192.0.2.2:5060"
    assert state(registrations)["targets"] == ["192.0.2.2:5060", "192.0.2.3:5062"]
    answer(registrations, branch, 408)
    assert state(registrations)["status"] == "registering" and state(registrations)["failures"] == 0
    branch, method, address = await next_send(stack, 2)
    assert (method, address) == ("REGISTER", SECONDARY.peer_address) and resolver.asked == 1  # (same round)
    answer(registrations, branch, 200)
    shown = state(registrations)
    assert shown["status"] == "registered" and shown["address"] == "192.0.2.3:5062" and shown["failures_in_a_row"] == 0
    await registrations.stop(timeout_s=0.01)


async def test_a_503_fails_over_and_when_every_target_failed_the_trunk_backs_off() -> None:
    stack, resolver = Stack(), Resolver(PRIMARY, SECONDARY)
    registrations = trunks(resolver, stack)
    registrations.start()
    branch, _, _ = await next_send(stack, 1)
    answer(registrations, branch, 503)
    branch, _, address = await next_send(stack, 2)
    assert address == SECONDARY.peer_address
    answer(registrations, branch, 408)
    shown = state(registrations)
    assert shown["status"] == "failing" and shown["last_status"] == 408 and shown["failures_in_a_row"] == 1
    assert shown["next_attempt_at"] is not None
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(stack.sent) == 2  # no third REGISTER before the backoff
    await registrations.stop(timeout_s=0.01)


async def test_a_silent_keepalive_starts_again_from_the_best_target_the_silent_one_last() -> None:
    stack, resolver = Stack(), Resolver(PRIMARY, SECONDARY)
    registrations = trunks(resolver, stack)
    registrations.start()
    branch, _, _ = await next_send(stack, 1)
    answer(registrations, branch, 408)
    branch, _, _ = await next_send(stack, 2)
    answer(registrations, branch, 200)  # registered at the secondary
    trunk = registrations._trunks["carrier"]
    registrations._keepalive(trunk)  # (its timer, now)
    branch, method, address = await next_send(stack, 3)
    assert (method, address) == ("OPTIONS", SECONDARY.peer_address)
    answer(registrations, branch, 408)  # the secondary went silent: the primary is back in use
    branch, method, address = await next_send(stack, 4)
    assert (method, address) == ("REGISTER", PRIMARY.peer_address) and resolver.asked == 2  # (resolved again)
    answer(registrations, branch, 200)
    assert state(registrations)["address"] == "192.0.2.2:5060" and state(registrations)["status"] == "registered"

    # now the primary goes silent: the round after it starts with the secondary, the primary last
    registrations._keepalive(trunk)
    branch, _, _ = await next_send(stack, 5)
    answer(registrations, branch, 408)
    branch, method, address = await next_send(stack, 6)
    assert (method, address) == ("REGISTER", SECONDARY.peer_address)
    await registrations.stop(timeout_s=0.01)


async def test_a_refresh_stays_with_the_target_in_use_and_resolves_again() -> None:
    stack, resolver = Stack(), Resolver(PRIMARY, SECONDARY)
    registrations = trunks(resolver, stack)
    registrations.start()
    branch, _, _ = await next_send(stack, 1)
    answer(registrations, branch, 408)
    branch, _, _ = await next_send(stack, 2)
    answer(registrations, branch, 200, expires=1)  # at the secondary; refreshed after half a second
    resolver.targets = [PRIMARY, SECONDARY]
    for _ in range(100):
        if len(stack.sent) >= 3:
            break
        await asyncio.sleep(0.02)
    _, method, address = await next_send(stack, 3)
    assert (method, address) == ("REGISTER", SECONDARY.peer_address) and resolver.asked == 2
    await registrations.stop(timeout_s=0.01)


async def test_a_name_that_does_not_resolve_is_a_failure_with_backoff() -> None:
    stack, resolver = Stack(), Resolver()
    registrations = trunks(resolver, stack)
    registrations.start()
    for _ in range(20):
        await asyncio.sleep(0)
    shown = state(registrations)
    assert shown["status"] == "failing" and "no address" in shown["reason"] and shown["address"] is None
    assert stack.sent == []
    await registrations.stop(timeout_s=0.01)
