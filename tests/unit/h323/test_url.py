"""h323: URLs (gateway/h323/url.py, RFC 3508): alias, host and port read and normalised the way
dial-out rules see them (the alias percent-decoded, the host lower case, the port always written);
anything else refused as bad_uri, in linear time, never an exception of another kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.h323.h225 import Alias
from gateway.h323.url import Target, h323_identity, read
from gateway.rooms.errors import DialOutRefused
from gateway.rooms.identity import IdentityKind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h323:ratssaal@192.0.2.10", Target("h323:ratssaal@192.0.2.10:1720", Alias("h323-ID", "ratssaal"), "192.0.2.10", 1720)),
        ("H323:4711@Rathaus.Example:1721", Target("h323:4711@rathaus.example:1721", Alias("dialledDigits", "4711"), "rathaus.example", 1721)),
        ("h323:@192.0.2.10", Target("h323:@192.0.2.10:1720", None, "192.0.2.10", 1720)),
        ("h323:4930123", Target("h323:4930123", Alias("dialledDigits", "4930123"), None, 1720)),
        ("h323:%2B49301@[2001:DB8::1]:1722", Target("h323:+49301@[2001:db8::1]:1722", Alias("h323-ID", "+49301"), "2001:db8::1", 1722)),
    ],
)
def test_urls_read_and_normalise(text: str, expected: Target) -> None:
    assert read(text) == expected


@pytest.mark.parametrize(
    "text",
    ["sip:a@b", "h323:", "h323:@", "h323:a@", "h323:a@b:0", "h323:a@b:65536", "h323:a@b:x", "h323:a b@c", "h323:a;type=x@b",
     "h323:%00@b", "h323:a@-b", "h323:a@[zz]", "h323:a@[::1]x", "h323:" + "a" * 300, "h323:a@b@c"],
)  # fmt: skip
def test_anything_else_is_a_bad_uri(text: str) -> None:
    with pytest.raises(DialOutRefused) as refused:
        read(text)
    assert refused.value.code == "bad_uri"
    with pytest.raises(ValueError):
        h323_identity(text)


def test_the_identity_is_the_alias_at_the_host() -> None:
    identity = h323_identity("h323:Board@192.0.2.10:1720")
    assert (identity.kind, identity.user, identity.host, identity.address) == (IdentityKind.H323_ALIAS, "Board", "192.0.2.10", "board@192.0.2.10")


@given(st.text(max_size=300))
def test_any_text_reads_or_is_refused(text: str) -> None:
    try:
        target = read("h323:" + text)
    except DialOutRefused as exc:
        assert exc.code == "bad_uri"
    else:
        assert target.url.startswith("h323:") and (target.alias is not None or target.host is not None)
