"""The backplane's control connection between two nodes, sans-IO: a mutual proof of the cluster
secret, then messages each carried with a tag only the two ends can make.

Framing: a frame is a 4-byte big-endian length, a 32-byte tag and a JSON object (the length counts
tag and JSON). A frame may be at most MAX_FRAME_BYTES; anything longer, shorter, not JSON, or with a
wrong tag ends the connection with a reason (`failure`), and nothing of it reaches the meeting.

Handshake (the dialling node is the initiator; nonces are 16 random bytes, hex):
  initiator -> {"hello": 1, "node": A, "nonce": nA}
  responder -> {"hello": 2, "node": B, "nonce": nB, "proof": HMAC(secret, "responder" | nA | nB | A | B)}
  initiator -> {"hello": 3, "proof": HMAC(secret, "initiator" | nA | nB | A | B)}
Both then hold the session key HMAC(secret, "session" | nA | nB | A | B); each later frame's tag is
HMAC(session key, sender role | sequence number | JSON), the sequence counting from 0 each way, so
a frame cannot be forged, altered, replayed or reordered. The session key also keys the link's
SRTP (`media_keys`): nobody without the secret hears a meeting between nodes.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
import struct
from typing import Any

MAX_FRAME_BYTES = 256 * 1024
_TAG = 32
_HEADER = struct.Struct("!I")
NODE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class LinkState(enum.Enum):
    HELLO = "hello"
    OPEN = "open"
    FAILED = "failed"


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).digest()


class ControlLink:
    """One end of a control connection: `receive(data)` with what came, `data_to_send()` for what
    to write, `send(message)` once open, `next_message()` for what the other node said."""

    def __init__(self, secret: bytes, node: str, initiator: bool) -> None:
        self._secret = secret
        self.node = node
        self.peer: str | None = None  # the other node's name, once it proved the secret
        self.initiator = initiator
        self.state = LinkState.HELLO
        self.failure: str | None = None
        self._nonce = secrets.token_hex(16)
        self._peer_nonce = ""
        self._key = b""
        self._out = bytearray()
        self._in = bytearray()
        self._messages: list[dict[str, Any]] = []
        self._sent = self._received = 0
        if initiator:
            self._frame({"hello": 1, "node": node, "nonce": self._nonce}, tagged=False)

    # -- in ---------------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.state is LinkState.FAILED:
            return
        self._in += data
        while len(self._in) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._in)
            if length < _TAG + 2 or length > MAX_FRAME_BYTES:
                self._fail(f"a frame of {length} bytes")
                return
            if len(self._in) < _HEADER.size + length:
                return
            frame = bytes(self._in[_HEADER.size : _HEADER.size + length])
            del self._in[: _HEADER.size + length]
            self._take(frame[:_TAG], frame[_TAG:])
            if self.failure is not None:
                return

    def _take(self, tag: bytes, body: bytes) -> None:
        if self.state is LinkState.OPEN:
            role = b"responder" if self.initiator else b"initiator"
            expected = _mac(self._key, role, str(self._received).encode(), body)
            if not hmac.compare_digest(tag, expected):
                self._fail("a frame with a wrong tag")
                return
            self._received += 1
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self._fail("a frame that is not JSON")
            return
        if not isinstance(message, dict):
            self._fail("a frame that is not a JSON object")
            return
        if self.state is LinkState.OPEN:
            self._messages.append(message)
        else:
            self._hello(message)

    def _hello(self, message: dict[str, Any]) -> None:
        step = message.get("hello")
        if not self.initiator and step == 1 and not self._peer_nonce:
            node, nonce = message.get("node"), message.get("nonce")
            if not self._valid_hello(node, nonce):
                return
            self.peer, self._peer_nonce = str(node), str(nonce)
            proof = self._proof(b"responder")
            self._frame({"hello": 2, "node": self.node, "nonce": self._nonce, "proof": proof}, tagged=False)
        elif self.initiator and step == 2 and not self._peer_nonce:
            node, nonce = message.get("node"), message.get("nonce")
            if not self._valid_hello(node, nonce):
                return
            self.peer, self._peer_nonce = str(node), str(nonce)
            if not self._proven(message.get("proof"), b"responder"):
                return
            self._frame({"hello": 3, "proof": self._proof(b"initiator")}, tagged=False)
            self._open()
        elif not self.initiator and step == 3 and self._peer_nonce:
            if self._proven(message.get("proof"), b"initiator"):
                self._open()
        else:
            self._fail("an unexpected handshake step")

    def _valid_hello(self, node: Any, nonce: Any) -> bool:
        if not isinstance(node, str) or not NODE_NAME.match(node):
            self._fail("a node name that is not one")
        elif node == self.node:
            self._fail("a node of our own name")
        elif not isinstance(nonce, str) or not re.fullmatch(r"[0-9a-f]{32}", nonce):
            self._fail("a nonce that is not one")
        else:
            return True
        return False

    def _transcript(self) -> tuple[bytes, ...]:
        a_nonce, b_nonce = (self._nonce, self._peer_nonce) if self.initiator else (self._peer_nonce, self._nonce)
        a_node, b_node = (self.node, self.peer or "") if self.initiator else (self.peer or "", self.node)
        return (a_nonce.encode(), b_nonce.encode(), a_node.encode(), b_node.encode())

    def _proof(self, role: bytes) -> str:
        return _mac(self._secret, role, *self._transcript()).hex()

    def _proven(self, proof: Any, role: bytes) -> bool:
        if isinstance(proof, str) and hmac.compare_digest(proof, self._proof(role)):
            return True
        self._fail("no proof of the cluster secret")
        return False

    def _open(self) -> None:
        self._key = _mac(self._secret, b"session", *self._transcript())
        self.state = LinkState.OPEN

    def _fail(self, why: str) -> None:
        self.state = LinkState.FAILED
        self.failure = why
        self._in.clear()

    # -- out --------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if self.state is not LinkState.OPEN:
            raise RuntimeError("the link is not open")
        self._frame(message, tagged=True)

    def _frame(self, message: dict[str, Any], tagged: bool) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        if tagged:
            role = b"initiator" if self.initiator else b"responder"
            tag = _mac(self._key, role, str(self._sent).encode(), body)
            self._sent += 1
        else:
            tag = bytes(_TAG)
        if _TAG + len(body) > MAX_FRAME_BYTES:
            raise ValueError("a message too large for one frame")
        self._out += _HEADER.pack(_TAG + len(body)) + tag + body

    def data_to_send(self) -> bytes:
        data, self._out = bytes(self._out), bytearray()
        return data

    def next_message(self) -> dict[str, Any] | None:
        return self._messages.pop(0) if self._messages else None

    def media_keys(self) -> tuple[bytes, bytes]:
        """The SRTP master keys and salts (30 bytes, AES_CM_128_HMAC_SHA1_80) of this link's
        media: (what this node sends, what it receives)."""
        mine = _mac(self._key, b"srtp", self.node.encode())[:30]
        theirs = _mac(self._key, b"srtp", (self.peer or "").encode())[:30]
        return mine, theirs

    def media_ssrc(self, room: str, sender: str) -> int:
        """The SSRC of the stream `sender` sends for `room`: both ends know it, nobody else."""
        return int.from_bytes(_mac(self._key, b"ssrc", room.encode(), sender.encode())[:4], "big")
