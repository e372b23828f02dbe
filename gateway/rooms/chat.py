"""The meeting's chat, protocol-free: short text messages to everyone in the room, kept in memory
only while the meeting lasts (gone when the last participant leaves or the meeting ends: nothing of
it is stored, logged or published). Hosts may turn it off and remove a message. Browsers show it;
phones and room systems have no way to (their pages say so).

Text is kept as sent apart from control characters (a page escapes it when it shows it); a message
is at most MAX_TEXT characters, and one participant sends at most RATE messages in RATE_WINDOW_S.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.rooms.ratelimit import RateLimit

MAX_TEXT = 1000
KEPT = 200  # messages a late joiner can read back
RATE, RATE_WINDOW_S = 5, 5.0


@dataclass(frozen=True)
class ChatMessage:
    id: int
    sender: str  # participant id
    name: str
    text: str
    host: bool  # sent by a host (only hosts' links are made clickable)
    at: float  # wall clock

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "sender": self.sender, "name": self.name, "text": self.text, "host": self.host, "at": self.at}


def clean(text: str) -> str:
    """The text as it is kept: control characters but line breaks and tabs removed, whitespace at
    the ends trimmed, at most MAX_TEXT characters."""
    kept = "".join(c for c in text[: MAX_TEXT * 2] if c in "\n\t" or c.isprintable())
    return kept.strip()[:MAX_TEXT]


class Chat:
    def __init__(self) -> None:
        self.enabled = True
        self.messages: deque[ChatMessage] = deque(maxlen=KEPT)
        self._ids = itertools.count(1)
        self._rate = RateLimit(RATE, RATE_WINDOW_S)

    def allowed(self, sender: str) -> bool:
        """Whether `sender` may send one more now (counted when it does)."""
        return self._rate.allow(sender)

    def add(self, sender: str, name: str, text: str, host: bool, at: float) -> ChatMessage:
        message = ChatMessage(next(self._ids), sender, name, text, host, at)
        self.messages.append(message)
        return message

    def remove(self, message_id: int) -> ChatMessage | None:
        for message in self.messages:
            if message.id == message_id:
                self.messages.remove(message)
                return message
        return None

    def clear(self) -> None:
        """The meeting is over: its messages are forgotten (and the next one starts with chat on)."""
        self.messages.clear()
        self.enabled = True
