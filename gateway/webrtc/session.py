"""One browser participant: its WebSocket conversation, its place in a room, and its media leg.

A BrowserSession is the browser's Leg. It is driven by the WebSocket adapter in server.py
(`handle_text` per message, `socket_closed` at the end) and talks back only through the `send`
and `close` callables it was given, so the whole conversation can run in tests without a socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import structlog

from gateway.calls.admission import Caller, Doorkeeper, Refused, Waiting
from gateway.calls.endings import Ending, ending_for
from gateway.calls.lobby import LobbyAdmitted, LobbyEnded, LobbyNews, LobbyWait, ending_of
from gateway.config import GatewayConfig
from gateway.rooms.admission import Admission
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import JoinRefused, NotAllowed, RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Content, StopReason
from gateway.rooms.hostlinks import HostLinks
from gateway.rooms.leg import VideoStream
from gateway.rooms.participant import LegKind, Role
from gateway.rooms.pinguard import PinGuard
from gateway.rooms.ratelimit import RateLimit
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.codecs import StreamKind
from gateway.transcode.layout import Layout
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId
from gateway.webrtc import signalling as sig
from gateway.webrtc.media import BrowserMedia
from gateway.webrtc.resume import Place, ResumeTokens

log = structlog.get_logger(__name__)

Send = Callable[[dict[str, Any] | str], Awaitable[None]]  # a message, or one already serialized
Close = Callable[[int, str], Awaitable[None]]

def address_key(address: str) -> str:
    """Whose joins count together: one IPv4 address, or an IPv6 /64 (one household or phone gets a
    whole /64, so counting single IPv6 addresses would give it billions of allowances)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])  # without a link-local zone
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Invitations(Protocol):
    """What a host's page may ask of the control plane: call a room system or an address into the
    room (the control plane checks the dial-out rules and picks the protocol), record or stream the
    meeting (the room's settings decide)."""

    async def dial(self, room: str, actor: str, uri: str | None = None, system: str | None = None) -> dict[str, Any]: ...

    def start_broadcast(self, room: str, what: Literal["recording", "streaming"], actor: str) -> dict[str, Any]: ...

    def stop_broadcast(self, room: str, what: Literal["recording", "streaming"], actor: str) -> bool: ...


class JoinRate:
    """At most `per_minute` joins per client address in any 60 seconds (a sliding window). Keeps a
    flood of joins (room scans, reconnect storms of a broken client) from one address from costing
    everyone else their media; PIN guessing has its own, stricter guard."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.joins = RateLimit(per_minute, 60.0, clock)
        self._refusals: dict[str, int] = {}  # refused since the address reached its limit

    def refusals(self, address: str) -> int:
        """0: the join may go ahead (and is counted); n: the n-th refused in a row for the address."""
        key = address_key(address)
        if self.joins.allow(key):
            self._refusals.pop(key, None)
            return 0
        if len(self._refusals) > 10_000:  # (only addresses refused lately: bounded all the same)
            self._refusals.clear()
        self._refusals[key] = self._refusals.get(key, 0) + 1
        return self._refusals[key]


class BrowserHub:
    """All browser sessions of this gateway, and the places kept for those who lost their connection."""

    def __init__(self, config: GatewayConfig, directory: Directory, pin_guard: PinGuard) -> None:
        self.config = config
        self.directory = directory
        self.sessions: set[BrowserSession] = set()
        self.pin_guard = pin_guard  # the gateway's one guard: phone and browser guesses add up
        # Signs and reads the browsers' resume tokens (gateway/webrtc/resume.py); the gateway gives it
        # the cluster's key, or its store's, so that tokens outlive this process.
        self.resume_tokens = ResumeTokens(secrets.token_bytes(32), config.cluster.resume_valid_s)
        # Places kept for a reconnect, by place id (a resume token's `place`)
        self._resumable: dict[str, tuple[str, str, asyncio.TimerHandle, Callable[[], None]]] = {}
        # Kept places that ended meanwhile (removed, meeting ended): the returner is told.
        self._ended_places: dict[str, Ending] = {}
        # Places whose tokens are worth nothing here any more, until they would be stale anyway: ended
        # (left, removed, the meeting ended, the grace ran out), taken back, or brought from another
        # node once. place -> until when (monotonic)
        self._spent: dict[str, float] = {}
        self._room_json: dict[tuple[str, bool], tuple[int, str]] = {}
        self.host_links: HostLinks | None = None  # set by the gateway once its store is open
        # A signed-in person's session token -> (may host rooms that allow it, name); None: none or
        # ended. Set by the gateway when sign-in with the identity provider is configured.
        self.sign_ins: Callable[[str], tuple[bool, str] | None] | None = None
        self.live: Invitations | None = None  # hosts invite room systems through it (the control plane)
        self.admission: Admission | None = None  # set by the gateway: refuses new browsers while overloaded
        self.join_rate = JoinRate(config.server.joins_per_minute)
        self.door = Doorkeeper(self.pin_guard, lambda: self.admission)

    def room_json(self, conference: Conference, for_host: bool) -> str:
        """The room's public view, serialized once per room change for all sessions that show it."""
        room = conference.room
        key = (room.id, for_host)
        cached = self._room_json.get(key)
        if cached is None or cached[0] != room.version:
            cached = (room.version, json.dumps(room.public(for_host), separators=(",", ":")))
            self._room_json[key] = cached
        return cached[1]

    def keep_place(self, token: str, conference: Conference, pid: str) -> None:
        """Keeps the participant's place for a reconnect; `token`: the place's id."""
        grace = self.config.webrtc.reconnect_grace_s
        loop = asyncio.get_running_loop()

        def forget(ending: Ending | None) -> None:
            entry = self._resumable.pop(token, None)
            if entry is None:
                return
            entry[2].cancel()
            entry[3]()
            self.spend(token)
            if ending is not None:
                self._ended_places[token] = ending
                loop.call_later(grace, self._ended_places.pop, token, None)

        def expire() -> None:
            forget(None)
            conference.room.leave(pid)
            log.info("reconnect grace expired", room=conference.room.id, participant=pid)

        def on_event(event: RoomEvent) -> None:
            ending = ending_of(event, pid)
            if ending is not None:
                forget(ending)

        unsubscribe = conference.room.subscribe(on_event)
        self._resumable[token] = (conference.room.id, pid, loop.call_later(grace, expire), unsubscribe)

    def holds_place(self, token: str) -> bool:
        """A place is kept for this token: its owner lost the connection and is within the grace."""
        return token in self._resumable

    def spend(self, place: str) -> None:
        """The place's tokens are worth nothing here from now on (see take_over)."""
        now = time.monotonic()
        for old in [p for p, until in self._spent.items() if until < now]:
            del self._spent[old]
        if place:
            self._spent[place] = now + 2 * self.resume_tokens.valid_s

    def take_over(self, place: Place) -> bool:
        """Whether a place another node kept may come in here: its token is fresh, and its place is
        neither here now nor spent here (it ended here: left, removed; or a token used before)."""
        if not self.resume_tokens.fresh(place) or place.place in self._spent or place.place in self._resumable:
            return False
        if any(session.place == place.place for session in self.sessions):
            return False
        self.spend(place.place)
        return True

    def take_place(self, token: str, room_id: str) -> str | None:
        """The participant id whose place the token keeps, or None."""
        entry = self._resumable.get(token)
        if entry is None or entry[0] != room_id:
            return None
        del self._resumable[token]
        entry[2].cancel()
        entry[3]()
        self.spend(token)  # (the one who comes back gets a new place)
        return entry[1]

    def ended_place(self, token: str) -> Ending | None:
        """Why the place a token kept is gone (removed, meeting ended), if it ended during the grace."""
        return self._ended_places.pop(token, None)

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.end_by_room(Ending.MEETING_ENDED)
        for _room, _pid, handle, unsubscribe in self._resumable.values():
            handle.cancel()
            unsubscribe()
        self._resumable.clear()


# Simulcast (BrowserSession._choose_layers): when a browser gets the lower layer of the cameras it
# shows, and the better ones again.
LAYER_DOWN_SHARE = 0.8  # lower layers when the REMB is under this share of what the better ones send
LAYER_UP_SHARE = 1.2  # the better ones again over this share (or on the next try)
LAYER_RETRY_S = 8.0  # the first try of the better layers after this long on the lower ones
LAYER_RETRY_MAX_S = 64.0
LAYER_PEAK_S = 10.0  # a REMB under LAYER_FALL_SHARE of its peak over this long is falling
LAYER_FALL_SHARE = 0.85
SMALL_TILES_FROM = 4

# Room events after which what a browser should see in its video slots may have changed
_SLOT_EVENTS = frozenset(
    {
        "participant_joined",
        "participant_left",
        "participant_removed",
        "video_changed",
        "spotlight_changed",
        "presentation_started",
        "presentation_stopped",
    }
)
# Ends of one's own presentation the page is told of (not its own stop, nor leaving or the end)
_TOLD_STOPS = frozenset(
    {StopReason.TAKEN_OVER, StopReason.STOPPED_BY_HOST, StopReason.STOPPED_BY_OPERATOR, StopReason.NOT_ALLOWED}
)


# A participant's own events that change what its resume token says
_OWN_STATE_EVENTS = frozenset({"muted", "unmuted", "mute_changed", "self_unmute_forbidden", "self_unmute_allowed"})


class BrowserSession:
    kind = LegKind.BROWSER
    audio_in_codec = AudioCodec.OPUS

    def __init__(self, hub: BrowserHub, send: Send, close: Close, remote: str, client_ip: str = "") -> None:
        self.hub = hub
        self.client_ip = client_ip or remote
        self._send = send
        self._close = close
        self.remote = remote
        self.phase = "new"  # new -> lobby -> meeting -> ended
        self.participant_id = ""
        self.conference: Conference | None = None
        self.media: BrowserMedia | None = None
        self.place = ""  # this participant's place (a resume token's id), new at every join
        opus = hub.config.media.opus
        self.audio_out_format = AudioFormat(AudioCodec.OPUS, opus.bitrate, opus.complexity)
        self.video_codecs: tuple[str, ...] = ()
        self._unwatch_video: Callable[[], None] = lambda: None
        self._lobby: LobbyWait | None = None
        self._state_pending = False
        self._low_layer = False  # (simulcast: this browser gets the lower layers, _choose_layers)
        self._low_since = 0.0
        self._estimates: deque[tuple[float, int]] = deque()  # (when, REMB bit/s), the last LAYER_PEAK_S
        self._retry_after = LAYER_RETRY_S
        self._state_timer: asyncio.TimerHandle | None = None
        self._negotiation_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tokens = 2 * hub.config.server.websocket_messages_per_s
        self._tokens_at = 0.0
        self._flood_strikes = 0
        self._media_ready = False  # the browser answered our offer: only then is a lost place kept
        self._last_lobby_position: tuple[int, int, bool] | None = None
        self._log = log.bind(remote=remote)
        hub.sessions.add(self)

    # -- plumbing -------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, message: dict[str, Any] | str) -> None:
        try:
            await self._send(message)
        except Exception as exc:  # the socket is gone; socket_closed() will clean up
            self._log.debug("send failed", error=str(exc))

    @property
    def room(self):  # type: ignore[no-untyped-def]
        assert self.conference is not None
        return self.conference.room

    def _you(self) -> dict[str, Any] | None:
        if self.conference is None:
            return None
        p = self.conference.room.participants.get(self.participant_id)
        return p.public() if p else None

    # -- inbound messages -----------------------------------------------------------------------

    def _rate_ok(self) -> bool:
        """Token bucket: a browser may send `websocket_messages_per_s` messages a second, bursts of
        twice that; a flood must not take the event loop (and every room's audio) away from others."""
        rate = self.hub.config.server.websocket_messages_per_s
        now = asyncio.get_running_loop().time()
        self._tokens = min(2 * rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def handle_text(self, raw: str | bytes) -> None:
        if not self._rate_ok():
            self._flood_strikes += 1
            if self._flood_strikes == 1 or self._flood_strikes % 100 == 0:
                self._log.warning("websocket messages over the rate limit", dropped=self._flood_strikes)
                await self.send(sig.server_error("rate_limited", "too many messages; slow down"))
            if self._flood_strikes >= 500:
                await self._lose_connection()
            return
        if len(raw) > self.hub.config.server.websocket_max_message_bytes:
            self._log.warning("bad websocket message", reason="message too large", size=len(raw))
            await self.send(sig.server_error("bad_message", "message too large"))
            return
        try:
            message = sig.parse_client_message(raw)
        except sig.BadMessage as exc:
            self._log.warning("bad websocket message", reason=exc.reason)
            await self.send(sig.server_error("bad_message", exc.reason))
            return
        handler = getattr(self, f"_on_{message.type}")
        try:
            await handler(message)
        except RoomError as exc:
            self._log.info("request refused", request=message.type, code=exc.code, reason=str(exc))
            await self.send(sig.server_error(exc.code, str(exc), message.type))
        except Exception:
            self._log.exception("request failed", request=message.type)
            await self.send(sig.server_error("internal", f"the gateway could not do {message.type}", message.type))

    def _require_meeting(self, request: str) -> None:
        if self.phase != "meeting":
            raise RoomError(f"{request} is only possible in the meeting", "not_in_meeting")

    async def _on_ping(self, _msg: sig.Ping) -> None:
        # (with a fresh resume token: the one another node takes after a failover must be recent)
        await self.send(sig.server_pong(self.resume_token()))

    def resume_token(self) -> str:
        """A signed token of this participant's place as it is now (name, role, mute state); "" before a join."""
        if not self.place or self.conference is None:
            return ""
        room = self.conference.room
        p = room.participants.get(self.participant_id)
        if p is not None:
            place = Place(
                place=self.place, room=room.id, name=p.name, role=p.role.value, host_muted=p.host_muted,
                self_unmute_forbidden=p.self_unmute_forbidden, self_muted=p.self_muted, issued=time.time(),
            )  # fmt: skip
        elif self.participant_id in room.lobby:
            entry = room.lobby[self.participant_id]
            place = Place(
                place=self.place, room=room.id, name=entry.name, role="guest", lobby=True,
                waiting_since=room.waiting_since(entry.id), issued=time.time(),
            )  # fmt: skip
        else:
            return ""
        return self.hub.resume_tokens.issue(place)

    async def _on_join(self, msg: sig.Join) -> None:
        if self.phase != "new":
            raise RoomError("already joined", "already_joined")
        # A resume token that is not ours (forged, malformed, another cluster's) counts for nothing.
        back = self.hub.resume_tokens.read(msg.resume) if msg.resume else None
        # Someone coming back to a kept place is already in the meeting (or its lobby): neither the
        # join limit nor overload may cost them that place, which the grace promised to keep.
        if not (back is not None and self.hub.holds_place(back.place)):
            refused = self.hub.join_rate.refusals(self.client_ip)
            if refused:
                if refused == 1 or refused % 100 == 0:  # a flood must not fill the log as well
                    self._log.warning("join refused: too many joins from this address", source=self.client_ip, refused=refused)
                await self._end(Ending.RATE_LIMITED)
                return
            overloaded = self.hub.door.overloaded()
            if overloaded is not None:
                self._log.info("join refused: the gateway is overloaded", why=overloaded.detail)
                await self._end(overloaded.ending)
                return
        if msg.resume and back is None:  # (after the join limit: a flood of them is not logged each)
            self._log.warning("resume token not valid: joining anew", source=self.client_ip)
        conference = self.hub.directory.find(msg.room)
        if conference is None:
            # (not what was typed: people type PINs into the meeting-ID field too)
            self._log.info("join refused", code=Ending.ROOM_NOT_FOUND.value, typed_length=len(msg.room))
            await self._end(Ending.ROOM_NOT_FOUND)
            return
        self.conference = conference
        self._log = self._log.bind(room=conference.room.id)
        if back is not None:
            gone = self.hub.ended_place(back.place)
            if gone is not None:
                self._log.info("join refused: the kept place ended meanwhile", code=gone.value)
                await self._end(gone)
                return
            pid = self.hub.take_place(back.place, conference.room.id)
            if pid is not None and (pid in conference.room.participants or pid in conference.room.lobby):
                # A new place each time: a used token (seen by someone else, or replayed) is worthless.
                self.participant_id, self.place = pid, secrets.token_urlsafe(12)
                self._log = self._log.bind(participant=pid)
                if pid in conference.room.lobby:  # still waiting: back to the same place in the queue
                    self._log.info("reconnected to the lobby")
                    await self._wait_in_lobby()
                    return
                self._log.info("participant reconnected")  # (admitted meanwhile, or was in the meeting)
                conference.room.set_connected(pid, True)
                await self._enter_meeting()
                return
            if pid is None and back.room == conference.room.id and self.hub.take_over(back):
                await self._resume_from_another_node(conference, back)
                return
        role = None
        if msg.signin is not None:
            who = self.hub.sign_ins(msg.signin) if self.hub.sign_ins is not None else None
            if who is None:
                self._log.info("join refused: the sign-in ended")
                await self._end(Ending.SIGN_IN_ENDED)
                return
            if who[0] and conference.room.sign_in_hosts:
                role = Role.HOST  # (staff of the host group, in a room that lets them host)
        if msg.host is not None:
            links = self.hub.host_links
            room = conference.room
            if links is None or not room.host_pin or not links.verify(msg.host, room.id, room.host_pin):
                self._log.warning("join refused: host link not valid (expired, or the host PIN changed)")
                await self._end(Ending.BAD_HOST_LINK)
                return
            role = Role.HOST
        caller = Caller(msg.name, LegKind.BROWSER, source=self.client_ip)
        outcome = self.hub.door.join(conference.room, caller, msg.pin, role)
        if isinstance(outcome, Refused):
            if outcome.ending is Ending.WRONG_PIN:
                self._log.warning("wrong PIN", source=self.client_ip, now_locked_out=outcome.now_locked_out)
            elif outcome.ending is Ending.LOCKED_OUT:
                self._log.warning("join refused: source locked out after wrong PINs", source=self.client_ip)
            else:
                self._log.info("join refused", code=outcome.ending.value)
            await self._end(outcome.ending)  # (a wrong PIN that locked the source out says wrong_pin)
            return
        self.place = secrets.token_urlsafe(12)
        if isinstance(outcome, Waiting):
            self.participant_id = outcome.entry.id
            self._log = self._log.bind(participant=self.participant_id)
            self._log.info("waiting in lobby")
            await self._wait_in_lobby()
            return
        self.participant_id = outcome.participant.id
        self._log = self._log.bind(participant=self.participant_id)
        await self._enter_meeting()

    async def _resume_from_another_node(self, conference: Conference, back: Place) -> None:
        """Back after the node it was on failed, as the token says, not as the client says: in the
        meeting with its name, role and mute state, past the lobby and the lock, within the room's
        size; or in the lobby where its wait so far puts it in the queue."""
        room = conference.room
        try:
            if back.lobby:
                waiting = room.add_waiting_resumed(back.name, LegKind.BROWSER, self.client_ip, back.waiting_since)
            else:
                joined = room.add_resumed(
                    back.name, Role(back.role), LegKind.BROWSER, self.client_ip,
                    self_muted=back.self_muted, host_muted=back.host_muted, self_unmute_forbidden=back.self_unmute_forbidden,
                )  # fmt: skip
        except JoinRefused as exc:
            self._log.info("join refused", code=exc.code)
            await self._end(ending_for(exc.code))
            return
        self.participant_id = waiting.id if back.lobby else joined.id
        self.place = secrets.token_urlsafe(12)
        self._log = self._log.bind(participant=self.participant_id)
        if back.lobby:
            self._log.info("waiting in lobby, resumed from another node")
            await self._wait_in_lobby()
            return
        self._log.info("participant resumed from another node", role=back.role, host_muted=back.host_muted)
        await self._enter_meeting()

    async def _wait_in_lobby(self) -> None:
        self.phase = "lobby"
        self._lobby = LobbyWait(self.room, self.participant_id, self._on_lobby_news)
        await self._send_lobby_position()

    async def _send_lobby_position(self) -> None:
        if self.participant_id not in self.room.lobby:
            return
        position, wait = self.room.lobby_position(self.participant_id)
        hosts = self.room.hosts_present
        shown = (position, round(wait / 30), hosts)  # a message only when something a person sees changed
        if shown != self._last_lobby_position:
            self._last_lobby_position = shown
            await self.send(sig.server_lobby(position, wait, self.room.name, hosts, self.resume_token()))

    def _on_lobby_news(self, news: LobbyNews) -> None:
        if self.phase != "lobby":
            return
        if isinstance(news, LobbyAdmitted):
            self._stop_lobby_events()
            self._spawn(self._enter_meeting())
        elif isinstance(news, LobbyEnded):
            self._stop_lobby_events()
            self._spawn(self.end_by_room(news.ending))
        else:
            self._spawn(self._send_lobby_position())  # position, or whether a host is there

    def _stop_lobby_events(self) -> None:
        if self._lobby is not None:
            self._lobby.stop()
            self._lobby = None

    async def _enter_meeting(self) -> None:
        conference = self.conference
        assert conference is not None
        self.phase = "meeting"
        you = self._you()
        assert you is not None
        await self.send(
            sig.server_joined(
                you, conference.room.public(you["role"] == "host"), self.resume_token(), self.hub.config.webrtc.ice_servers
            )
        )
        self._log.info("joined meeting", role=you["role"])
        history = [m.public() for m in conference.room.chat.messages]
        if history:
            await self.send(sig.server_chat(history))
        webrtc = self.hub.config.webrtc
        self.media = BrowserMedia(
            webrtc,
            webrtc.video_slots,
            on_audio=self._on_audio_packet,
            on_video=self._on_video_frame,
            on_keyframe_wanted=conference.video.request_keyframe,
            on_content=self._on_content_frame,
        )
        self.media.on_downlink = self._on_downlink
        conference.attach(self)
        media = self.media
        sdp = await media.create_offer()
        if self.phase != "meeting" or self.media is not media:
            return  # removed, ended or gone while the offer was being made
        await self.send(sig.server_offer(sdp, media.audio_mid, media.camera_mid, media.slot_map(), media.screen_mid))
        self._negotiation_timer = asyncio.get_running_loop().call_later(
            webrtc.negotiation_timeout_s, lambda: self._spawn(self._negotiation_timed_out())
        )
        self._schedule_state()

    async def _negotiation_timed_out(self) -> None:
        self._log.warning("browser did not answer the offer in time")
        await self.send(sig.server_error("negotiation_timeout", "no answer to the media offer"))
        await self._lose_connection()

    async def _on_answer(self, msg: sig.Answer) -> None:
        self._require_meeting("answer")
        assert self.media is not None and self.conference is not None
        if self._negotiation_timer is not None:
            self._negotiation_timer.cancel()
            self._negotiation_timer = None
        media = self.media
        try:
            await media.accept_answer(msg.sdp)
        except Exception as exc:
            self._log.warning("bad SDP answer", error=str(exc))
            await self.send(sig.server_error("bad_answer", f"the SDP answer was not accepted: {exc}", "answer"))
            return
        if self.phase != "meeting" or self.media is not media or self.conference is None:
            return  # removed or gone while the answer was being applied
        self._media_ready = True
        self.video_codecs = media.video_codecs
        self.conference.attach_video_receiver(self)
        # a sender's codec known (its first frame) or changed: it may belong in another slot
        self._unwatch_video = self.conference.watch_video_sources(lambda _source: self._update_video_slots())
        self._update_video_slots(force=True)
        self._log.info("media negotiated", video_codecs=list(self.video_codecs))

    async def _on_mute_self(self, msg: sig.SelfMute) -> None:
        self._require_meeting("mute_self")
        self.room.set_self_muted(self.participant_id, msg.muted)

    async def _on_video_self(self, msg: sig.SelfVideo) -> None:
        self._require_meeting("video_self")
        self.room.set_video_off(self.participant_id, msg.off)

    async def _on_hand(self, msg: sig.Hand) -> None:
        self._require_meeting("hand")
        self.room.set_hand(self.participant_id, msg.participant or self.participant_id, msg.raised)

    async def _on_mute(self, msg: sig.Mute) -> None:
        self._require_meeting("mute")
        self.room.mute(self.participant_id, msg.participant, msg.forbid_self_unmute)

    async def _on_unmute(self, msg: sig.Unmute) -> None:
        self._require_meeting("unmute")
        self.room.unmute(self.participant_id, msg.participant)

    async def _on_mute_all(self, msg: sig.MuteAll) -> None:
        self._require_meeting("mute_all")
        self.room.mute_all_guests(self.participant_id, msg.forbid_self_unmute)

    async def _on_allow_all_unmute(self, _msg: sig.AllowAllUnmute) -> None:
        self._require_meeting("allow_all_unmute")
        self.room.allow_guests_to_unmute(self.participant_id)

    async def _on_forbid_self_unmute(self, msg: sig.ForbidSelfUnmute) -> None:
        self._require_meeting("forbid_self_unmute")
        self.room.set_self_unmute_forbidden(self.participant_id, msg.participant, msg.forbidden)

    async def _on_remove(self, msg: sig.Remove) -> None:
        self._require_meeting("remove")
        if msg.participant == self.participant_id:
            raise RoomError("use leave to leave the meeting", "not_allowed")
        self.room.remove(self.participant_id, msg.participant)

    async def _on_lock(self, msg: sig.Lock) -> None:
        self._require_meeting("lock")
        self.room.set_locked(self.participant_id, msg.locked)

    async def _on_admit(self, msg: sig.Admit) -> None:
        self._require_meeting("admit")
        self.room.admit(self.participant_id, msg.participant)

    async def _on_deny(self, msg: sig.Deny) -> None:
        self._require_meeting("deny")
        self.room.deny(self.participant_id, msg.participant)

    async def _on_broadcast(self, msg: sig.Broadcast) -> None:
        """A host starts or stops recording or streaming the meeting (the room's settings decide
        whether it may; the record says who)."""
        self._require_meeting("broadcast")
        you = self.room.get(self.participant_id)
        if not you.is_host:
            raise NotAllowed("only a host may record or stream the meeting")
        if self.hub.live is None:
            raise RoomError("this gateway neither records nor streams", "broadcasts_disabled")
        actor = f"host {you.name} ({self.participant_id})"
        if msg.on:
            self.hub.live.start_broadcast(self.room.id, msg.what, actor)
        else:
            self.hub.live.stop_broadcast(self.room.id, msg.what, actor)

    async def _on_set_layout(self, msg: sig.SetLayout) -> None:
        self._require_meeting("set_layout")
        self.room.set_layout(self.participant_id, Layout(msg.layout))

    async def _on_spotlight(self, msg: sig.Spotlight) -> None:
        self._require_meeting("spotlight")
        self.room.set_spotlight(self.participant_id, msg.participant)

    async def _on_present(self, msg: sig.Present) -> None:
        """Sharing the screen starts or stops the participant's presentation; the room decides
        whether it may (its `presenters` policy) and tells the one it takes the floor from."""
        self._require_meeting("present")
        if msg.on:
            self.room.start_presenting(self.participant_id, Content.SCREEN)
        else:
            self.room.stop_presenting(by=self.participant_id, participant_id=self.participant_id)

    async def _on_stop_presentation(self, msg: sig.StopPresentation) -> None:
        self._require_meeting("stop_presentation")
        self.room.stop_presenting(by=self.participant_id, participant_id=msg.participant)

    async def _on_end_meeting(self, _msg: sig.EndMeeting) -> None:
        self._require_meeting("end_meeting")
        self.room.end(self.participant_id)

    def _require_host(self, request: str) -> None:
        self._require_meeting(request)
        me = self.room.participants.get(self.participant_id)
        if me is None or not me.is_host:
            raise NotAllowed("only a host may do this")

    async def _on_list_systems(self, _msg: sig.ListSystems) -> None:
        self._require_host("list_systems")
        systems = self.hub.directory.systems.values()
        await self.send(sig.server_systems([{"id": s.id, "name": s.name} for s in systems]))

    async def _on_dial(self, msg: sig.Dial) -> None:
        self._require_host("dial")
        if self.hub.live is None:
            raise RoomError("inviting is not available", "sip_disabled")
        me = self.room.participants[self.participant_id]
        placed = await self.hub.live.dial(self.room.id, f"host {me.name} ({self.participant_id})", msg.uri, msg.system)
        await self.send(sig.server_notice("dial_placed", uri=placed["uri"]))

    async def _on_chat(self, msg: sig.Chat) -> None:
        self._require_meeting("chat")
        self.room.send_chat(self.participant_id, msg.text)  # (its text is never logged)

    async def _on_chat_remove(self, msg: sig.ChatRemove) -> None:
        self._require_meeting("chat_remove")
        self.room.remove_chat(self.participant_id, msg.id)

    async def _on_chat_enable(self, msg: sig.ChatEnable) -> None:
        self._require_meeting("chat_enable")
        self.room.set_chat(self.participant_id, msg.enabled)

    async def _on_leave(self, _msg: sig.Leave) -> None:
        self._log.info("participant left")
        await self._finish(keep_place=False)
        reason = sig.ENDED_REASONS[Ending.LEFT]
        await self.send(sig.server_ended(reason))
        await self._close(1000, reason)

    # -- media ----------------------------------------------------------------------------------

    def _on_audio_packet(self, codec: str, seq: int, payload: bytes, level: float | None, arrival: float) -> None:
        if codec == "opus" and self.conference is not None:
            self.conference.push_audio(self.participant_id, seq, payload, level, arrival)

    def _on_video_frame(self, frame: EncodedVideoFrame) -> None:
        if self.conference is not None:
            self.conference.push_video(self.participant_id, frame)

    def _on_content_frame(self, frame: EncodedVideoFrame) -> None:
        # (the conference drops it unless this participant holds the room's presentation floor)
        if self.conference is not None:
            self.conference.push_video(self.participant_id, frame, StreamKind.CONTENT)

    def wanted_video(self) -> list[VideoSourceId]:
        """What this browser should see, most wanted first: someone else's presentation (its
        content), then the spotlight, the speakers, and the others by when they joined."""
        room = self.room
        wanted: list[VideoSourceId] = []
        presentation = room.presentation
        if presentation is not None and presentation.presenter != self.participant_id:
            wanted.append(VideoSourceId(presentation.presenter, StreamKind.CONTENT))
        others = [p for p in room.participants.values() if p.id != self.participant_id and not p.video_off]
        # The spotlight first: with more videos than slots, everyone still sees who a host chose.
        others.sort(key=lambda p: (p.id != room.spotlight, not p.speaking, p.joined_at))
        wanted.extend(VideoSourceId(p.id) for p in others)
        return wanted

    def _update_video_slots(self, force: bool = False) -> None:
        if self.media is None or self.conference is None or not self.video_codecs:
            return
        changed = self.media.assign_slots(self.wanted_video(), self.conference.video_source_codec)
        if changed or force:
            shown = [s.source for s in self.media.slots if s.source is not None]
            self.conference.set_video_subscriptions(self.participant_id, shown, self.media.slot_codecs())
            self._spawn(self.send(sig.server_video_slots(self.media.slot_map())))
            self._choose_layers()

    def _on_downlink(self, bps: int) -> None:
        """A new REMB from the browser: kept for LAYER_PEAK_S (its recent peak), the layers chosen anew."""
        now = time.monotonic()
        self._estimates.append((now, bps))
        while now - self._estimates[0][0] > LAYER_PEAK_S:
            self._estimates.popleft()
        self._choose_layers()

    def _choose_layers(self) -> None:
        """Which simulcast layer of each camera shown this browser gets. By bandwidth: the better
        layers while what the browser says it can receive (its REMB) covers what they send; the
        lower ones when it falls (from its recent peak) short of that, and the better ones tried
        again after a while (a REMB only grows with what is sent: waiting for it to exceed the
        better layers would wait forever), each failed try waiting twice as long. By tile size: of
        all but the spotlight when it shows more cameras than SMALL_TILES_FROM."""
        if self.media is None or self.conference is None:
            return
        video = self.conference.video
        cameras = [s.source for s in self.media.slots if s.source is not None and s.source.stream is StreamKind.MAIN]
        if not cameras:
            return
        bps = self.media.downlink_bps
        now = time.monotonic()
        need = sum(max(video.layer_bps(source).values(), default=0.0) for source in cameras)
        # A REMB that fell from its recent peak is congestion; one still climbing is a browser
        # whose estimate is warming up (it grows by a few percent a second), not a short link.
        falling = bps is not None and bps < LAYER_FALL_SHARE * max((b for _, b in self._estimates), default=bps)
        if bps is not None and need > 0:
            if not self._low_layer and falling and bps < need * LAYER_DOWN_SHARE:
                self._low_layer, self._low_since = True, now
                self._log.info("simulcast: lower layers for this browser", downlink_bps=bps, needed_bps=round(need))
            elif self._low_layer and (bps > need * LAYER_UP_SHARE or now - self._low_since > self._retry_after):
                tried = bps <= need * LAYER_UP_SHARE
                self._retry_after = min(self._retry_after * 2, LAYER_RETRY_MAX_S) if tried else LAYER_RETRY_S
                self._low_layer = False
        small_tiles = len(cameras) > SMALL_TILES_FROM
        spotlight = self.conference.room.spotlight
        for source in cameras:
            low = self._low_layer or (small_tiles and source.participant != spotlight)
            video.want_layer(self.participant_id, source, 0 if low else None)

    # -- the Leg interface ----------------------------------------------------------------------

    def send_audio(self, frame: MixedFrame) -> None:
        if self.media is not None:
            self.media.send_audio(frame)

    def send_video(self, source: VideoSourceId, frame: EncodedVideoFrame) -> None:
        if self.media is not None:
            self.media.send_video(source, frame)

    @property
    def video_streams(self) -> Mapping[StreamKind, VideoStream]:
        return self.media.video_streams if self.media is not None else {}

    def media_counters(self) -> dict[str, Any]:
        return self.media.counters() if self.media else {}

    def on_room_event(self, event: RoomEvent) -> None:
        me = self.participant_id
        if event.type == "chat_message":  # (the room's state is unchanged: no state to send)
            self._spawn(self.send(sig.server_chat([event.data["message"]])))
            return
        if event.type == "chat_removed":
            self._spawn(self.send(sig.server_chat_removed(event.data["id"])))
            return
        speaking = event.type in ("speaking_started", "speaking_stopped")
        self._schedule_state(urgent=not speaking)
        if event.type in _SLOT_EVENTS:
            self._update_video_slots()
        elif speaking and self.media is not None and len(self.room.participants) + (self.room.presentation is not None) > len(self.media.slots) + 1:
            self._update_video_slots()  # more videos (content takes a slot) than slots: speakers move into view
        if event.participant == me and event.type in _OWN_STATE_EVENTS and self.phase == "meeting":
            self._spawn(self.send(sig.server_resume(self.resume_token())))  # (what another node would take)
        if event.participant == me and event.by != me:
            notice = {
                "self_unmute_forbidden": "self_unmute_forbidden",
                "self_unmute_allowed": "self_unmute_allowed",
                "hand_lowered": "hand_lowered",
            }.get(event.type)
            if event.type in ("muted", "unmuted", "mute_changed"):
                notice = "host_muted" if event.data.get("host_muted") else "host_unmuted"
            if notice is not None:
                self._spawn(self.send(sig.server_notice(notice, by=self._name_of(event.by))))
            if event.type == "presentation_stopped" and event.data.get("reason") in _TOLD_STOPS:
                # (the page stops sharing its screen, and says why)
                self._spawn(
                    self.send(
                        sig.server_notice("presentation_stopped", reason=event.data["reason"], by=self._name_of(event.by))
                    )
                )
        if event.type == "lobby_changed" and event.data.get("name") and not event.data.get("left"):
            you = self._you()
            if you is not None and you["role"] == "host" and event.by is None:
                self._spawn(self.send(sig.server_notice("lobby_waiting", name=event.data["name"])))

    def _name_of(self, pid: str | None) -> str | None:
        if pid is None:
            return None
        p = self.room.participants.get(pid)
        return p.name if p else None

    def _schedule_state(self, urgent: bool = True) -> None:
        """Sends the room state soon: at the next loop turn for real changes, within 250 ms for
        speaking indications (which change often and must not cost every session a send per tick)."""
        if self._state_pending:
            if urgent and self._state_timer is not None:
                self._state_timer.cancel()
                self._state_timer = None
                asyncio.get_running_loop().call_soon(self._flush_state)
            return
        self._state_pending = True
        loop = asyncio.get_running_loop()
        if urgent:
            loop.call_soon(self._flush_state)
        else:
            self._state_timer = loop.call_later(0.25, self._flush_state)

    def _flush_state(self) -> None:
        if not self._state_pending:
            return
        self._state_pending = False
        self._state_timer = None
        if self.phase == "meeting" and self.conference is not None:
            you = self._you()
            if you is not None:
                room = self.hub.room_json(self.conference, you["role"] == "host")
                you_json = json.dumps(you, separators=(",", ":"))
                self._spawn(self.send(f'{{"type":"state","room":{room},"you":{you_json}}}'))

    async def hang_up(self, reason: str) -> None:
        """The Leg interface: the room ended our part (`reason`: removed, meeting_ended, shutdown)."""
        await self.end_by_room(ending_for(reason))

    # -- endings --------------------------------------------------------------------------------

    async def end_by_room(self, ending: Ending) -> None:
        """Ends the session of someone in the meeting or its lobby: removed, denied, meeting ended."""
        if self.phase == "ended":
            return
        reason = sig.ENDED_REASONS[ending]
        self._log.info("session ended by the room", reason=reason)
        await self._finish(keep_place=False)
        await self.send(sig.server_ended(reason))
        await self._close(1000, reason)

    async def _end(self, ending: Ending) -> None:
        """Ends a session that never came in (refused at the door)."""
        self.phase = "ended"
        self.hub.sessions.discard(self)
        hours = None
        room = self.conference.room if self.conference is not None else None
        if ending is Ending.OUTSIDE_HOURS and room is not None and room.opening_hours is not None:
            hours = room.opening_hours.public(time.time())
        reason = sig.ENDED_REASONS[ending]
        await self.send(sig.server_ended(reason, hours))
        await self._close(1000, reason)

    async def _finish(self, keep_place: bool) -> None:
        """Leaves the room (or keeps the place for a reconnect) and releases the media."""
        if self.phase == "ended":
            return
        previous, self.phase = self.phase, "ended"
        self.hub.sessions.discard(self)
        self._stop_lobby_events()
        if self._negotiation_timer is not None:
            self._negotiation_timer.cancel()
        conference = self.conference
        self._unwatch_video()
        if conference is not None and self.participant_id:
            conference.detach(self.participant_id)
            if (
                keep_place
                and previous == "meeting"
                and self._media_ready
                and self.participant_id in conference.room.participants
            ):
                self.hub.keep_place(self.place, conference, self.participant_id)
                conference.room.set_connected(self.participant_id, False)
                self._log.info("connection lost; place kept", grace_s=self.hub.config.webrtc.reconnect_grace_s)
            elif keep_place and previous == "lobby" and self.participant_id in conference.room.lobby:
                self.hub.keep_place(self.place, conference, self.participant_id)
                self._log.info("connection lost; place in the queue kept")
            else:
                conference.room.leave(self.participant_id)
                self.hub.spend(self.place)
        if self.media is not None:
            media, self.media = self.media, None
            await media.close()

    async def _lose_connection(self) -> None:
        await self._finish(keep_place=True)
        await self._close(1011, "connection lost")

    async def socket_closed(self) -> None:
        await self._finish(keep_place=True)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
