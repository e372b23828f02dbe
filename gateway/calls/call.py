"""One caller's way through the gateway, whatever its signalling (SIP, H.323): the voice menu, the
lobby with hold music, the meeting with its phone keys and spoken room events, and the ending with
a prompt. `Call` runs it on the asyncio loop over a media leg that plays prompts and joins the
room's conference; a protocol's call (sip/service.py's SipCall, h323/service.py's H323Call)
subclasses it and adds only its signalling: answering, media negotiation, and `_hang_up`, which
says the neutral Ending in the protocol's terms (a SIP BYE with Reason, a Q.931 ReleaseComplete
with its cause).

The phases: new -> answered -> menu -> lobby -> admitted -> meeting -> ending -> ended. A call the
directory trusts (its own room system), and a dial-out's callee, go straight to the meeting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from gateway.calls import menu
from gateway.calls.admission import Caller, Doorkeeper, Refused, Waiting
from gateway.calls.endings import PROMPTS, Ending, ending_for
from gateway.calls.keys import KeyCommand, PhoneKeys, carry_out, joined_prompts, prompt_for_event
from gateway.calls.lobby import LobbyAdmitted, LobbyEnded, LobbyNews, LobbyWait
from gateway.calls.prompts import HOLD_MUSIC, Prompt, PromptLibrary
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.events import RoomEvent
from gateway.rooms.participant import LegKind
from gateway.rooms.ratelimit import RateLimit
from gateway.transcode.audio import AudioFormat

DIGITS_PER_S = 10  # keys a person can press in a second, at most


class MediaLeg(Protocol):
    """What the call flow needs of a leg (gateway/rtp/leg.py's RtpLeg is one)."""

    last_packet_at: float
    remote_sends: bool

    @property
    def audio_out_format(self) -> AudioFormat: ...

    def play(self, frames: list[bytes], *, loop: bool = False, done: Callable[[], None] | None = None) -> None: ...

    def stop_playing(self) -> None: ...

    def attach(self, conference: Conference, participant_id: str) -> None: ...

    def detach(self) -> None: ...


@dataclass(frozen=True)
class CallSettings:
    """The voice menu's and the meeting's settings (config `sip`: they apply to H.323 callers too)."""

    language: str = "de"
    menu: bool = True
    pin_attempts: int = 3
    digit_timeout_s: float = 5.0
    entry_timeout_s: float = 20.0
    media_timeout_s: float = 60.0
    keys: Mapping[KeyCommand, str] | None = None

    @classmethod
    def of(cls, config: Any) -> CallSettings:
        """From the `sip` section of the configuration."""
        return cls(
            language=config.language,
            menu=config.menu,
            pin_attempts=config.pin_attempts,
            digit_timeout_s=config.digit_timeout_s,
            entry_timeout_s=config.entry_timeout_s,
            media_timeout_s=config.media_timeout_s,
            keys={command: getattr(config.keys, command.value) for command in KeyCommand},
        )


@dataclass
class CallContext:
    """What every call of a service shares: prompts, rooms, the door, the settings."""

    prompts: PromptLibrary
    directory: Directory
    door: Doorkeeper
    settings: CallSettings

    def room_info(self, conference: Conference) -> menu.RoomInfo:
        """What the voice menu knows of a room: its PINs and language (else the settings')."""
        return menu.RoomInfo.of(conference.room, self.settings.language)


class Call:
    def __init__(
        self,
        context: CallContext,
        leg: MediaLeg,
        *,
        kind: LegKind,
        name: str,
        source: str,
        number: str | None = None,
        outbound: bool = False,
        log: Any = None,
    ) -> None:
        settings = context.settings
        self.context = context
        self.leg = leg
        self.kind = kind
        self.name = name
        self.source = source
        self.number = number
        self.outbound = outbound
        self.log = log if log is not None else structlog.get_logger(__name__)
        self.flow = menu.EntryFlow(settings.language, settings.pin_attempts, settings.digit_timeout_s, settings.entry_timeout_s)
        self.door = context.door
        self.conference: Conference | None = None
        self.participant_id = ""
        self.phase = "new"  # new -> answered -> menu -> lobby -> admitted -> meeting -> ending -> ended
        self.trusted = False  # its own room system of the directory, calling its room: no PIN, no lobby
        self.task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._keys = PhoneKeys(settings.keys or {})
        self._lobby: LobbyWait | None = None
        self._first_room: Conference | None = None  # where the call is for, once answered
        self._refusal: Ending | None = None  # said once answered, then the hang-up
        self._keys_per_s = RateLimit(DIGITS_PER_S, 1.0)
        self._digits_dropped = 0
        self._work: set[asyncio.Task[None]] = set()

    # -- what a protocol's call provides ----------------------------------------------------------

    def _hang_up(self, ending: Ending) -> None:
        """Ends the call in the protocol's terms (and frees its media)."""
        raise NotImplementedError

    def _ending_terms(self, ending: Ending) -> tuple[int, str]:
        """The ending as the protocol says it (a SIP status or a Q.931 cause, and a text): for the log."""
        raise NotImplementedError

    def _count_failure(self, code: str) -> None:
        """A call that failed, for the metrics."""

    def _pin_source(self) -> str:
        """Who is guessing PINs: the source address unless the protocol knows better."""
        return self.source

    def _reachable(self, conference: Conference | None) -> Conference | None:
        """`conference` if this call may reach it (a SIP trunk may be bound to some rooms)."""
        return conference

    def _on_room_event(self, event: RoomEvent) -> None:
        """A room event beyond the spoken ones (a presentation for the content line ...)."""

    # -- running work -----------------------------------------------------------------------------

    async def _supervised(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs a piece of this call's work: an exception ends this call only (fail())."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            self.fail()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._supervised(work))
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    @property
    def language(self) -> str:
        return self.flow.language

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _caller(self) -> Caller:
        number = self.number if self.kind is LegKind.PHONE and not self.outbound else None
        return Caller(self.name, self.kind, source=self.source, guesser=self._pin_source(), number=number)

    # -- after the answer -------------------------------------------------------------------------

    def begin(self) -> None:
        """The call is answered and media may flow: a refusal is said, a trusted or invited call
        enters its room, any other hears the voice menu."""
        if self._refusal is not None:
            self.end(self._refusal)
            return
        if self.outbound or self.trusted:
            self._join_invited()
            return
        self.phase = "menu"
        self._watch_media()
        info = self.context.room_info(self._first_room) if self._first_room is not None else None
        self._run(self.flow.start(info, self._now()))  # (the voice menu: gateway.calls.menu)

    def _watch_media(self) -> None:
        """A caller whose RTP (and RTCP) stopped while not on hold is gone without a hang-up (a
        crashed room system, a lost network): end the call rather than keep a ghost in the room."""
        if self.phase in ("ending", "ended"):
            return
        timeout = self.context.settings.media_timeout_s
        silent_for = self._now() - self.leg.last_packet_at
        if self.leg.remote_sends and silent_for > timeout:
            self.log.warning("no media from the caller; ending the call", silent_s=round(silent_for, 1))
            self.end(Ending.MEDIA_TIMEOUT)
            return
        asyncio.get_running_loop().call_later(min(timeout / 4, 10.0), self._watch_media)

    # -- the voice menu -------------------------------------------------------------------------

    def _run(self, actions: list[menu.Action]) -> None:
        said: tuple[Prompt, ...] = ()
        for action in actions:
            if isinstance(action, menu.Say):
                said = action.prompts
                self.say(*action.prompts, done=self._prompt_finished)
            elif isinstance(action, menu.StopSaying):
                self.leg.stop_playing()
            elif isinstance(action, menu.FindRoom):
                conference = self._reachable(self.context.directory.route(action.number))
                info = self.context.room_info(conference) if conference is not None else None
                # (not the number typed: typed digits stay out of the log)
                self.log.info(
                    "conference number entered",
                    found=conference is not None,
                    room=conference.room.id if conference is not None else None,
                )
                self._run(self.flow.room_found(info, self._now()))
                return
            elif isinstance(action, menu.Join):
                self._join(action.room_id, action.pin, greeting=said)
                return
            elif isinstance(action, menu.End):
                self.end(action.ending, action.prompt)
                return
        self._arm()

    def _prompt_finished(self) -> None:
        self.flow.prompt_finished(self._now())
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.flow.deadline is not None and self.phase == "menu":
            self._timer = asyncio.get_running_loop().call_at(
                self.flow.deadline, lambda: self._run(self.flow.timeout(self._now()))
            )

    def say(self, *prompts: Prompt, done: Callable[[], Any] | None = None, then_hold: bool = False) -> None:
        fmt = self.leg.audio_out_format
        library = self.context.prompts
        frames = [f for p in prompts for f in library.frames(p, self.language, fmt)]
        if then_hold:
            music = library.frames(HOLD_MUSIC, "", fmt)
            self.leg.play(frames, done=lambda: self.leg.play(music, loop=True) if self.phase == "lobby" else None)
        else:
            self.leg.play(frames, done=done)

    def _join(self, room_id: str, pin: str | None, greeting: tuple[Prompt, ...] = ()) -> None:
        """`greeting`: prompts said just before (a room without PIN: the welcome), heard in full."""
        conference = self.context.directory.find(room_id)
        if conference is None:
            self.end(Ending.ROOM_NOT_FOUND)
            return
        self.conference = conference
        self.log = self.log.bind(room=conference.room.id)
        outcome = self.door.join(conference.room, self._caller(), pin)
        if isinstance(outcome, Refused):
            if outcome.ending is Ending.WRONG_PIN:
                self.log.warning("wrong PIN", now_locked_out=outcome.now_locked_out)
                if outcome.now_locked_out:
                    self.end(Ending.LOCKED_OUT)
                else:
                    self._run(self.flow.wrong_pin(self._now()))
                return
            self.log.info("join refused", code=outcome.ending.value)
            self.end(outcome.ending)
            return
        self.flow.joined()
        if isinstance(outcome, Waiting):
            self.participant_id = outcome.entry.id
            self.log = self.log.bind(participant=self.participant_id)
            self.phase = "lobby"
            self._lobby = LobbyWait(conference.room, self.participant_id, self._on_lobby_news)
            self.log.info("waiting in lobby")
            self.say(Prompt.WAITING_FOR_HOST, then_hold=True)
            return
        self._enter_meeting(outcome.participant.id, outcome.participant.is_host, greeting)

    def _join_invited(self) -> None:
        """A trusted room system, or the callee of a dial-out: straight into the room, past the
        lobby and the lock."""
        conference = self.conference
        if conference is None:
            return
        outcome = self.door.let_in_trusted(conference.room, self._caller(), "out" if self.outbound else "in")
        if isinstance(outcome, Refused):
            self.end(outcome.ending)
            return
        self._watch_media()
        self._enter_meeting(outcome.participant.id, False)

    def _on_lobby_news(self, news: LobbyNews) -> None:
        if self.phase != "lobby":
            return
        if isinstance(news, LobbyAdmitted):
            self._stop_lobby_events()
            self.phase = "admitted"
            # (the room adds the participant right after saying so: enter on the next loop turn)
            asyncio.get_running_loop().call_soon(self._enter_admitted)
        elif isinstance(news, LobbyEnded):
            self._stop_lobby_events()
            self.end(news.ending)

    def _enter_admitted(self) -> None:
        if self.phase == "admitted" and self.conference is not None:
            if self.participant_id in self.conference.room.participants:
                self._enter_meeting(self.participant_id, False)
            else:
                self.end(Ending.ADMITTED_BUT_GONE)

    def _stop_lobby_events(self) -> None:
        if self._lobby is not None:
            self._lobby.stop()
            self._lobby = None

    def _enter_meeting(self, participant_id: str, is_host: bool, greeting: tuple[Prompt, ...] = ()) -> None:
        assert self.conference is not None
        self.phase = "meeting"
        self.participant_id = participant_id
        self.log = self.log.bind(participant=participant_id)
        self.leg.stop_playing()
        self.leg.attach(self.conference, participant_id)
        self.log.info("joined meeting", role="host" if is_host else "guest", kind=self.kind.value)
        self.say(*greeting, *joined_prompts(self.conference.room, participant_id))

    # -- keys and events in the meeting ---------------------------------------------------------

    def on_digit(self, digit: str, via: str = "rfc4733") -> None:
        if not self._keys_per_s.allow(None):
            # Nobody presses keys faster than this: a flood is a guessing machine; drop, count, log once.
            self._digits_dropped += 1
            if self._digits_dropped == 1:
                self.log.warning("DTMF flood: keys dropped", via=via)
            return
        if self.phase == "meeting":
            self.log.info("DTMF received", digit=digit, via=via)
        else:  # in the menu keys are PINs and conference numbers: that one arrived, not which
            self.log.debug("DTMF received", via=via)
        if self.phase == "menu":
            self._run(self.flow.digit(digit, self._now()))
        elif self.phase == "meeting":
            self._meeting_key(digit)

    def _meeting_key(self, digit: str) -> None:
        command = self._keys.press(digit)
        if command is None or self.conference is None:
            return
        if self.participant_id not in self.conference.room.participants:
            return
        self.log.info("phone key", command=command.value)
        answer = carry_out(self.conference.room, self.participant_id, command)
        if answer is None:
            return
        if answer.refused is not None:
            self.log.info("phone key refused", command=command.value, code=answer.refused)
        self.say(answer.prompt)

    def on_room_event(self, event: RoomEvent) -> None:
        self._on_room_event(event)
        prompt = prompt_for_event(event, self.participant_id)
        if prompt is not None:
            self.say(prompt)

    async def on_room_hang_up(self, reason: str) -> None:
        """The room ended our part (removed, meeting ended): the caller hears why, then the hang-up."""
        self.end(ending_for(reason))

    # -- endings --------------------------------------------------------------------------------

    def end(self, ending: Ending, prompt: Prompt | None = None) -> None:
        """Says `prompt` (the ending's own by default), then hangs up in the protocol's terms."""
        if self.phase in ("ending", "ended"):
            return
        cause, reason = self._ending_terms(ending)
        prompt = prompt or PROMPTS[ending]
        self.log.info("ending call", reason=reason, cause=cause)
        self._leave_room()
        self.phase = "ending"
        if self._timer is not None:
            self._timer.cancel()

        def hang_up() -> None:
            if self.phase == "ending":
                self.phase = "ended"
                self._hang_up(ending)

        self.say(prompt, done=hang_up)
        asyncio.get_running_loop().call_later(self.context.prompts.duration_s(prompt, self.language) + 2.0, hang_up)

    def _leave_room(self) -> None:
        self._stop_lobby_events()
        conference = self.conference
        if conference is not None and self.participant_id:
            self.leg.detach()
            conference.room.leave(self.participant_id)  # (no-op when the room removed us already)
        self.conference = None

    def fail(self) -> None:
        """Something raised while handling this call: end it (the protocol's error response or
        hang-up), free its slot and ports. Logged once, with the traceback."""
        self.log.exception("call failed; ending it", phase=self.phase)
        self._count_failure("500")
        phase, self.phase = self.phase, "ended"
        try:
            self._leave_room()
        except Exception:
            self.log.exception("leaving the room failed")
        self._failed(phase)

    def _failed(self, phase: str) -> None:
        """After fail(): the protocol's error answer (before the answer) or hang-up, and clean-up."""
        raise NotImplementedError

    def release(self) -> None:
        """The call is over (the far end hung up, or the gateway stops): leave and free everything."""
        self.phase = "ended"
        if self._timer is not None:
            self._timer.cancel()
        self._leave_room()
        self._close_media()

    def _close_media(self) -> None:
        """Frees the call's media (the leg's sockets and any more)."""
