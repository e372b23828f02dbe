"""One call's failure is that call's alone: an exception while a SIP call is handled ends that call
(500 before the answer, a BYE with Reason 500 after), frees its slot, and is logged once; the
service and its other calls carry on. In process, with a stand-in for the SIP stack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.rooms.directory import Directory
from gateway.rooms.pinguard import PinGuard
from gateway.sip.service import SipCall, SipService
from gateway.sip.useragent import IncomingCall


class StackStandIn:
    """Takes the commands SipCall gives the SIP stack: refusals and BYEs are both kept in
    `hang_ups` as (call, status, reason, cause)."""

    def __init__(self) -> None:
        self.hang_ups: list[tuple[Any, ...]] = []
        self.answers: list[int] = []
        self.active_calls = 0

    def reject(self, call: int, status: int, reason: str | None = None, retry_after_s: Any = None) -> None:
        self.hang_ups.append((call, status, reason, None))

    def hang_up(self, call: int, cause: Any = None) -> None:
        self.hang_ups.append((call, 200, None, cause))

    def answer(self, call: int, sdp: Any) -> None:
        self.answers.append(call)


def service_with_stand_in() -> tuple[SipService, StackStandIn]:
    config = parse_config("sip: {host: 127.0.0.1, port: 0}\nrooms:\n  - {id: demo}\n")
    service = SipService(config, Directory(config), PinGuard())
    stack = StackStandIn()
    service.stack = stack  # type: ignore[assignment]
    return service, stack


def incoming(number: int) -> IncomingCall:
    return IncomingCall(number, f"call-{number}", "demo", "Anna", "+4930123", "192.0.2.10", "udp", None)


async def test_a_call_that_raises_before_the_answer_gets_500_and_its_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    service, stack = service_with_stand_in()
    original = SipCall.start

    async def start(self: SipCall) -> None:
        if self.incoming.call == 1:
            raise RuntimeError("a bug met by this call only")
        await original(self)

    monkeypatch.setattr(SipCall, "start", start)
    service.incoming(incoming(1))
    service.incoming(incoming(2))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if stack.answers:
            break
    assert stack.hang_ups == [(1, 500, "Server Internal Error", None)]
    assert 1 not in service.calls and stack.answers == [2]  # the other call was answered
    assert service.failures.get("500") == 1
    service.calls[2].release()


async def test_a_call_that_raises_in_the_meeting_is_ended_with_a_bye_saying_500() -> None:
    service, stack = service_with_stand_in()
    service.incoming(incoming(1))
    for _ in range(50):
        await asyncio.sleep(0.01)
        if stack.answers:
            break
    call = service.calls[1]

    def broken(digit: str, via: str = "") -> None:
        raise KeyError("a bug in the key handling")

    call.on_digit = broken  # type: ignore[method-assign]
    service.digit(1, "5", "rfc4733")
    assert stack.hang_ups == [(1, 200, None, (500, "Server Internal Error"))]
    assert 1 not in service.calls
    service.digit(1, "5", "rfc4733")  # later events for the ended call are ignored
    assert len(stack.hang_ups) == 1
