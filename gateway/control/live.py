"""Live control of meetings, shared by every control surface (REST API, MQTT, CLI through the API).

Each action names its actor (a token's name, "mqtt", a host's participant id) for the log, acts as
the administrator on the room (which may do what a host may do) and raises a RoomError with a
stable code when it cannot: each surface turns that into its own kind of answer.
"""

from __future__ import annotations

from typing import Any

import structlog

from gateway.control.broadcasts import Broadcasts, What
from gateway.control.dialout import DialOut
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory, NotFound
from gateway.rooms.errors import DialOutRefused, RoomError
from gateway.transcode.layout import Layout

log = structlog.get_logger(__name__)


class LiveControl:
    def __init__(self, directory: Directory, dial_out: DialOut | None = None, broadcasts: Broadcasts | None = None) -> None:
        self.directory = directory
        self.dial_out = dial_out
        self.broadcasts = broadcasts

    def conference(self, room: str) -> Conference:
        found = self.directory.find(room)
        if found is None:
            raise NotFound(f"no room {room!r}", "unknown_room")
        return found

    def _done(self, action: str, conference: Conference, actor: str, **fields: Any) -> None:
        log.info(f"live control: {action}", room=conference.room.id, actor=actor, **fields)

    def mute(self, room: str, participant: str, actor: str, forbid_self_unmute: bool = False) -> dict[str, Any]:
        conf = self.conference(room)
        conf.room.mute(None, participant, forbid_self_unmute)
        self._done("mute", conf, actor, participant=participant, forbid_self_unmute=forbid_self_unmute)
        return conf.room.get(participant).public()

    def unmute(self, room: str, participant: str, actor: str) -> dict[str, Any]:
        conf = self.conference(room)
        conf.room.unmute(None, participant)
        self._done("unmute", conf, actor, participant=participant)
        return conf.room.get(participant).public()

    def set_self_unmute(self, room: str, participant: str, allowed: bool, actor: str) -> dict[str, Any]:
        conf = self.conference(room)
        conf.room.set_self_unmute_forbidden(None, participant, not allowed)
        self._done("self-unmute " + ("allowed" if allowed else "forbidden"), conf, actor, participant=participant)
        return conf.room.get(participant).public()

    def mute_all(self, room: str, actor: str, forbid_self_unmute: bool = False) -> list[str]:
        conf = self.conference(room)
        muted = conf.room.mute_all_guests(None, forbid_self_unmute)
        self._done("mute all guests", conf, actor, muted=len(muted), forbid_self_unmute=forbid_self_unmute)
        return muted

    def allow_all_unmute(self, room: str, actor: str) -> None:
        """Ends a mute-all policy: guests who join are no longer muted, and all may unmute again."""
        conf = self.conference(room)
        conf.room.allow_guests_to_unmute(None)
        self._done("guests may unmute", conf, actor)

    def remove(self, room: str, participant: str, actor: str) -> None:
        conf = self.conference(room)
        conf.room.remove(None, participant)
        self._done("remove", conf, actor, participant=participant)

    def admit(self, room: str, entry: str, actor: str) -> dict[str, Any]:
        conf = self.conference(room)
        participant = conf.room.admit(None, entry)
        self._done("admit", conf, actor, participant=entry)
        return participant.public()

    def deny(self, room: str, entry: str, actor: str) -> None:
        conf = self.conference(room)
        conf.room.deny(None, entry)
        self._done("deny", conf, actor, participant=entry)

    def lock(self, room: str, locked: bool, actor: str) -> bool:
        conf = self.conference(room)
        conf.room.set_locked(None, locked)
        self._done("lock" if locked else "unlock", conf, actor)
        return conf.room.locked

    @staticmethod
    def picture(conference: Conference) -> dict[str, Any]:
        """The composed picture now: its layout and who is in the spotlight (a participant id or None)."""
        return {"layout": conference.room.layout.value, "spotlight": conference.room.spotlight}

    def set_layout(self, room: str, layout: Layout | str, actor: str) -> dict[str, Any]:
        """How room systems see the meeting (speaker or grid), until the meeting ends."""
        conf = self.conference(room)
        try:
            chosen = Layout(layout)
        except ValueError:
            known = ", ".join(item.value for item in Layout)
            raise RoomError(f"unknown layout {layout!r} (known: {known})", "bad_request") from None
        conf.room.set_layout(None, chosen)
        self._done("layout", conf, actor, layout=chosen.value)
        return self.picture(conf)

    def spotlight(self, room: str, participant: str | None, actor: str) -> dict[str, Any]:
        """Shows `participant` large for everyone (room systems and browsers); None ends the spotlight."""
        conf = self.conference(room)
        conf.room.set_spotlight(None, participant)
        self._done("spotlight" if participant is not None else "spotlight ended", conf, actor, participant=participant)
        return self.picture(conf)

    @staticmethod
    def presentation(conference: Conference) -> dict[str, Any] | None:
        """Who presents now (participant id, since, content), None when nobody does."""
        current = conference.room.presentation
        return current.public() if current is not None else None

    def stop_presentation(self, room: str, actor: str) -> dict[str, Any] | None:
        """Ends the room's presentation, whoever gives it (the presenter is told); the presentation
        that was stopped, None when there was none."""
        conf = self.conference(room)
        stopped = self.presentation(conf)
        conf.room.stop_presenting(None)
        if stopped is not None:
            self._done("presentation stopped", conf, actor, participant=stopped["presenter"])
        return stopped

    def end(self, room: str, actor: str) -> list[str]:
        conf = self.conference(room)
        ended = conf.room.end(None)
        self._done("end meeting", conf, actor, participants=len(ended))
        return ended

    async def dial(self, room: str, actor: str, uri: str | None = None, system: str | None = None) -> dict[str, Any]:
        """Calls a directory room system (always allowed) or an address (only where a dial-out rule
        allows it: toll fraud) into the room, through the protocol its identity needs."""
        conf = self.conference(room)
        if self.dial_out is None:
            raise DialOutRefused("neither SIP nor H.323 is enabled", "sip_disabled")
        if (uri is None) == (system is None):
            raise DialOutRefused("name either an address (sip:, tel:, h323:) or a room system of the directory", "bad_uri")
        if system is not None:
            entry = self.directory.systems.get(system)
            if entry is None:
                raise NotFound(f"no room system {system!r} in the directory", "unknown_system")
            return await self.dial_out(conf.room.id, self.directory.identity(entry), actor, entry.name, True)
        assert uri is not None
        return await self.dial_out(conf.room.id, uri.strip(), actor, None, False)

    # -- recording and live streaming ---------------------------------------------------------------

    def _broadcasts(self) -> Broadcasts:
        if self.broadcasts is None:
            raise RoomError("this gateway neither records nor streams", "broadcasts_disabled")
        return self.broadcasts

    def broadcasting(self, room: str) -> dict[str, Any]:
        """What of the meeting is recorded and streamed now (None: not)."""
        if self.broadcasts is None:
            return {"recording": None, "streaming": None}
        return {what: state for what, state in self.broadcasts.state(room).items()}

    def start_broadcast(self, room: str, what: What, actor: str) -> dict[str, Any]:
        """Starts recording (`what` recording) or streaming the meeting to its room's stream_url."""
        state = self._broadcasts().start(room, what, actor)
        self._done(f"{what} started", self.conference(room), actor)
        return state

    def stop_broadcast(self, room: str, what: What, actor: str) -> bool:
        stopped = self._broadcasts().stop(room, what, actor)
        if stopped:
            self._done(f"{what} stopped", self.conference(room), actor)
        return stopped
