"""One meeting across nodes: each node serves its own participants of a room, and the nodes' shares
are joined by links, the way Pexip joins the nodes of one conference.

Where a room is in use on several nodes (a phone's call and a browser landed apart: a front hashed
two aliases differently, a node came back, a drain), the node with the highest rendezvous score of
(room, node) among them is the room's hub; every other node links to the hub alone, so the links
form a star and nobody hears a voice twice. Per link:
- audio: each side's mixer takes the link as one voice (conference.attach_link): it sends its
  mix-minus and takes the other side's in (media.py, SRTP);
- video, the way an SFU cascades: each side tells the other which cameras it can send
  (`video_sources`: its own participants', and at the hub those of the other edges); the other
  side shows each as a source of its mirror (conference.attach_remote_video) and asks for those
  someone there takes, a browser or its composed picture (`video_want`). Frames cross as they were
  encoded, once per camera and link whoever takes them there; keyframe requests go back
  (`keyframe`);
- the chat: a message crosses to every node (`chat`), each node giving it an id of its own; a
  host's removal crosses too, named as the receiving node knows it;
- the presentation floor: a start or stop of a participant a node serves crosses (`presentation`);
  the latest start wins on every node, so two that started at once agree. The presenter's content
  crosses like a camera;
- the roster: each side shows the other's participants as mirrors (Room.add_mirror) with their state;
- control: a participant's state is written by the node that serves it. A host's action on a mirror
  (mute, allow to unmute, remove, lower the hand) changes the mirror here at once and goes to the
  serving node as a command, which applies it on its own mixer: the mute is enforced on the media
  before that node's mix crosses the link. Room-wide actions (mute all guests and its policy, lock,
  end the meeting) go to the other side as room commands.
Events a link message caused are not sent back (`_applying`), except a served participant's state:
that always goes out, so both sides converge on the serving node's word.

Sans-IO towards the network: messages leave through `send(peer, message)`, media through the peers'
`PeerMedia` and `send_media`; the asyncio adapter (backplane.py) feeds `peer_up`, `peer_down`,
`on_message` and `on_media`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.cluster.media import PeerMedia
from gateway.rooms.chat import KEPT, MAX_TEXT
from gateway.rooms.conference import Conference
from gateway.rooms.directory import Directory
from gateway.rooms.errors import RoomError
from gateway.rooms.events import RoomEvent
from gateway.rooms.floor import Content, StopReason
from gateway.rooms.participant import LegKind, MirrorState, Role
from gateway.transcode.audio import AudioCodec, AudioFormat
from gateway.transcode.codecs import StreamKind
from gateway.transcode.layout import Layout
from gateway.transcode.mixer import MixedFrame
from gateway.transcode.video import EncodedVideoFrame, VideoSourceId

log = structlog.get_logger(__name__)

# Between machines: Opus. Between the workers of one machine: the samples as they are (L16), no codec.
LINK_FORMAT = AudioFormat(AudioCodec.OPUS, bitrate=64_000, complexity=5)
LOCAL_LINK_FORMAT = AudioFormat(AudioCodec.L16)
_ID = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@+#-]+$")]
_STATE_EVENTS = {
    "muted",
    "unmuted",
    "mute_changed",
    "self_unmute_forbidden",
    "self_unmute_allowed",
    "hand_raised",
    "hand_lowered",
    "speaking_started",
    "speaking_stopped",
    "connection_changed",
    "quality_changed",
    "video_changed",
}
# Room settings a host changes on one node, the others follow: event -> (room command, its value)
_SETTINGS: dict[str, Callable[[dict[str, Any]], tuple[str, str | None]]] = {
    "layout_changed": lambda data: ("layout", str(data["layout"])),
    "spotlight_changed": lambda data: ("spotlight", data.get("spotlight")),
    "chat_changed": lambda data: ("chat", "on" if data.get("enabled") else "off"),
}
# Which setting a room command changes (the latest change of each wins; "end" is no setting)
_SETTING_OF = {
    "lock": "lock", "unlock": "lock", "mute_all_guests": "mute_policy", "allow_guests_to_unmute": "mute_policy",
    "layout": "layout", "spotlight": "spotlight", "chat": "chat",
}  # fmt: skip
_LINK_VIDEO_CODECS = ("VP8", "H264")  # (what a link takes: any camera, as it was encoded)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoomsMessage(_Message):
    """The rooms in use on the sending node (all of them, at connect; then one at a time)."""

    type: Literal["rooms"]
    active: list[_ID] = Field(max_length=100_000)
    inactive: list[_ID] = Field(default_factory=list, max_length=100_000)


class ParticipantMessage(_Message):
    """A participant the sending node serves joined or changed."""

    type: Literal["participant"]
    room: _ID
    id: _ID
    name: str = Field(max_length=200)
    role: Role
    kind: LegKind
    joined_at: float
    self_muted: bool
    host_muted: bool
    self_unmute_forbidden: bool
    hand_raised: bool
    video_off: bool = False
    speaking: bool
    connected: bool
    quality: Literal["good", "fair", "poor"] | None = None


class LeftMessage(_Message):
    type: Literal["left"]
    room: _ID
    id: _ID


class LobbyMessage(_Message):
    """Someone the sending node waits in the room's lobby (`waiting`), or no longer."""

    type: Literal["lobby"]
    room: _ID
    id: _ID
    waiting: bool
    name: str = Field("", max_length=200)
    kind: LegKind = LegKind.BROWSER
    waiting_since: float = 0.0  # (wall clock)


class CommandMessage(_Message):
    """A host on the sending node acted on a participant the receiving node serves."""

    type: Literal["command"]
    room: _ID
    id: _ID
    action: Literal["host_mute", "set_forbidden", "remove", "lower_hand", "admit", "deny", "stop_presenting"]
    on: bool = False  # host_mute: muted or not; set_forbidden: forbidden or not
    forbid: bool = False  # host_mute: and forbidden to unmute


class RoomCommandMessage(_Message):
    type: Literal["room_command"]
    room: _ID
    action: Literal["mute_all_guests", "allow_guests_to_unmute", "lock", "unlock", "end", "layout", "spotlight", "chat"]
    forbid: bool = False
    value: _ID | None = None  # layout: its name; spotlight: the participant (None: none); chat: on or off
    # When and where the change was made: of two changes of one setting, the later wins on every node
    at: float = 0.0
    origin: _ID | None = None


class PresentationMessage(_Message):
    """A participant the sending node serves (or, at the hub, another edge) started or stopped presenting."""

    type: Literal["presentation"]
    room: _ID
    presenter: _ID
    presenting: bool
    content: Content = Content.SCREEN
    since: float = 0.0  # (wall clock: the latest start wins)
    reason: StopReason = StopReason.STOPPED


class ChatMessageMessage(_Message):
    """A chat message of the meeting (`id`: the sending node's)."""

    type: Literal["chat"]
    room: _ID
    id: int = Field(ge=0)
    sender: _ID
    name: str = Field(max_length=200)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    host: bool = False
    at: float = 0.0


class ChatRemovedMessage(_Message):
    """A host removed a chat message: `id` is the receiving node's own (`yours`) or the sending node's."""

    type: Literal["chat_removed"]
    room: _ID
    id: int = Field(ge=0)
    yours: bool = False


class Camera(_Message):
    id: _ID
    stream: Literal["main", "content"] = "main"

    def source(self) -> VideoSourceId:
        return VideoSourceId(self.id, StreamKind(self.stream))


class VideoSourcesMessage(_Message):
    """The cameras of the room the sending node can send (all of them, each time)."""

    type: Literal["video_sources"]
    room: _ID
    cameras: list[Camera] = Field(max_length=10_000)


class VideoWantMessage(_Message):
    """The cameras of the receiving node's participants someone on the sending node takes now."""

    type: Literal["video_want"]
    room: _ID
    cameras: list[Camera] = Field(max_length=10_000)


class KeyframeMessage(_Message):
    type: Literal["keyframe"]
    room: _ID
    camera: Camera


Message = Annotated[
    RoomsMessage
    | ParticipantMessage
    | LeftMessage
    | LobbyMessage
    | CommandMessage
    | RoomCommandMessage
    | VideoSourcesMessage
    | VideoWantMessage
    | KeyframeMessage
    | PresentationMessage
    | ChatMessageMessage
    | ChatRemovedMessage,
    Field(discriminator="type"),
]
MESSAGE = TypeAdapter(Message)


def hub_of(room: str, nodes: set[str]) -> str:
    """The room's hub among the nodes using it: the highest rendezvous score, the same answer on
    every node, and most links stay when a node comes or goes."""
    return max(nodes, key=lambda node: hashlib.sha256(f"{room}|{node}".encode()).digest())


@dataclass
class _Peer:
    media: PeerMedia
    ssrc: Callable[[str, str], int]  # (room, sending node) -> the stream's SSRC
    active: set[str] = field(default_factory=set)  # rooms in use there
    linked: set[str] = field(default_factory=set)  # rooms linked with it now
    audio: set[str] = field(default_factory=set)  # rooms whose audio crosses it now
    mirrored: dict[str, set[str]] = field(default_factory=dict)  # room -> its participants shown here
    # Video, per room: the cameras we told it we send, those it wants of us (we forward them), those
    # it told us it sends (and those of them shown here as sources), and those we asked it for
    cameras_told: dict[str, frozenset[VideoSourceId]] = field(default_factory=dict)
    cameras_out: dict[str, set[VideoSourceId]] = field(default_factory=dict)
    cameras_there: dict[str, frozenset[VideoSourceId]] = field(default_factory=dict)
    cameras_in: dict[str, set[VideoSourceId]] = field(default_factory=dict)
    cameras_asked: dict[str, frozenset[VideoSourceId]] = field(default_factory=dict)


class Cascade:
    def __init__(
        self,
        directory: Directory,
        node: str,
        send: Callable[[str, dict[str, Any]], None],
        send_media: Callable[[str, bytes], None],
        observe: bool = False,
        link_format: AudioFormat = LINK_FORMAT,
    ) -> None:
        self.directory = directory
        self.node = node
        self._send = send
        self._send_media = send_media
        # Link with every room in use anywhere, for its roster (the workers of one machine: any of
        # them then shows and commands every meeting, whichever the API request reached)
        self.observe = observe
        self.link_format = link_format
        self.peers: dict[str, _Peer] = {}
        self._active: set[str] = set()  # rooms in use here (someone this node serves is in)
        # The chat: per room, (our id -> the node it came from, its id there) and the way back
        self._chat_from: dict[str, OrderedDict[int, tuple[str, int]]] = {}
        self._chat_here: dict[str, dict[tuple[str, int], int]] = {}
        # (room, setting) -> when and where it was changed last: (wall clock, node)
        self._changed_at: dict[tuple[str, str], tuple[float, str]] = {}
        # room -> the conference whose video we watch, and how to stop
        self._video_watch: dict[str, tuple[Conference, Callable[[], None]]] = {}
        self._applying = False
        self.messages_refused = 0
        self._unsubscribe = directory.subscribe(self._on_event)

    @contextlib.contextmanager
    def _from_link(self) -> Iterator[None]:
        """While a link's message is applied here: the events it causes are not sent back."""
        self._applying = True
        try:
            yield
        finally:
            self._applying = False

    def close(self) -> None:
        self._unsubscribe()
        for peer in list(self.peers):
            self.peer_down(peer)

    # -- peers --------------------------------------------------------------------------------------

    def peer_up(self, peer: str, media: PeerMedia, ssrc: Callable[[str, str], int]) -> None:
        if peer in self.peers:
            self.peer_down(peer)
        self.peers[peer] = _Peer(media, ssrc)
        self._send(peer, RoomsMessage(type="rooms", active=sorted(self._active)).model_dump(mode="json"))

    def peer_down(self, peer: str) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        for room in list(state.linked):
            self._unlink(peer, state, room)
        for room in state.active:
            self._relink(room)

    def on_media(self, peer: str, data: bytes, addr: tuple[str, int]) -> None:
        state = self.peers.get(peer)
        if state is not None:
            state.media.receive(data, addr)

    def link_id(self, peer: str) -> str:
        return f"#node:{peer}"

    # -- links --------------------------------------------------------------------------------------

    def _hub(self, room: str) -> str | None:
        """The room's hub: of the nodes using it (this one too, if it does), the highest rendezvous
        score; None while no node uses it."""
        using = {peer for peer, state in self.peers.items() if room in state.active}
        if room in self._active:
            using.add(self.node)
        return hub_of(room, using) if using else None

    def _wanted(self, room: str) -> set[str]:
        """The peers this node links with for `room` now: the hub with every other node using it
        (observing: every node), the others with the hub."""
        hub = self._hub(room)
        if hub is None or (room not in self._active and not self.observe):
            return set()
        if hub == self.node:
            return set(self.peers) if self.observe else {p for p, s in self.peers.items() if room in s.active}
        return {hub} if hub in self.peers else set()

    def _relink(self, room: str) -> None:
        wanted = self._wanted(room)
        for peer, state in self.peers.items():
            if room in state.linked and peer not in wanted:
                self._unlink(peer, state, room)
        for peer in wanted:
            state = self.peers[peer]
            if room not in state.linked:
                self._link(peer, state, room)
            # Audio only between two nodes that both serve someone in the room (an observer's link
            # carries the roster and commands)
            self._set_audio(peer, state, room, room in self._active and room in state.active)

    def _link(self, peer: str, state: _Peer, room: str) -> None:
        conference = self.directory.conferences.get(room)
        if conference is None:
            return
        state.linked.add(room)
        log.info("room linked with node", room=room, peer=peer)
        # Everyone shown here who is not that node's own: ours, and (at the hub) the other nodes'
        for participant in list(conference.room.participants.values()):
            if participant.extra.get("via") != peer:
                self._send(peer, _participant_message(room, MirrorState.of(participant)))
        for entry in list(conference.room.lobby.values()):
            if entry.via != peer:
                self._send(peer, self._lobby_message(conference, entry.id))
        origins = self._chat_from.get(room)
        for message in list(conference.room.chat.messages):  # (what was said before the link)
            origin = origins.get(message.id) if origins is not None else None
            if origin is None or origin[0] != peer:
                self._send(peer, _chat_message(room, message.public()))
        for setting in self._settings_now(conference):
            self._send(peer, setting)
        presentation = conference.room.presentation
        if presentation is not None and self._served_apart_from(conference, presentation.presenter, peer):
            self._send(peer, _presentation_message(room, presentation.presenter, True, presentation.content, presentation.since))

    def _set_audio(self, peer: str, state: _Peer, room: str, on: bool) -> None:
        conference = self.directory.conferences.get(room)
        if conference is None or on == (room in state.audio):
            return
        link = self.link_id(peer)
        if not on:
            state.audio.discard(room)
            state.media.close_stream(room, state.ssrc(room, peer))
            conference.detach_link(link)
            self._video_off(peer, state, conference)
            return
        media = state.media

        def deliver(seq: int, payload: bytes) -> None:
            conference.push_audio(link, seq, payload, None, time.monotonic())

        def sink(frame: MixedFrame) -> None:
            packet = media.protect(room, frame.payload, marker=False)
            if packet is not None:
                self._send_media(peer, packet)

        state.audio.add(room)
        media.open_stream(room, state.ssrc(room, self.node), state.ssrc(room, peer), deliver)
        conference.attach_link(link, sink, self.link_format)
        self._video_on(peer, state, conference)

    # -- video ----------------------------------------------------------------------------------------

    def _video_on(self, peer: str, state: _Peer, conference: Conference) -> None:
        room = conference.room.id
        watched = self._video_watch.get(room)
        if watched is None or watched[0] is not conference:
            if watched is not None:
                watched[1]()
            stop = conference.watch_video(lambda kind, source: self._video_changed(room, kind, source))
            self._video_watch[room] = (conference, stop)
        self._tell_cameras(peer, state, conference)
        self._sync_cameras(peer, state, conference)

    def _video_off(self, peer: str, state: _Peer, conference: Conference) -> None:
        room = conference.room.id
        conference.video.remove_receiver(self.link_id(peer))
        for source in state.cameras_out.pop(room, set()):
            state.media.close_video_out((room, source))
        state.cameras_told.pop(room, None)
        state.cameras_there.pop(room, None)
        self._sync_cameras(peer, state, conference)  # (none now: their sources go)
        state.cameras_asked.pop(room, None)
        if not any(room in s.audio for s in self.peers.values() if s is not state):
            watched = self._video_watch.pop(room, None)
            if watched is not None:
                watched[1]()

    def _video_changed(self, room: str, kind: str, source: VideoSourceId) -> None:
        conference = self.directory.conferences.get(room)
        if conference is None:
            return
        for peer, state in list(self.peers.items()):
            if room not in state.audio:
                continue
            if kind == "source":
                self._tell_cameras(peer, state, conference)
            elif source in state.cameras_in.get(room, ()):
                self._ask_cameras(peer, state, conference)

    @staticmethod
    def _served_apart_from(conference: Conference, pid: str, peer: str) -> bool:
        """A participant of the room whom `peer` does not serve (here, or another node)."""
        participant = conference.room.participants.get(pid)
        return participant is not None and participant.extra.get("via") != peer

    def _tell_cameras(self, peer: str, state: _Peer, conference: Conference) -> None:
        """Which cameras we can send it: ours, and (at the hub) the other edges'."""
        room = conference.room.id
        cameras = frozenset(
            source for source in conference.video.source_ids()
            if source.stream is not StreamKind.AUDIO and self._served_apart_from(conference, source.participant, peer)
        )  # fmt: skip
        if cameras != state.cameras_told.get(room, frozenset()):
            state.cameras_told[room] = cameras
            message = VideoSourcesMessage(type="video_sources", room=room, cameras=_cameras(cameras))
            self._send(peer, message.model_dump(mode="json"))

    def _sync_cameras(self, peer: str, state: _Peer, conference: Conference) -> None:
        """Its cameras shown here as sources of their mirrors (while the room's media crosses)."""
        room = conference.room.id
        there = state.cameras_there.get(room, frozenset()) if room in state.audio else frozenset()
        wanted = {source for source in there if not self._served_apart_from(conference, source.participant, peer)}
        current = state.cameras_in.setdefault(room, set())
        for source in current - wanted:
            current.discard(source)
            state.media.close_video_in(state.ssrc(_camera_key(room, source), peer))
            conference.detach_remote_video(source)
        for source in wanted - current:
            current.add(source)

            def deliver(frame: EncodedVideoFrame, source: VideoSourceId = source) -> None:
                conference.push_video(source.participant, frame, source.stream)

            def lost(source: VideoSourceId = source) -> None:  # (the router limits the rate of asking)
                conference.video.request_keyframe(source)

            def ask(source: VideoSourceId = source) -> None:
                message = KeyframeMessage(type="keyframe", room=room, camera=_camera(source))
                self._send(peer, message.model_dump(mode="json"))

            state.media.open_video_in(state.ssrc(_camera_key(room, source), peer), deliver, lost)
            conference.attach_remote_video(source, ask)
        if not current:
            state.cameras_in.pop(room, None)
        self._ask_cameras(peer, state, conference)

    def _ask_cameras(self, peer: str, state: _Peer, conference: Conference) -> None:
        """Asks it for the cameras of its people someone here takes now (and no others)."""
        room = conference.room.id
        asked = frozenset(source for source in state.cameras_in.get(room, ()) if conference.video.demanded(source))
        if asked != state.cameras_asked.get(room, frozenset()):
            state.cameras_asked[room] = asked
            self._send(peer, VideoWantMessage(type="video_want", room=room, cameras=_cameras(asked)).model_dump(mode="json"))

    def _send_cameras(self, peer: str, state: _Peer, conference: Conference, message: VideoWantMessage) -> None:
        """It takes these of our cameras now: the link subscribes to them like a receiver, and
        forwards each frame as it came."""
        room = conference.room.id
        if room not in state.audio:
            return
        wanted = {c.source() for c in message.cameras if self._served_apart_from(conference, c.id, peer)}
        link = self.link_id(peer)
        out = state.cameras_out.get(room)
        if out is None:
            out = state.cameras_out[room] = set()
            media = state.media

            ssrcs: dict[VideoSourceId, int] = {}

            def forward(source: VideoSourceId, frame: EncodedVideoFrame) -> None:
                ssrc = ssrcs.get(source)
                if ssrc is None:  # (an HMAC: once per camera, not per frame)
                    ssrc = ssrcs[source] = state.ssrc(_camera_key(room, source), self.node)
                for packet in media.protect_video((room, source), ssrc, frame):
                    self._send_media(peer, packet)

            # (every simulcast layer: the router there gives each of its receivers the one it can take)
            conference.video.add_receiver(link, _LINK_VIDEO_CODECS, forward, all_layers=True)
        for source in out - wanted:
            state.media.close_video_out((room, source))
        conference.set_video_subscriptions(link, sorted(wanted))
        state.cameras_out[room] = wanted

    def _unlink(self, peer: str, state: _Peer, room: str) -> None:
        self._set_audio(peer, state, room, False)
        state.linked.discard(room)
        conference = self.directory.conferences.get(room)
        if conference is None:
            return
        gone = []
        with self._from_link():
            for mirror in conference.room.mirrors(peer):
                conference.room.leave(mirror.id)
                gone.append(mirror.id)
            waiting = [entry.id for entry in conference.room.lobby_mirrors(peer)]
            for entry_id in waiting:
                conference.room.remove_lobby_mirror(entry_id)
        state.mirrored.pop(room, None)
        for pid in gone:  # (at the hub: the other nodes see them go too)
            self._relay(room, LeftMessage(type="left", room=room, id=pid).model_dump(mode="json"), peer)
        for entry_id in waiting:
            self._relay(room, LobbyMessage(type="lobby", room=room, id=entry_id, waiting=False).model_dump(mode="json"), peer)
        if not any(room in other.linked for other in self.peers.values()):
            self._chat_from.pop(room, None)
            self._chat_here.pop(room, None)
            if not conference.room.in_use:  # (the meeting is over here: its settings' stamps with it)
                for key in [key for key in self._changed_at if key[0] == room]:
                    del self._changed_at[key]
        log.info("room unlinked from node", room=room, peer=peer)

    def _relay(self, room: str, message: dict[str, Any], came_from: str) -> None:
        """What one linked node said about `room`, passed on to the others it is linked with (at
        the hub; a node at the edge is linked with the hub alone)."""
        for peer, state in self.peers.items():
            if peer != came_from and room in state.linked:
                self._send(peer, message)

    # -- our events out -----------------------------------------------------------------------------

    def _on_event(self, event: RoomEvent) -> None:
        conference = self.directory.conferences.get(event.room)
        if conference is None:
            return
        room = conference.room
        pid = event.participant
        participant = room.participants.get(pid) if pid is not None else None
        via = participant.extra.get("via") if participant is not None else None
        linked = [peer for peer, state in self.peers.items() if event.room in state.linked]
        if event.type == "participant_joined" or event.type in _STATE_EVENTS:
            if participant is not None and via is None:
                if linked:  # (speaking changes come often: no message is built for nobody)
                    message = _participant_message(event.room, MirrorState.of(participant))
                    for peer in linked:
                        self._send(peer, message)
            elif participant is not None and not self._applying:
                self._command_for_mirror(event, participant, str(via))
        elif event.type in ("participant_left", "participant_removed") and pid is not None:
            mirror_of = self._mirror_owner(event.room, pid)
            if mirror_of is not None:
                if event.type == "participant_removed" and not self._applying:
                    self._send(mirror_of, CommandMessage(type="command", room=event.room, id=pid, action="remove").model_dump(mode="json"))
            else:
                for peer in linked:
                    self._send(peer, LeftMessage(type="left", room=event.room, id=pid).model_dump(mode="json"))
        elif event.type == "meeting_ended":
            own = [p for p in event.data.get("participants", []) if self._mirror_owner(event.room, p) is None]
            for peer in linked:
                for p in own:
                    self._send(peer, LeftMessage(type="left", room=event.room, id=p).model_dump(mode="json"))
                # (a node's shutdown or drain deadline ends only its own share)
                if not self._applying and event.data.get("reason") == "meeting_ended":
                    self._room_command(peer, event.room, "end")
        elif event.type == "lobby_changed" and pid is not None and "via" not in event.data:
            for peer in linked:  # (someone this node waits, or no longer)
                self._send(peer, self._lobby_message(conference, pid))
        elif event.type in ("lobby_admitted", "lobby_denied") and "via" in event.data and pid is not None:
            via = str(event.data["via"])
            if not self._applying and via in self.peers:  # (a host here decided on someone another node waits)
                action = "admit" if event.type == "lobby_admitted" else "deny"
                self._send(via, CommandMessage(type="command", room=event.room, id=pid, action=action).model_dump(mode="json"))
        elif event.type == "presentation_started" and pid is not None and not self._applying:
            presentation = room.presentation
            if presentation is not None and presentation.presenter == pid and via is None:
                message = _presentation_message(event.room, pid, True, presentation.content, presentation.since)
                for peer in linked:
                    self._send(peer, message)
        elif event.type == "presentation_stopped" and pid is not None and not self._applying:
            reason = StopReason(event.data.get("reason", StopReason.STOPPED))
            owner = self._mirror_owner(event.room, pid)
            if owner is None:  # (ours: its presenter stopped, a host here stopped it, it left)
                message = _presentation_message(event.room, pid, False, Content(event.data["content"]), reason=reason)
                for peer in linked:
                    self._send(peer, message)
            elif reason in (StopReason.STOPPED_BY_HOST, StopReason.STOPPED_BY_OPERATOR) and owner in self.peers:
                # (a host or the API here stopped another node's presenter: that node ends it)
                self._send(owner, CommandMessage(type="command", room=event.room, id=pid, action="stop_presenting").model_dump(mode="json"))
        elif not self._applying and event.type in ("room_locked", "room_unlocked"):
            self._room_change(linked, event, "lock" if event.type == "room_locked" else "unlock")
        elif not self._applying and event.type == "mute_policy_changed":
            on = bool(event.data.get("guests_muted_on_entry"))
            forbid = not event.data.get("guests_may_unmute", True)
            self._room_change(linked, event, "mute_all_guests" if on else "allow_guests_to_unmute", forbid)
        elif event.type == "chat_message" and not self._applying:
            message = _chat_message(event.room, event.data["message"])
            for peer in linked:
                self._send(peer, message)
        elif event.type == "chat_removed":
            local = int(event.data["id"])
            origins = self._chat_from.get(event.room)
            origin = origins.pop(local, None) if origins is not None else None
            if origin is not None:
                self._chat_here.get(event.room, {}).pop(origin, None)
            for peer in linked:
                yours = origin is not None and origin[0] == peer
                removed = ChatRemovedMessage(type="chat_removed", room=event.room, id=origin[1] if yours and origin else local, yours=yours)
                self._send(peer, removed.model_dump(mode="json"))
        elif not self._applying and event.type in _SETTINGS:
            action, value = _SETTINGS[event.type](event.data)
            self._room_change(linked, event, action, value=value)
        self._refresh(event.room, room.in_use)

    def _lobby_message(self, conference: Conference, entry_id: str) -> dict[str, Any]:
        room = conference.room
        entry = room.lobby.get(entry_id)
        if entry is None:
            return LobbyMessage(type="lobby", room=room.id, id=entry_id, waiting=False).model_dump(mode="json")
        return LobbyMessage(
            type="lobby", room=room.id, id=entry_id, waiting=True, name=entry.name, kind=entry.kind,
            waiting_since=room.waiting_since(entry_id),
        ).model_dump(mode="json")  # fmt: skip

    def _mirror_owner(self, room: str, pid: str) -> str | None:
        for peer, state in self.peers.items():
            if pid in state.mirrored.get(room, ()):
                return peer
        return None

    def _command_for_mirror(self, event: RoomEvent, participant: Any, via: str) -> None:
        """A host here acted on a participant node `via` serves: that node applies it."""
        command: CommandMessage | None = None
        if event.type in ("muted", "unmuted", "mute_changed"):
            command = CommandMessage(
                type="command", room=event.room, id=participant.id, action="host_mute",
                on=participant.host_muted, forbid=participant.self_unmute_forbidden,
            )
        elif event.type in ("self_unmute_forbidden", "self_unmute_allowed"):
            command = CommandMessage(
                type="command", room=event.room, id=participant.id, action="set_forbidden",
                on=event.type == "self_unmute_forbidden",
            )
        elif event.type == "hand_lowered":
            command = CommandMessage(type="command", room=event.room, id=participant.id, action="lower_hand")
        if command is not None and via in self.peers:
            self._send(via, command.model_dump(mode="json"))

    def _room_command(self, peer: str, room: str, action: str) -> None:
        self._send(peer, RoomCommandMessage(type="room_command", room=room, action=action).model_dump(mode="json"))

    def _settings_now(self, conference: Conference) -> list[dict[str, Any]]:
        """The meeting's settings that were changed, as they are now, with when and where (for a
        node that links later: it follows the later of its own and these)."""
        room = conference.room
        now: dict[str, tuple[str, bool, str | None]] = {
            "lock": ("lock" if room.locked else "unlock", False, None),
            "mute_policy": ("mute_all_guests" if room.guests_muted_on_entry else "allow_guests_to_unmute", room.guests_forbidden_on_entry, None),
            "layout": ("layout", False, room.layout.value),
            "spotlight": ("spotlight", False, room.spotlight),
            "chat": ("chat", False, "on" if room.chat.enabled else "off"),
        }
        out = []
        for setting, (action, forbid, value) in now.items():
            stamp = self._changed_at.get((room.id, setting))
            if stamp is not None:
                out.append(RoomCommandMessage(
                    type="room_command", room=room.id, action=action, forbid=forbid, value=value, at=stamp[0], origin=stamp[1] or None,
                ).model_dump(mode="json"))  # fmt: skip
        return out

    def _room_change(self, linked: list[str], event: RoomEvent, action: str, forbid: bool = False, value: str | None = None) -> None:
        """A host here changed a setting of the meeting: the other nodes follow, stamped."""
        self._changed_at[(event.room, _SETTING_OF[action])] = (event.at, self.node)
        message = RoomCommandMessage(
            type="room_command", room=event.room, action=action, forbid=forbid, value=value, at=event.at, origin=self.node
        ).model_dump(mode="json")
        for peer in linked:
            self._send(peer, message)

    def publishes(self, room: str) -> bool:
        """Whether this node speaks for the room's room-wide events (MQTT): its hub does, or
        anyone while no node uses it."""
        hub = self._hub(room)
        return hub is None or hub == self.node

    def _refresh(self, room: str, in_use: bool) -> None:
        if in_use == (room in self._active):
            return
        if in_use:
            self._active.add(room)
            message = RoomsMessage(type="rooms", active=[room])
        else:
            self._active.discard(room)
            message = RoomsMessage(type="rooms", active=[], inactive=[room])
        for peer in list(self.peers):
            self._send(peer, message.model_dump(mode="json"))
        self._relink(room)

    # -- their messages in --------------------------------------------------------------------------

    def on_message(self, peer: str, raw: dict[str, Any]) -> None:
        state = self.peers.get(peer)
        if state is None:
            return
        try:
            message = MESSAGE.validate_python(raw)
        except ValidationError as exc:
            self.messages_refused += 1
            log.warning("backplane message refused", peer=peer, errors=exc.error_count(), first=_first_error(exc))
            return
        if isinstance(message, RoomsMessage):
            before = set(state.active)
            state.active |= set(message.active)
            state.active -= set(message.inactive)
            for room in before ^ state.active:
                self._relink(room)
            return
        conference = self.directory.conferences.get(message.room)
        if conference is None or message.room not in state.linked:
            return  # (a room not linked with it now: a late message, or one that was never ours)
        try:
            self._apply(peer, state, conference, message)
            if isinstance(message, ParticipantMessage | LeftMessage | LobbyMessage | RoomCommandMessage | PresentationMessage):
                self._relay(message.room, raw, peer)
        except (RoomError, ValueError) as exc:  # (ValueError: a layout this node does not know)
            log.info("backplane message not applied", peer=peer, room=message.room, type=message.type, reason=str(exc))

    def _apply(self, peer: str, state: _Peer, conference: Conference, message: Any) -> None:
        room = conference.room
        mirrored = state.mirrored.setdefault(message.room, set())
        if isinstance(message, ParticipantMessage):
            existing = room.participants.get(message.id)
            if existing is not None and existing.extra.get("via") != peer:
                raise RoomError("a participant of that id is served elsewhere")
            mirror = MirrorState(**message.model_dump(exclude={"type", "room"}))
            with self._from_link():
                room.add_mirror(mirror, via=peer)
            if message.id not in mirrored:
                mirrored.add(message.id)
                self._sync_cameras(peer, state, conference)  # (its camera may have been told before)
        elif isinstance(message, LeftMessage):
            if message.id in mirrored:
                with self._from_link():
                    room.leave(message.id)
                mirrored.discard(message.id)
                self._sync_cameras(peer, state, conference)
        elif isinstance(message, VideoSourcesMessage):
            state.cameras_there[message.room] = frozenset(c.source() for c in message.cameras)
            self._sync_cameras(peer, state, conference)
        elif isinstance(message, VideoWantMessage):
            self._send_cameras(peer, state, conference, message)
        elif isinstance(message, PresentationMessage):
            if message.presenter not in mirrored:
                return  # (only the node that serves the presenter says)
            with self._from_link():
                if message.presenting:
                    room.mirror_presentation(message.presenter, message.content, message.since)
                else:
                    room.end_presentation_of(message.presenter, message.reason)
        elif isinstance(message, ChatMessageMessage):
            with self._from_link():
                shown = room.mirror_chat(message.sender, message.name, message.text, message.host, message.at)
            if shown is None:
                return
            origins = self._chat_from.setdefault(message.room, OrderedDict())
            here = self._chat_here.setdefault(message.room, {})
            origins[shown.id] = (peer, message.id)
            here[(peer, message.id)] = shown.id
            while len(origins) > 2 * KEPT:  # (older ones are gone from the chat's history anyway)
                _, old = origins.popitem(last=False)
                here.pop(old, None)
            relayed = _chat_message(message.room, shown.public())  # (at the hub: on to the other edges)
            for other, other_state in self.peers.items():
                if other != peer and message.room in other_state.linked:
                    self._send(other, relayed)
        elif isinstance(message, ChatRemovedMessage):
            local = message.id if message.yours else self._chat_here.get(message.room, {}).get((peer, message.id))
            if local is not None:
                room.remove_chat(None, local)  # (its event tells the other nodes, each by its id)
        elif isinstance(message, KeyframeMessage):
            source = message.camera.source()
            if source in state.cameras_out.get(message.room, ()):
                conference.video.request_keyframe(source)
        elif isinstance(message, LobbyMessage):
            with self._from_link():
                if message.waiting:
                    room.add_lobby_mirror(message.id, message.name, message.kind, message.waiting_since, via=peer)
                else:
                    room.remove_lobby_mirror(message.id)
        elif isinstance(message, CommandMessage) and message.action in ("admit", "deny"):
            entry = room.lobby.get(message.id)
            if entry is None:
                return
            if entry.via is not None:  # (at the hub: another node waits them)
                if entry.via != peer and entry.via in self.peers:
                    self._send(entry.via, message.model_dump(mode="json"))
            elif message.action == "admit":
                room.admit(None, message.id)
            else:
                room.deny(None, message.id)
        elif isinstance(message, CommandMessage):
            target = room.participants.get(message.id)
            if target is None:
                return
            via = target.extra.get("via")
            if via is not None:  # (at the hub: another node serves it)
                if via != peer and via in self.peers:
                    self._send(via, message.model_dump(mode="json"))
                return
            if message.action == "host_mute":
                if message.on:
                    room.mute(None, message.id, message.forbid)
                else:
                    room.unmute(None, message.id)
            elif message.action == "set_forbidden":
                room.set_self_unmute_forbidden(None, message.id, message.on)
            elif message.action == "remove":
                room.remove(None, message.id)
            elif message.action == "lower_hand":
                room.set_hand(None, message.id, False)
            elif message.action == "stop_presenting":
                room.end_presentation_of(message.id, StopReason.STOPPED_BY_HOST)
        elif isinstance(message, RoomCommandMessage):
            setting = _SETTING_OF.get(message.action)
            if setting is not None:
                stamp, key = (message.at, message.origin or ""), (message.room, setting)
                if stamp <= self._changed_at.get(key, (0.0, "")):
                    return  # (changed here or elsewhere since: the later change stands)
                self._changed_at[key] = stamp
            with self._from_link():
                if message.action == "mute_all_guests":
                    room.mute_all_guests(None, message.forbid)
                elif message.action == "allow_guests_to_unmute":
                    room.allow_guests_to_unmute(None)
                elif message.action in ("lock", "unlock"):
                    room.set_locked(None, message.action == "lock")
                elif message.action == "end":
                    room.end(None)
                elif message.action == "layout" and message.value is not None:
                    room.set_layout(None, Layout(message.value))
                elif message.action == "spotlight":
                    room.set_spotlight(None, message.value)
                elif message.action == "chat":
                    room.set_chat(None, message.value == "on")


def _camera_key(room: str, source: VideoSourceId) -> str:
    """What names a camera's stream on a link (its SSRC: media_ssrc(key, sending node))."""
    return f"{room}|{source.participant}|{source.stream.value}"


def _chat_message(room: str, public: dict[str, Any]) -> dict[str, Any]:
    return ChatMessageMessage(
        type="chat", room=room, id=public["id"], sender=public["sender"], name=public["name"], text=public["text"],
        host=public["host"], at=public["at"],
    ).model_dump(mode="json")  # fmt: skip


def _camera(source: VideoSourceId) -> Camera:
    return Camera(id=source.participant, stream="content" if source.stream is StreamKind.CONTENT else "main")


def _cameras(sources: frozenset[VideoSourceId]) -> list[Camera]:
    return [_camera(source) for source in sorted(sources)]


def _presentation_message(
    room: str, presenter: str, presenting: bool, content: Content, since: float = 0.0, reason: StopReason = StopReason.STOPPED
) -> dict[str, Any]:
    return PresentationMessage(
        type="presentation", room=room, presenter=presenter, presenting=presenting, content=content, since=since, reason=reason
    ).model_dump(mode="json")


def _participant_message(room: str, state: MirrorState) -> dict[str, Any]:
    return ParticipantMessage(type="participant", room=room, **vars(state)).model_dump(mode="json")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
