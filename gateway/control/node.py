"""Draining this node for a rolling restart: new participants are refused as when it is overloaded
(SIP calls get 503 with Retry-After, so does the OPTIONS probe of a front such as Kamailio's
dispatcher; H.323 calls are released; /readyz says 503 to an HTTP front), while the meetings in progress carry on until they end or until
the deadline, when the rest are ended as at a shutdown (callers hear it). Started and cancelled from
the API (`POST /api/node/drain`, `DELETE /api/node/drain`) and the CLI (`gateway drain`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.rooms.admission import Admission
from gateway.rooms.directory import Directory

log = structlog.get_logger(__name__)

class Drain:
    def __init__(self, directory: Directory, admission: Admission) -> None:
        self._directory = directory
        self._admission = admission
        self._deadline: float | None = None  # (wall clock, for the API) while draining
        self._task: asyncio.Task[None] | None = None
        self.ended_at_deadline = 0  # meetings the last drain's deadline ended
        self.backplane: Callable[[], dict[str, Any]] | None = None  # its links to other nodes, when on
        # One worker of several (gateway/workers.py): the others' figures, and telling them of a drain
        self.elsewhere: Callable[[], dict[str, Any]] | None = None
        self.announce: Callable[[float | None], None] | None = None  # (the deadline, wall clock; None: cancelled)

    @property
    def draining(self) -> bool:
        return self._admission.draining is not None

    def view(self) -> dict[str, Any]:
        meetings = len(self._directory.meetings())
        participants = sum(c.room.own_people for c in self._directory)
        elsewhere = self.elsewhere() if self.elsewhere is not None else None
        if elsewhere is not None:  # (the node's other workers)
            meetings += int(elsewhere["meetings"])
            participants += int(elsewhere["participants"])
        state = "serving" if not self.draining else ("drained" if not meetings else "draining")
        return {
            "state": state,
            "deadline": self._deadline,
            "deadline_in_s": max(0.0, round(self._deadline - time.time(), 1)) if self._deadline is not None else None,
            "meetings": meetings,
            "participants": participants,
            "ended_at_deadline": self.ended_at_deadline,
            "backplane": self.backplane() if self.backplane is not None else None,
            "workers": elsewhere["workers"] if elsewhere is not None else None,
        }

    def start(self, deadline_s: float, actor: str, announce: bool = True) -> dict[str, Any]:
        """Refuses new participants from now on; the meetings still running at the deadline are
        ended. A second call sets the deadline anew. (`announce`: tell the node's other workers.)"""
        self._admission.draining = "the node is draining"
        self._deadline = time.time() + deadline_s
        self.ended_at_deadline = 0
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(deadline_s), name="drain")
        log.warning("draining: new participants are refused", actor=actor, deadline_s=deadline_s, meetings=len(self._directory.meetings()))
        if announce and self.announce is not None:
            self.announce(self._deadline)
        return self.view()

    def cancel(self, actor: str, announce: bool = True) -> dict[str, Any]:
        """Takes new participants again."""
        if self.draining:
            log.info("drain cancelled: new participants are taken again", actor=actor)
        if announce and self.announce is not None:
            self.announce(None)
        self._admission.draining = None
        self._deadline = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        return self.view()

    async def _run(self, deadline_s: float) -> None:
        """At the deadline, ends the meetings still running (their callers hear it, browsers are told)."""
        await asyncio.sleep(deadline_s)
        busy = self._directory.end_meetings("shutdown")
        self.ended_at_deadline = len(busy)
        log.warning("drain deadline: the meetings left were ended", rooms=[c.room.id for c in busy])

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
