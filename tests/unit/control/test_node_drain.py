"""Draining a node, without sockets: new participants are refused from the start (the refusal every
protocol turns into its 503), the node is `drained` once its meetings are over, the deadline ends the
ones still running, and cancelling takes newcomers again."""

from __future__ import annotations

import asyncio

from gateway.config import AdmissionConfig, GatewayConfig, RoomConfig
from gateway.control.node import Drain
from gateway.rooms.admission import Admission
from gateway.rooms.directory import Directory
from gateway.rooms.participant import LegKind


def node() -> tuple[Directory, Admission, Drain]:
    directory = Directory(GatewayConfig(rooms=[RoomConfig(id="north"), RoomConfig(id="south")]))
    admission = Admission(AdmissionConfig(), lambda: 0.0)
    return directory, admission, Drain(directory, admission)


async def test_a_drain_refuses_newcomers_and_is_drained_when_the_meetings_end() -> None:
    directory, admission, drain = node()
    north = directory.find("north")
    assert north is not None
    anna = north.room.request_join("Anna", None, LegKind.PHONE).participant
    assert anna is not None and drain.view()["state"] == "serving" and admission.admit() is None

    view = drain.start(600, "test")
    assert view["state"] == "draining" and view["meetings"] == 1 and view["participants"] == 1
    assert 599 <= view["deadline_in_s"] <= 600
    assert admission.admit() == "the node is draining" and admission.refused == 1
    north.room.leave(anna.id)
    assert drain.view()["state"] == "drained" and drain.view()["meetings"] == 0
    # (the deadline's task ends nothing: there is nothing left)
    drain.cancel("test")
    assert drain.view()["state"] == "serving" and admission.admit() is None and drain.view()["deadline"] is None


async def test_the_deadline_ends_the_meetings_still_running() -> None:
    directory, admission, drain = node()
    north, south = directory.find("north"), directory.find("south")
    assert north is not None and south is not None
    north.room.request_join("Anna", None, LegKind.BROWSER)
    ended: list[str] = []
    north.room.subscribe(lambda event: ended.append(str(event.data.get("reason"))) if event.type == "meeting_ended" else None)
    drain.start(0.05, "test")
    await asyncio.sleep(0.2)
    assert ended == ["shutdown"] and not north.room.participants and not south.room.participants
    assert drain.view()["state"] == "drained" and drain.view()["ended_at_deadline"] == 1
    assert admission.admit() is not None  # still draining: the node is restarted, or the drain cancelled


async def test_cancelling_before_the_deadline_keeps_the_meetings() -> None:
    directory, admission, drain = node()
    north = directory.find("north")
    assert north is not None
    north.room.request_join("Anna", None, LegKind.BROWSER)
    drain.start(0.05, "test")
    drain.cancel("test")
    await asyncio.sleep(0.2)
    assert len(north.room.participants) == 1 and drain.view()["state"] == "serving"


def test_overload_and_draining_each_refuse() -> None:
    _, admission, _ = node()
    admission.reason = "event loop 400 ms late"
    assert admission.refusing == "event loop 400 ms late"
    admission.draining = "the node is draining"
    assert admission.refusing == "the node is draining"
    admission.reason = None
    admission.draining = None
    assert admission.refusing is None
