"""Property-based fuzzing of the browser WebSocket protocol (gateway/webrtc/signalling.py).

Whatever a browser (or anyone with a socket) sends, the parser either returns a message or raises
its own BadMessage with a short reason; and a message it accepts says the same thing when written
out again and read back (nothing is lost or changed between what was validated and what is used).
A second property drives random joins through a real BrowserSession: no input makes it fail inside.
"""

from __future__ import annotations

import asyncio
import json
import typing
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.control.auth import HostLinks
from gateway.rooms.directory import Directory
from gateway.rooms.pinguard import PinGuard
from gateway.webrtc import signalling as sig
from gateway.webrtc.session import BrowserHub, BrowserSession

# No example database in the working tree; CPU is shared, so no per-example deadline.
FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

MODELS: dict[str, type[sig._Msg]] = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(sig.ClientMessage)[0])
}

# Any code point, lone surrogates included: JSON can carry them as \ud800 escapes.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | any_text
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5), max_leaves=20
)
# Values that pass or nearly pass a field's checks, so the fuzzing reaches past the first refusal.
field_values = st.one_of(
    json_values,
    st.booleans(),
    st.text(max_size=70),
    st.integers(0, 260).map(lambda n: "x" * n),
    st.sampled_from(["demo", "1234", "", " ", "Zoë", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "sip:room@example.org"]),
    st.sampled_from([200_000, 200_001]).map(lambda n: "s" * n),
)


@st.composite
def message_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """An object with a known type (mostly) and some of that type's fields, now and then a stray one."""
    type_ = draw(st.sampled_from(sorted(MODELS)))
    message: dict[str, Any] = {"type": type_ if draw(st.integers(0, 9)) else draw(json_values)}
    fields = [name for name in MODELS[type_].model_fields if name != "type"]
    for name in draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []:
        message[name] = draw(field_values)
    if draw(st.integers(0, 9)) == 0:
        message[draw(any_text)] = draw(json_values)
    return message


def check(raw: str | bytes) -> sig.ClientMessage | None:
    """The two properties for one input; returns the message when it was accepted."""
    try:
        message = sig.parse_client_message(raw)
    except sig.BadMessage as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert len(exc.reason) < 300, "a reason must not echo the input"
        return None
    written = message.model_dump_json()  # must not fail either: everything accepted is valid text
    again = sig.parse_client_message(written)
    assert type(again) is type(message)
    assert again == message
    return message


@FUZZ
@given(json_values, st.booleans())
def test_any_json_value(value: Any, ascii_only: bool) -> None:
    check(json.dumps(value, ensure_ascii=ascii_only))


@FUZZ
@given(message_shaped(), st.booleans(), st.booleans())
def test_message_shaped_objects(message: dict[str, Any], ascii_only: bool, as_bytes: bool) -> None:
    raw = json.dumps(message, ensure_ascii=ascii_only)
    check(raw.encode("utf-8", "surrogatepass") if as_bytes else raw)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(any_text)
def test_random_text(raw: str) -> None:
    check(raw)


@FUZZ
@given(message_shaped(), st.data())
def test_damaged_messages(message: dict[str, Any], data: st.DataObject) -> None:
    """A valid-looking message with bytes overwritten, cut or inserted."""
    raw = bytearray(json.dumps(message).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if action == "set" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 8))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    check(bytes(raw))


def test_the_strategies_reach_accepted_messages() -> None:
    """Without this, the properties above could pass by refusing everything."""
    accepted: set[str] = set()

    @settings(max_examples=600, deadline=None, database=None, derandomize=True)  # (the same draws each run: no flake)
    @given(message_shaped())
    def collect(message: dict[str, Any]) -> None:
        parsed = check(json.dumps(message))
        if parsed is not None:
            accepted.add(parsed.type)

    collect()
    assert len(accepted) >= len(MODELS) // 2, f"only {sorted(accepted)} were ever accepted"


# -- through a session ------------------------------------------------------------------------------

SESSION_CONFIG = """
server: {joins_per_minute: 10000}
sip: {enabled: false}
storage: {path: null}
rooms:
  - {id: lobby, name: Citizen office, host_pin: "1234", lobby: true}
"""
CONFIG = parse_config(SESSION_CONFIG)



def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` three times in four: joins must mostly get past the parser to reach the session."""
    return st.integers(0, 3).flatmap(lambda n: usual if n else other)


join_fields = st.fixed_dictionaries(
    {
        "type": st.just("join"),
        "room": mostly(st.sampled_from(["lobby", "LOBBY", " lobby ", "nowhere"]), any_text),
        "name": mostly(st.sampled_from(["Ada", "Zoë"]), any_text),
    },
    optional={
        "pin": st.sampled_from(["", "0000", "5555"]) | any_text,
        "resume": any_text | st.none(),
        # Host links: well-formed but wrong, digits that are no ASCII digits, junk.
        "host": mostly(
            st.from_regex(r"[0-9]{1,12}\.[A-Za-z0-9_-]{1,30}", fullmatch=True)
            | st.from_regex(r"[0-9²٣]{1,14}\.[^.]{1,20}", fullmatch=True),
            any_text | st.none(),
        ),
    },
)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(join_fields, st.lists(message_shaped(), max_size=3))
@example({"type": "join", "room": "lobby", "name": "Ada", "host": "²2.abc"}, [])  # isdigit(), yet no int
@example({"type": "join", "room": "lobby", "name": "Ada", "pin": "\ud800"}, [])  # no UTF-8 for the PIN check
def test_random_joins_never_fail_inside_a_session(join: dict[str, Any], after: list[dict[str, Any]]) -> None:
    """Guests only (the host PIN is never sent), so nobody reaches the media part: it is the join
    and the refusals that are fuzzed here."""
    assume(join.get("pin") != "1234")

    async def run() -> list[dict[str, Any]]:
        hub = BrowserHub(CONFIG, Directory(CONFIG), PinGuard.from_config(CONFIG.security))
        hub.host_links = HostLinks(b"k" * 32)
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any] | str) -> None:
            sent.append(json.loads(message) if isinstance(message, str) else message)

        async def close(_code: int, _reason: str) -> None:
            return None

        session = BrowserSession(hub, send, close, "198.51.100.7:5000", "198.51.100.7")
        for message in [join, *after]:
            await session.handle_text(json.dumps(message))
        await session.socket_closed()
        await hub.close()
        return sent

    sent = asyncio.run(run())
    internal = [m for m in sent if m.get("type") == "error" and m.get("code") == "internal"]
    assert not internal, f"the session failed inside: {internal}"
    assert all(m.get("type") != "joined" for m in sent), "a guest got past the lobby"
