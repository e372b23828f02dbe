"""Resume tokens, sans-IO: what one node signs another with the same key reads back; a token changed
in any way (a guest making itself host, a muted guest unmuting itself), signed with another key, or
not a token at all is None, never an exception; another node takes only a fresh one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.webrtc.resume import MAX_TOKEN_CHARS, Place, ResumeTokens, _b64, _unb64

KEY = b"k" * 32
NOW = 1_800_000_000.0


def tokens(key: bytes = KEY, now: float = NOW) -> ResumeTokens:
    return ResumeTokens(key, 90.0, clock=lambda: now)


def muted_guest(issued: float = NOW) -> Place:
    return Place(place="placeid-0001", room="north", name="Gert", role="guest", host_muted=True, self_unmute_forbidden=True, issued=issued)


def test_a_token_of_one_node_is_read_by_another_with_the_same_key() -> None:
    token = tokens().issue(muted_guest())
    assert token.startswith("v1.") and len(token) < MAX_TOKEN_CHARS
    assert tokens().read(token) == muted_guest()


def test_changed_claims_and_another_key_are_refused() -> None:
    token = tokens().issue(muted_guest())
    version, claims, signature = token.split(".")
    as_host = _b64(_unb64(claims).replace(b'"guest"', b'"host"'))
    unmuted = _b64(_unb64(claims).replace(b'"host_muted":true', b'"host_muted":false'))
    for forged in (f"{version}.{as_host}.{signature}", f"{version}.{unmuted}.{signature}", f"v2.{claims}.{signature}"):
        assert tokens().read(forged) is None
    assert tokens(b"x" * 32).read(token) is None


def test_only_a_fresh_token_may_move_to_another_node() -> None:
    reader = tokens(now=NOW + 60)
    assert reader.fresh(muted_guest())
    assert not reader.fresh(muted_guest(issued=NOW - 31))  # 91 s old
    assert not reader.fresh(muted_guest(issued=NOW + 120))  # from the future: a clock far off, or made up


def test_malformed_tokens_are_none() -> None:
    reader = tokens()
    signed_junk = "v1.{}." + reader._sign("{}")
    for text in ("", "tok", "v1..", "v1.a.b.c", "v1.!!!.###", "x" * (MAX_TOKEN_CHARS + 1), signed_junk):
        assert reader.read(text) is None
    # signed, but not a place (a claims part that is JSON of another shape)
    claims = _b64(b'{"place": 5}')
    assert reader.read(f"v1.{claims}.{reader._sign(claims)}") is None


@given(st.text(max_size=1200))
def test_reading_any_text_never_raises(text: str) -> None:
    assert tokens().read(text) is None
