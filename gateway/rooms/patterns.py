"""Regular expressions that admins write and callers' input is matched against, run by RE2.

Routing rules and `sip.dial_out_allow` are matched against text a caller or an operator controls
(the called alias, an entered number, a dial-out URI). Python's `re` backtracks: a pattern like
`(a+)+$` takes exponential time on a crafted alias and stalls the event loop for every call. RE2
matches in time linear in the input, and refuses what it cannot do that way (backreferences,
lookaround): such a pattern is refused when it is written, never at call time.

Room templates (`room-\\1`, `\\g<name>`) are parsed here too, with a grammar of our own rather than
re2's `Match.expand` (which runs literal text through `unicode_escape`): literal text and group
references only, since the result must be a room id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import re2

# An alias or entered number longer than this never matches a rule: no room id or SIP user part
# is that long, and it bounds the work per call whatever the pattern.
MAX_ALIAS = 128
# A dial-out URI is at most this long (DialRequest.uri, RoomSystemConfig.uri).
MAX_URI = 256
MAX_GROUPS = 9


class PatternError(ValueError):
    """A pattern RE2 refuses, or a room template that does not fit its pattern."""


class Match(Protocol):
    def group(self, group: int | str = 0, /) -> str | None: ...

    def groups(self) -> tuple[str | None, ...]: ...


class Pattern(Protocol):
    @property
    def pattern(self) -> str: ...

    @property
    def groups(self) -> int: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def fullmatch(self, text: str) -> Match | None: ...


def compile_rule(pattern: str, *, ignore_case: bool = False) -> Pattern:
    """The pattern compiled by RE2; PatternError (a ValueError) with RE2's reason if it refuses it.

    Compiled patterns are cached by re2 (LRU of 128), so compiling again per call is cheap."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # RE2 would print refused patterns to stderr, outside structlog
    try:
        return cast(Pattern, re2.compile(pattern, options))
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): RE2 takes UTF-8 only
        raise PatternError("not a valid regular expression: not valid Unicode text") from None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"not a valid regular expression for RE2 (linear-time matching): {reason}") from None


def full_match(pattern: Pattern, text: str, *, max_length: int = MAX_ALIAS) -> Match | None:
    """`pattern` matched against the whole of `text`; text longer than `max_length` never matches."""
    if len(text) > max_length:
        return None
    try:
        return pattern.fullmatch(text)
    except UnicodeEncodeError:  # a lone surrogate (a percent-decoded user part?) is no alias: no match
        return None


@dataclass(frozen=True)
class Template:
    """A room template parsed once: literal text and group numbers, in order."""

    source: str
    pieces: tuple[str | int, ...]

    def expand(self, match: Match) -> str:
        """The room id a match names; a group that took part in no match gives "" (as in `re`)."""
        return "".join(piece if isinstance(piece, str) else (match.group(piece) or "") for piece in self.pieces)


def parse_template(template: str, pattern: Pattern) -> Template:
    r"""A room template checked against its pattern: `\1`..`\99` and `\g<n>` / `\g<name>` name one
    of its groups; any other backslash is refused (a room id has none)."""
    pieces: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "\\":
            literal.append(char)
            i += 1
            continue
        rest = template[i + 1 : i + 3]
        if rest[:1] == "g":
            close = template.find(">", i + 3)
            if template[i + 2 : i + 3] != "<" or close < 0:
                raise PatternError(f"room {template!r} is not a valid template: \\g must be followed by <name>")
            name = template[i + 3 : close]
            if not name:
                raise PatternError(f"room {template!r} is not a valid template: empty group name in \\g<>")
            i = close + 1
        elif rest[:1] and rest[0] in "123456789":
            name = rest if rest[1:] and rest[1] in "0123456789" else rest[0]
            i += 1 + len(name)
        else:
            raise PatternError(
                f"room {template!r} is not a valid template: only \\1 to \\99 and \\g<name> may follow a backslash"
            )
        if name.isascii() and name.isdigit():
            number = int(name)
            known = 1 <= number <= pattern.groups
        else:
            number = pattern.groupindex.get(name, 0)
            known = number > 0
        if not known:
            raise PatternError(f"room {template!r} refers to group {name!r}, which the pattern does not have")
        if literal:
            pieces.append("".join(literal))
            literal = []
        pieces.append(number)
    if literal:
        pieces.append("".join(literal))
    return Template(template, tuple(pieces))
