"""The browser WebSocket protocol (gateway/webrtc/signalling.py): what parses and what is refused, and why."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from gateway.webrtc import signalling as sig
from gateway.webrtc.signalling import BadMessage, parse_client_message

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

# One valid example of every client message, with the fields it must come back with.
VALID: dict[str, tuple[dict[str, Any], type, dict[str, Any]]] = {
    "join": (
        {"type": "join", "room": "demo", "name": "Ada", "pin": "1234", "resume": "tok"},
        sig.Join,
        {"room": "demo", "name": "Ada", "pin": "1234", "resume": "tok"},
    ),
    "answer": ({"type": "answer", "sdp": SDP}, sig.Answer, {"sdp": SDP}),
    "mute_self": ({"type": "mute_self", "muted": True}, sig.SelfMute, {"muted": True}),
    "video_self": ({"type": "video_self", "off": False}, sig.SelfVideo, {"off": False}),
    "hand": ({"type": "hand", "raised": False, "participant": "p1"}, sig.Hand, {"raised": False, "participant": "p1"}),
    "set_layout": ({"type": "set_layout", "layout": "grid"}, sig.SetLayout, {"layout": "grid"}),
    "spotlight": ({"type": "spotlight", "participant": "p1"}, sig.Spotlight, {"participant": "p1"}),
    "mute": (
        {"type": "mute", "participant": "p1", "forbid_self_unmute": True},
        sig.Mute,
        {"participant": "p1", "forbid_self_unmute": True},
    ),
    "unmute": ({"type": "unmute", "participant": "p1"}, sig.Unmute, {"participant": "p1"}),
    "mute_all": ({"type": "mute_all", "forbid_self_unmute": True}, sig.MuteAll, {"forbid_self_unmute": True}),
    "allow_all_unmute": ({"type": "allow_all_unmute"}, sig.AllowAllUnmute, {}),
    "forbid_self_unmute": (
        {"type": "forbid_self_unmute", "participant": "p1", "forbidden": False},
        sig.ForbidSelfUnmute,
        {"participant": "p1", "forbidden": False},
    ),
    "remove": ({"type": "remove", "participant": "p1"}, sig.Remove, {"participant": "p1"}),
    "lock": ({"type": "lock", "locked": True}, sig.Lock, {"locked": True}),
    "admit": ({"type": "admit", "participant": "p1"}, sig.Admit, {"participant": "p1"}),
    "deny": ({"type": "deny", "participant": "p1"}, sig.Deny, {"participant": "p1"}),
    "end_meeting": ({"type": "end_meeting"}, sig.EndMeeting, {}),
    "leave": ({"type": "leave"}, sig.Leave, {}),
    "ping": ({"type": "ping"}, sig.Ping, {}),
    "list_systems": ({"type": "list_systems"}, sig.ListSystems, {}),
    "dial": ({"type": "dial", "system": "board"}, sig.Dial, {"system": "board"}),
    "present": ({"type": "present", "on": True}, sig.Present, {"on": True}),
    "stop_presentation": ({"type": "stop_presentation", "participant": "p1"}, sig.StopPresentation, {"participant": "p1"}),
    "chat": ({"type": "chat", "text": "Aktenzeichen 4711"}, sig.Chat, {"text": "Aktenzeichen 4711"}),
    "chat_remove": ({"type": "chat_remove", "id": 3}, sig.ChatRemove, {"id": 3}),
    "chat_enable": ({"type": "chat_enable", "enabled": False}, sig.ChatEnable, {"enabled": False}),
    "broadcast": ({"type": "broadcast", "what": "recording", "on": True}, sig.Broadcast, {"what": "recording", "on": True}),
}

# The fields each message cannot do without.
REQUIRED: dict[str, list[str]] = {
    "join": ["room", "name"],
    "answer": ["sdp"],
    "mute_self": ["muted"],
    "video_self": ["off"],
    "hand": ["raised"],
    "set_layout": ["layout"],
    "spotlight": ["participant"],
    "mute": ["participant"],
    "unmute": ["participant"],
    "forbid_self_unmute": ["participant", "forbidden"],
    "remove": ["participant"],
    "lock": ["locked"],
    "admit": ["participant"],
    "deny": ["participant"],
    "present": ["on"],
    "stop_presentation": ["participant"],
    "chat": ["text"],
    "chat_remove": ["id"],
    "chat_enable": ["enabled"],
    "broadcast": ["what", "on"],
}


def refused(message: Any) -> str:
    """Sends a message (a dict is JSON-encoded first) and returns the reason it was refused for."""
    raw = message if isinstance(message, str | bytes) else json.dumps(message)
    with pytest.raises(BadMessage) as error:
        parse_client_message(raw)
    assert error.value.reason == str(error.value)
    return error.value.reason


def with_(type_: str, **changes: Any) -> dict[str, Any]:
    """The valid example of a message type with fields changed (a value of ... drops the field)."""
    message = dict(VALID[type_][0])
    for key, value in changes.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return message


# -- what parses ----------------------------------------------------------------------------------


def test_every_client_message_type_has_an_example() -> None:
    models = typing.get_args(typing.get_args(sig.ClientMessage)[0])
    declared = {typing.get_args(model.model_fields["type"].annotation)[0] for model in models}
    assert declared == set(VALID)


@pytest.mark.parametrize("type_", VALID)
def test_every_client_message_parses(type_: str) -> None:
    data, model, fields = VALID[type_]
    message = parse_client_message(json.dumps(data))
    assert type(message) is model
    assert message.type == type_
    for name, value in fields.items():
        assert getattr(message, name) == value


def test_bytes_are_parsed_as_utf8() -> None:
    message = parse_client_message(json.dumps({"type": "join", "room": "demo", "name": "Zoë"}, ensure_ascii=False).encode())
    assert isinstance(message, sig.Join) and message.name == "Zoë"


def test_optional_fields_have_defaults() -> None:
    join = parse_client_message('{"type": "join", "room": "demo", "name": "Ada"}')
    assert isinstance(join, sig.Join) and join.pin == "" and join.resume is None
    hand = parse_client_message('{"type": "hand", "raised": true}')
    assert isinstance(hand, sig.Hand) and hand.participant is None
    mute = parse_client_message('{"type": "mute", "participant": "p1"}')
    assert isinstance(mute, sig.Mute) and mute.forbid_self_unmute is False
    mute_all = parse_client_message('{"type": "mute_all"}')
    assert isinstance(mute_all, sig.MuteAll) and mute_all.forbid_self_unmute is False


def test_explicit_nulls_are_accepted_where_a_field_is_optional() -> None:
    assert parse_client_message(json.dumps(with_("hand", participant=None))).participant is None
    assert parse_client_message(json.dumps(with_("join", resume=None))).resume is None


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("join", "name", "n" * 64),
        ("join", "room", "r" * 64),
        ("join", "pin", "9" * 32),
        ("join", "pin", ""),
        ("join", "resume", "t" * 1024),
        ("answer", "sdp", "s" * 200_000),
        ("answer", "sdp", "s" * 10),
        ("mute", "participant", "p" * 64),
        ("join", "name", "x"),
        ("chat", "text", "t" * 1000),
    ],
)
def test_values_at_the_limits_are_accepted(type_: str, field: str, value: str) -> None:
    assert getattr(parse_client_message(json.dumps(with_(type_, **{field: value}))), field) == value


# -- what is refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "{", '{"type": "ping"', "{'type': 'ping'}", '{"type": "ping"} trailing', "ping", b"\xff\xfe\xfa"],
)
def test_malformed_json(raw: str | bytes) -> None:
    assert refused(raw).startswith("not JSON")


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_json_is_a_bad_message_not_a_crash(raw: str) -> None:
    assert refused(raw).startswith("not JSON")


@pytest.mark.parametrize("raw", ["[]", '[{"type": "ping"}]', '"ping"', "42", "null", "true"])
def test_a_message_must_be_an_object(raw: str) -> None:
    assert refused(raw) == "a message must be a JSON object"


def test_missing_type() -> None:
    assert refused({"room": "demo", "name": "Ada"}) == "missing field 'type'"


@pytest.mark.parametrize("type_", ["pong", "JOIN", "", 5, None, ["join"], {"type": "join"}])
def test_unknown_type(type_: Any) -> None:
    reason = refused({"type": type_})
    assert reason.startswith("unknown message type")
    assert repr(type_) in reason


def test_an_oversize_unknown_type_is_not_echoed_whole() -> None:
    reason = refused({"type": "x" * 100_000})
    assert reason.startswith("unknown message type 'xxx")
    assert len(reason) < 100


@pytest.mark.parametrize(
    ("type_", "field"), [(type_, field) for type_, fields in REQUIRED.items() for field in fields]
)
def test_missing_field(type_: str, field: str) -> None:
    assert refused(with_(type_, **{field: ...})) == f"{field}: Field required"


@pytest.mark.parametrize("type_", VALID)
def test_extra_field(type_: str) -> None:
    assert refused(with_(type_, colour="red")) == "colour: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("type_", "field", "value", "expected"),
    [
        ("mute_self", "muted", "yes", "valid boolean"),
        ("mute_self", "muted", "true", "valid boolean"),
        ("mute_self", "muted", 1, "valid boolean"),
        ("mute_self", "muted", None, "valid boolean"),
        ("video_self", "off", 0, "valid boolean"),
        ("hand", "raised", "false", "valid boolean"),
        ("lock", "locked", 1.0, "valid boolean"),
        ("mute_all", "forbid_self_unmute", "on", "valid boolean"),
        ("forbid_self_unmute", "forbidden", [], "valid boolean"),
        ("present", "on", "true", "valid boolean"),
        ("present", "on", 1, "valid boolean"),
        ("mute", "participant", 5, "valid string"),
        ("mute", "participant", None, "valid string"),
        ("remove", "participant", ["p1"], "valid string"),
        ("hand", "participant", {"id": "p1"}, "valid string"),
        ("join", "pin", 1234, "valid string"),
        ("join", "pin", None, "valid string"),
        ("join", "name", True, "valid string"),
        ("answer", "sdp", 12345678901, "valid string"),
    ],
)
def test_wrongly_typed_field(type_: str, field: str, value: Any, expected: str) -> None:
    reason = refused(with_(type_, **{field: value}))
    assert reason.startswith(f"{field}: ")
    assert expected in reason


@pytest.mark.parametrize(
    ("type_", "field", "value", "expected"),
    [
        ("join", "name", "n" * 65, "at most 64 characters"),
        ("join", "room", "r" * 65, "at most 64 characters"),
        ("join", "pin", "9" * 33, "at most 32 characters"),
        ("join", "resume", "t" * 1025, "at most 1024 characters"),
        ("answer", "sdp", "s" * 200_001, "at most 200000 characters"),
        ("mute", "participant", "p" * 65, "at most 64 characters"),
        ("admit", "participant", "p" * 1000, "at most 64 characters"),
        ("join", "name", "", "at least 1 character"),
        ("join", "room", "", "at least 1 character"),
        ("answer", "sdp", "v=0", "at least 10 characters"),
        ("deny", "participant", "", "at least 1 character"),
        ("chat", "text", "t" * 1001, "at most 1000 characters"),
        ("chat", "text", "", "at least 1 character"),
    ],
)
def test_values_out_of_bounds(type_: str, field: str, value: str, expected: str) -> None:
    reason = refused(with_(type_, **{field: value}))
    assert reason.startswith(f"{field}: ")
    assert expected in reason
    assert len(reason) < 200, "the reason must not echo the oversize value"


# -- gateway -> client ----------------------------------------------------------------------------


def test_server_messages_are_json_objects_with_a_type() -> None:
    messages = [
        sig.server_joined({"id": "p1"}, {"id": "demo"}, "tok", ["stun:stun.example.org"]),
        sig.server_lobby(2, 59.6, "Demo", True, "tok"),
        sig.server_offer(SDP, "0", "1", {"3": "p1", "4": sig.content_slot_value("p2"), "5": None}, "2"),
        sig.server_video_slots({"2": None}),
        sig.server_state({"id": "demo"}, None),
        sig.server_notice("host_muted", by="Hanna"),
        sig.server_error("bad_message", "nope", "join"),
        sig.server_ended("removed"),
        sig.server_pong(),
        sig.server_pong("v1.tok.sig"),
        sig.server_resume("v1.tok.sig"),
    ]
    types = [json.loads(json.dumps(m))["type"] for m in messages]
    assert types == ["joined", "lobby", "offer", "video_slots", "state", "notice", "error", "ended", "pong", "pong", "resume"]
    assert messages[-2]["resume"] == messages[-1]["resume"] == "v1.tok.sig" and "resume" not in messages[-3]


def test_server_lobby_rounds_the_wait_and_notice_carries_its_data() -> None:
    assert sig.server_lobby(2, 59.6, "Demo", False) == {
        "type": "lobby",
        "position": 2,
        "estimated_wait_s": 60,
        "room_name": "Demo",
        "host_present": False,
        "resume": "",
    }
    assert sig.server_notice("host_muted", by="Hanna") == {"type": "notice", "code": "host_muted", "by": "Hanna"}
    assert sig.server_error("full", "the meeting is full") == {
        "type": "error",
        "code": "full",
        "message": "the meeting is full",
        "request": None,
    }


@pytest.mark.parametrize(
    "name", ["A\u202eB", "\u200b", "   ", "Bob\u0000", "\u2066Eve\u2069"]
)
def test_names_that_could_spoof_or_are_invisible_are_refused(name: str) -> None:
    with pytest.raises(BadMessage) as refused:
        parse_client_message(json.dumps({"type": "join", "room": "demo", "name": name}))
    assert refused.value.reason.startswith("name:")


def test_names_are_tidied_but_keep_what_people_write() -> None:
    message = parse_client_message(json.dumps({"type": "join", "room": "demo", "name": "  Jörg   Müller 🙂 "}))
    assert isinstance(message, sig.Join) and message.name == "Jörg Müller 🙂"


def test_the_offer_names_the_screen_line_and_a_content_slot_says_whose_content_it_carries() -> None:
    offer = sig.server_offer(SDP, "0", "1", {"3": "p1", "4": sig.content_slot_value("p2"), "5": None}, "2")
    assert (offer["audio_mid"], offer["video_mid"], offer["screen_mid"]) == ("0", "1", "2")
    assert offer["video_slots"] == {"3": "p1", "4": "p2#content", "5": None}
    assert sig.server_video_slots({"3": "p2#content"}) == {"type": "video_slots", "video_slots": {"3": "p2#content"}}
