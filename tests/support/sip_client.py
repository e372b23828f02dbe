"""A raw SIP caller over UDP for attack tests: writes requests byte by byte (so a test can send what
no well-behaved client would), reads the answers with its own small parser (independent of the
gateway's), and has an RTP socket of its own for the SDP it offers."""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str:
        return (self.headers.get(name.lower()) or [""])[0]

    @property
    def to_tag(self) -> str:
        to = self.header("to")
        return to.split(";tag=", 1)[1].split(";")[0] if ";tag=" in to else ""

    @property
    def cseq_method(self) -> str:
        return self.header("cseq").split()[-1] if self.header("cseq") else ""


@dataclass
class Request:
    method: str
    headers: dict[str, list[str]]
    body: bytes
    raw: bytes


def parse_message(data: bytes) -> Response | Request:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if lines[0].startswith("SIP/2.0 "):
        _, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        return Response(int(status), reason, headers, body, data)
    return Request(lines[0].split(" ")[0], headers, body, data)


def sdp_offer(host: str, rtp_port: int, payload_types: str = "0 8 101", extra: str = "") -> str:
    return (
        "v=0\r\n"
        f"o=- 1 1 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP {payload_types}\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        f"{extra}"
    )


@dataclass
class Dialog:
    user: str
    call_id: str
    from_tag: str
    cseq: int = 1
    to_tag: str = ""
    branch: str = ""
    answers: list[Response] = field(default_factory=list)


class RawCaller:
    def __init__(self, gateway_port: int, host: str = "127.0.0.1", number: str = "+4930555", display: str = "Caller"):
        self.gateway = ("127.0.0.1", gateway_port)
        self.host = host
        self.number = number
        self.display = display
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((host, 0))
        self.rtp_port = int(self.rtp.getsockname()[1])
        self.requests: list[Request] = []  # requests from the gateway (BYE), answered 200

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.gateway)

    def build(
        self,
        dialog: Dialog,
        method: str,
        body: str | bytes = b"",
        content_type: str | None = None,
        extra: list[str] | None = None,
        new_branch: bool = True,
        from_uri: str | None = None,
    ) -> bytes:
        if new_branch or not dialog.branch:
            dialog.branch = "z9hG4bK" + secrets.token_hex(8)
        payload = body.encode() if isinstance(body, str) else body
        to = f"<sip:{dialog.user}@127.0.0.1:{self.gateway[1]}>" + (f";tag={dialog.to_tag}" if dialog.to_tag else "")
        lines = [
            f"{method} sip:{dialog.user}@127.0.0.1:{self.gateway[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={dialog.branch};rport",
            "Max-Forwards: 70",
            f'From: "{self.display}" <{from_uri or f"sip:{self.number}@{self.host}"}>;tag={dialog.from_tag}',
            f"To: {to}",
            f"Call-ID: {dialog.call_id}",
            f"CSeq: {dialog.cseq} {method}",
            f"Contact: <sip:caller@{self.host}:{self.port}>",
            *(extra or []),
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload

    def new_dialog(self, user: str) -> Dialog:
        return Dialog(user, secrets.token_hex(10) + "@test", secrets.token_hex(4))

    def invite(self, user: str, sdp: str | None = None, from_uri: str | None = None) -> Dialog:
        dialog = self.new_dialog(user)
        body = sdp if sdp is not None else sdp_offer(self.host, self.rtp_port)
        self.send(self.build(dialog, "INVITE", body, "application/sdp", from_uri=from_uri))
        return dialog

    def register(self, user: str, password: str, expires: int = 600) -> Response:
        """REGISTERs as `user` (To and From), answering the gateway's digest challenge with
        `password`: the final answer (the 401 itself when it is not a challenge we can answer)."""
        from gateway.sip.digest import DigestClient, parse_challenge  # (the answer's arithmetic only)

        dialog = self.new_dialog(user)
        aor = f"sip:{user}@127.0.0.1"
        self.send(self.build(dialog, "REGISTER", extra=[f"Expires: {expires}"], from_uri=aor))
        first = self.final(dialog, method="REGISTER")
        if first.status != 401:
            return first
        challenge = parse_challenge(first.header("www-authenticate"))
        answer = DigestClient(user, password).authorization(challenge, "REGISTER", f"sip:{user}@127.0.0.1:{self.gateway[1]}")
        dialog.cseq += 1
        self.send(self.build(dialog, "REGISTER", extra=[f"Expires: {expires}", f"Authorization: {answer}"], from_uri=aor))
        return self.final(dialog, method="REGISTER")

    def receive(self, timeout: float = 5.0) -> Response | Request | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(70_000)
        except TimeoutError:
            return None
        message = parse_message(data)
        if isinstance(message, Request):
            self.requests.append(message)
            if message.method != "ACK":
                self._answer(message)
        return message

    def _answer(self, request: Request) -> None:
        lines = ["SIP/2.0 200 OK"]
        for name in ("via", "from", "to", "call-id", "cseq"):
            lines += [f"{name}: {value}" for value in request.headers.get(name, [])]
        self.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())

    def final(self, dialog: Dialog, timeout: float = 10.0, method: str = "INVITE") -> Response:
        """Waits for the final answer to the dialog's last request of `method`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.05, deadline - time.monotonic()))
            if isinstance(message, Response) and message.header("call-id") == dialog.call_id:
                dialog.answers.append(message)
                if message.status >= 200 and message.cseq_method == method:
                    if message.to_tag and method == "INVITE":
                        dialog.to_tag = message.to_tag
                    return message
        raise AssertionError(f"no final answer to {method} within {timeout} s")

    def bye_from_gateway(self, dialog: Dialog, timeout: float = 15.0) -> Request:
        """Waits for the gateway's BYE in this dialog (answered 200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in self.requests:
                if request.method == "BYE" and request.headers.get("call-id", [""])[0] == dialog.call_id:
                    return request
            self.receive(max(0.05, deadline - time.monotonic()))
        raise AssertionError(f"no BYE from the gateway within {timeout} s")

    def ack(self, dialog: Dialog, failed: bool = False) -> None:
        """The ACK of a 2xx is a new transaction; that of a failure shares the INVITE's branch."""
        self.send(self.build(dialog, "ACK", new_branch=not failed))

    def call(self, user: str, sdp: str | None = None, from_uri: str | None = None) -> tuple[Dialog, Response]:
        """INVITE, its final answer, and the ACK."""
        dialog = self.invite(user, sdp, from_uri)
        answer = self.final(dialog)
        self.ack(dialog, failed=answer.status >= 300)
        return dialog, answer

    def info(self, dialog: Dialog, body: str, content_type: str = "application/dtmf-relay") -> Response:
        dialog.cseq += 1
        self.send(self.build(dialog, "INFO", body, content_type))
        return self.final(dialog, method="INFO")

    def bye(self, dialog: Dialog) -> Response:
        dialog.cseq += 1
        self.send(self.build(dialog, "BYE"))
        return self.final(dialog, method="BYE")

    def options(self, timeout: float = 2.0) -> float:
        """An OPTIONS outside any dialog; returns the seconds until its answer."""
        dialog = self.new_dialog("gateway")
        started = time.monotonic()
        self.send(self.build(dialog, "OPTIONS"))
        self.final(dialog, timeout, method="OPTIONS")
        return time.monotonic() - started
