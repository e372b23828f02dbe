"""The browser WebSocket protocol: one JSON object per message, validated by these pydantic models.

Client -> gateway messages carry `type` and are parsed by `parse_client_message`; a malformed or
unknown one raises `BadMessage`, which the socket answers with an `error` message and keeps open.
Gateway -> client messages are plain dicts built by the `server_*` helpers below, so the whole
protocol is visible in this one file.

The gateway always sends the SDP offer (with a fixed set of video slots, which participant each
carries is told in `video_slots` messages) and the browser answers; so there is never glare. ICE is
not trickled: both sides send complete descriptions.

Content sharing: the offer has a video line for the browser's shared screen (`screen_mid`), which
the page answers sendonly and fills with `replaceTrack` when it shares (no renegotiation); `present`
asks the room for the presentation floor (or gives it back). Someone else's content comes in a video
slot like a camera: its slot's value is `"<participant id>#content"` (`content_slot_value`).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.calls.endings import Ending


def _display_name(value: str) -> str:
    """A name others will read: no control or invisible formatting characters (bidi overrides,
    zero-width joiners could make one name look like another), and something visible in it."""
    value = " ".join(value.split())
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValueError(f"the name contains an invisible or control character (U+{ord(char):04X})")
    if not any(unicodedata.category(c)[0] in "LNPS" for c in value):
        raise ValueError("the name must contain a visible character")
    return value


def _unicode(value: str) -> str:
    """JSON can carry lone surrogates ("\\ud800"), which are no text: everything downstream that
    encodes the value (PIN comparison, host-link check, SDP, logs) would fail on them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (U+{ord(value[exc.start]):04X})") from None
    return value


Unicode = AfterValidator(_unicode)  # after the length limits: never encode an oversize value
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_display_name)]
Id = Annotated[str, Field(min_length=1, max_length=64), Unicode]


class _Msg(BaseModel):
    # strict: a JSON boolean must be true/false, not "yes", 1 or "off" (which lax mode would coerce)
    model_config = ConfigDict(extra="forbid", strict=True)


class Join(_Msg):
    type: Literal["join"]
    room: Annotated[str, Field(min_length=1, max_length=64), Unicode]
    name: Name
    pin: Annotated[str, Field(max_length=32), Unicode] = ""
    # Reconnecting with the previous session token keeps the participant's place (no lobby again).
    resume: Annotated[str, Field(max_length=1024), Unicode] | None = None
    # A signed host link's token (`/r/<room>?host=...`): a host without typing the PIN.
    host: Annotated[str, Field(max_length=128), Unicode] | None = None
    # Signed in with the identity provider (the page's session token): a host where the room allows it.
    signin: Annotated[str, Field(max_length=128), Unicode] | None = None


class Answer(_Msg):
    type: Literal["answer"]
    sdp: Annotated[str, Field(min_length=10, max_length=200_000), Unicode]


class SelfMute(_Msg):
    type: Literal["mute_self"]
    muted: bool


class SelfVideo(_Msg):
    type: Literal["video_self"]
    off: bool


class Hand(_Msg):
    type: Literal["hand"]
    raised: bool
    participant: Id | None = None  # a host lowering someone else's hand


class Mute(_Msg):
    type: Literal["mute"]
    participant: Id
    forbid_self_unmute: bool = False


class Unmute(_Msg):
    type: Literal["unmute"]
    participant: Id


class MuteAll(_Msg):
    type: Literal["mute_all"]
    forbid_self_unmute: bool = False


class AllowAllUnmute(_Msg):
    """Ends a 'mute all guests' policy: every guest may unmute themselves again (none is unmuted)."""

    type: Literal["allow_all_unmute"]


class ForbidSelfUnmute(_Msg):
    type: Literal["forbid_self_unmute"]
    participant: Id
    forbidden: bool


class Remove(_Msg):
    type: Literal["remove"]
    participant: Id


class Lock(_Msg):
    type: Literal["lock"]
    locked: bool


class Admit(_Msg):
    type: Literal["admit"]
    participant: Id


class Deny(_Msg):
    type: Literal["deny"]
    participant: Id


class EndMeeting(_Msg):
    type: Literal["end_meeting"]


class Leave(_Msg):
    type: Literal["leave"]


class ListSystems(_Msg):
    """Hosts: which room systems of the directory can be invited (answered by `systems`)."""

    type: Literal["list_systems"]


class Dial(_Msg):
    """Hosts: invite a room system of the directory, or a SIP URI the dial-out rules allow."""

    type: Literal["dial"]
    system: Id | None = None
    uri: Annotated[str, Field(min_length=5, max_length=256), Unicode] | None = None


class SetLayout(_Msg):
    """Hosts: how room systems see the meeting (the composed picture), until the meeting ends."""

    type: Literal["set_layout"]
    layout: Literal["speaker", "grid"]


class Spotlight(_Msg):
    """Hosts: show one participant large for everyone; null ends the spotlight (required: a message
    that forgot the participant must not end it)."""

    type: Literal["spotlight"]
    participant: Id | None


class Present(_Msg):
    """Share the screen (`on`: take the room's presentation floor, from whoever has it) or stop
    sharing. Refusals (the room's policy lets only hosts present) come back as an `error`."""

    type: Literal["present"]
    on: bool


class StopPresentation(_Msg):
    """Hosts: end the presentation of `participant` (nothing when it no longer presents)."""

    type: Literal["stop_presentation"]
    participant: Id


class Chat(_Msg):
    """A chat message to everyone in the meeting (browsers see it; phones and room systems cannot).
    Refused with chat_off while a host turned the chat off, rate_limited past 5 in 5 s."""

    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1, max_length=1000), Unicode]


class ChatRemove(_Msg):
    """Hosts: remove a message from everyone's chat."""

    type: Literal["chat_remove"]
    id: int = Field(ge=1, le=2**53)


class ChatEnable(_Msg):
    """Hosts: turn the chat on or off for the guests."""

    type: Literal["chat_enable"]
    enabled: bool


class Broadcast(_Msg):
    """Hosts: start or stop recording the meeting, or streaming it live (to the room's stream_url).
    Refusals (the room forbids it, no stream_url) come back as an `error`; everyone is told by the
    room's `broadcasting`."""

    type: Literal["broadcast"]
    what: Literal["recording", "streaming"]
    on: bool


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[
    Join
    | Answer
    | SelfMute
    | SelfVideo
    | Hand
    | Mute
    | Unmute
    | MuteAll
    | AllowAllUnmute
    | ForbidSelfUnmute
    | Remove
    | Lock
    | Admit
    | Deny
    | EndMeeting
    | Leave
    | ListSystems
    | Dial
    | SetLayout
    | Spotlight
    | Present
    | StopPresentation
    | Chat
    | ChatRemove
    | ChatEnable
    | Broadcast
    | Ping,
    Field(discriminator="type"),
]

_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


class BadMessage(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_client_message(raw: str | bytes) -> ClientMessage:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    except RecursionError:  # deeply nested arrays/objects; must not escape as a RuntimeError
        raise BadMessage("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadMessage("a message must be a JSON object")
    if "type" not in data:
        raise BadMessage("missing field 'type'")
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise BadMessage(f"unknown message type {_short(data.get('type'))}") from None
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise BadMessage(f"{where}: {first['msg']}") from None


# -- gateway -> client --------------------------------------------------------------------------


def server_joined(
    participant: dict[str, Any], room: dict[str, Any], resume: str, ice_servers: list[str]
) -> dict[str, Any]:
    """`resume` rejoins the same place after a lost connection; `ice_servers` are STUN/TURN URLs."""
    return {"type": "joined", "you": participant, "room": room, "resume": resume, "ice_servers": ice_servers}


def server_chat(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Chat messages to show (one as it is sent; the meeting's so far after joining), oldest first."""
    return {"type": "chat", "messages": messages}


def server_chat_removed(message_id: int) -> dict[str, Any]:
    return {"type": "chat_removed", "id": message_id}


def server_pong(resume: str = "") -> dict[str, Any]:
    """`resume`: a fresh resume token (another node takes only a recent one after a failover)."""
    return {"type": "pong", "resume": resume} if resume else {"type": "pong"}


def server_resume(resume: str) -> dict[str, Any]:
    """A new resume token after the participant's mute state changed."""
    return {"type": "resume", "resume": resume}


def server_lobby(
    position: int, estimated_wait_s: float, room_name: str, host_present: bool, resume: str = ""
) -> dict[str, Any]:
    """`resume` keeps the place in the queue across a lost connection, as in `joined`."""
    return {
        "type": "lobby",
        "position": position,
        "estimated_wait_s": round(estimated_wait_s),
        "room_name": room_name,
        "host_present": host_present,
        "resume": resume,
    }


CONTENT_SUFFIX = "#content"


def content_slot_value(participant: str) -> str:
    """A video slot's value when it carries a participant's content (shared screen, slides) rather
    than its camera: `"<participant id>#content"` (participant ids never contain a `#`)."""
    return participant + CONTENT_SUFFIX


def server_offer(
    sdp: str, audio_mid: str, video_mid: str, video_slots: dict[str, str | None], screen_mid: str = ""
) -> dict[str, Any]:
    """audio_mid: the sendrecv audio (microphone up, meeting mix down); video_mid: the camera upload;
    screen_mid: the shared screen's upload (offered recvonly: the page answers it sendonly and sends
    a track on it only while it shares); video_slots maps each gateway-to-browser video mid to what
    it carries: a participant id (its camera), `"<participant id>#content"` (its shared screen or
    slides), or null (nothing now)."""
    return {
        "type": "offer",
        "sdp": sdp,
        "audio_mid": audio_mid,
        "video_mid": video_mid,
        "screen_mid": screen_mid,
        "video_slots": video_slots,
    }


def server_video_slots(video_slots: dict[str, str | None]) -> dict[str, Any]:
    """What each video slot carries now, as in the offer's `video_slots` (camera: participant id;
    content: `"<participant id>#content"`; null: nothing)."""
    return {"type": "video_slots", "video_slots": video_slots}


def server_state(room: dict[str, Any], you: dict[str, Any] | None) -> dict[str, Any]:
    """`room` is the room's public view: participants, lock, lobby, the composed picture's
    `layout` and `spotlight` (a participant id or null), who may present (`presenters`: everyone or
    hosts) and the `presentation` ({presenter, since, content: screen or slides} or null), what
    records or streams the meeting now (`broadcasting`: {recording, streaming: since} while they
    run; `may_broadcast` for hosts: what they may start); sent again after every change."""
    return {"type": "state", "room": room, "you": you}


def server_notice(code: str, **data: Any) -> dict[str, Any]:
    """Something happened that this participant should be told: host_muted, host_unmuted,
    self_unmute_forbidden, self_unmute_allowed, hand_lowered (each with `by`, a name or None for the
    administrator), presentation_stopped (one's presentation ended and not by oneself: `reason`
    taken_over, stopped_by_host, stopped_by_operator or not_allowed, `by` the name of who took it
    over or stopped it; the page stops sharing), and for hosts lobby_waiting (with `name`)."""
    return {"type": "notice", "code": code, **data}


def server_systems(systems: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": "systems", "systems": systems}


def server_error(code: str, message: str, request: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "request": request}


# The neutral endings of gateway.calls as the page knows them: the `ended` message's reason (also
# the WebSocket close reason, with close code 1000).
ENDED_REASONS: dict[Ending, str] = {
    Ending.ROOM_NOT_FOUND: "unknown_room",
    Ending.WRONG_PIN: "wrong_pin",
    Ending.LOCKED_OUT: "locked_out",
    Ending.LOCKED: "locked",
    Ending.FULL: "full",
    Ending.DENIED_FROM_LOBBY: "denied",
    Ending.REMOVED: "removed",
    Ending.MEETING_ENDED: "meeting_ended",
    Ending.SHUTDOWN: "shutdown",
    Ending.OVERLOADED: "overloaded",
    Ending.OUTSIDE_HOURS: "closed",
    Ending.RATE_LIMITED: "rate_limited",
    Ending.BAD_HOST_LINK: "bad_host_link",
    Ending.SIGN_IN_ENDED: "sign_in_ended",
    Ending.LEFT: "left",
    Ending.NO_ENTRY: "no_entry",
    Ending.MEDIA_TIMEOUT: "media_timeout",
    Ending.ADMITTED_BUT_GONE: "admitted_but_gone",
    Ending.INTERNAL_ERROR: "internal",
}


def server_ended(reason: str, hours: dict[str, Any] | None = None) -> dict[str, Any]:
    """The session is over: wrong_pin, locked_out (too many wrong PINs), locked, full, denied,
    removed, meeting_ended, unknown_room, left, bad_host_link, sign_in_ended (the page's sign-in with the
    identity provider ended), closed (outside the opening hours:
    `hours` has the schedule and the next opening), rate_limited (too many joins from the address
    within a minute), overloaded (the gateway takes no new participants for now)."""
    message: dict[str, Any] = {"type": "ended", "reason": reason}
    if hours is not None:
        message["hours"] = hours
    return message
