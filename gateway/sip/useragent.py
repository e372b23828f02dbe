"""The gateway's SIP user agent core, sans-IO (RFC 3261 8.2, 12, 13.3, 17.2, 17.1.2; RFC 3311,
RFC 6086 INFO, RFC 3326 Reason): datagrams and stream messages in, messages to send and call
events out; a clock is injected and `poll(now)` runs what timers are due.

It answers calls (the gateway is the UAS: room systems and phones dial in): INVITE server
transactions with 100 Trying and retransmitted final answers, 2xx retransmitted until the ACK,
CANCEL, re-INVITE and UPDATE offers answered from the call's `MediaPlan` (late offers included,
the answer then read from the ACK), INFO digits, OPTIONS, BYE either way (ours with a Reason
header, retransmitted until answered), 481 for requests outside any dialog, 420 for extensions
we do not support, and a 400 with the reason for malformed requests.

Why our own core and not pjsua2: the pjsua2-python wheel is built with PJSUA_MAX_CALLS 4 (a fifth
concurrent call is answered 486 by pjsua itself), leaks a conference slot per call (no calls
after about 253), and refuses any answer with a codec it lacks (Opus). A conference bridge needs
hundreds of calls per process; the SIP a bridge needs as a UAS is a small, testable core.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from gateway.sip import message as sipmsg
from gateway.sip import sdp
from gateway.sip.message import NameAddr, SipMessage, SipMessageError
from gateway.transcode.audio import AudioCodec

log = structlog.get_logger(__name__)

Address = tuple[str, int]
T1, T2 = 0.5, 4.0
TIMEOUT = 64 * T1  # timers B, F, H: a transaction gives up after 32 s
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
SUPPORTED = ""  # no extensions: no 100rel, no session timers of ours (refreshes are answered anyway)
_KNOWN_EXTENSIONS: set[str] = set()
# Methods of SIP extensions we know and do not take (405); anything else is unknown to us (501).
_OTHER_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH", "PRACK"}
MAX_INFO_DIGITS = 4  # digits one SIP INFO may carry (phones send one per INFO)


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and so where answers go: a UDP address or a stream connection."""

    transport: str  # udp, tcp, tls
    address: Address
    connection: int | None = None


@dataclass(frozen=True)
class MediaPlan:
    """What our SDP says about our side of a call."""

    local_address: str
    audio_port: int
    codecs: list[AudioCodec]
    prefer_ours: bool
    user_agent: str
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    direction: str = "sendrecv"
    require_srtp: bool = False  # sip.srtp required (or the room system's): offers without SDES get 488


@dataclass(frozen=True)
class IncomingCall:
    call: int
    sip_call_id: str
    user: str  # user part of the request URI: the alias dialled
    display_name: str
    from_user: str
    source: str  # the address the INVITE came from (ip), for lockouts and logs
    transport: str
    offer: str | None  # the SDP body, None for a late offer
    from_uri: str = ""  # the caller's URI (From): recognises a room system of the directory


class CallEvents(Protocol):
    def incoming(self, call: IncomingCall) -> None: ...
    def media(self, call: int, choice: sdp.AudioChoice) -> None: ...
    def digit(self, call: int, digit: str, via: str) -> None: ...
    def confirmed(self, call: int) -> None: ...
    def disconnected(self, call: int, status: int, reason: str) -> None: ...


Send = Callable[[bytes, Peer], None]


@dataclass
class _ServerTransaction:
    key: tuple[str, str]
    peer: Peer
    expires_at: float = 0.0
    last_response: bytes | None = None
    call: int | None = None  # for INVITE transactions
    final_status: int = 0
    acked: bool = False


@dataclass
class _Call:
    id: int
    invite: SipMessage
    peer: Peer
    local_tag: str
    remote_tag: str
    call_id: str
    local_uri: str  # the To of the INVITE (we are the callee)
    remote_uri: str  # the From of the INVITE
    remote_target: str  # the caller's Contact
    route_set: list[str]
    remote_cseq: int
    invite_tx: _ServerTransaction
    state: str = "incoming"  # incoming -> answered (2xx sent) -> confirmed -> terminated;
    # dial-out: calling -> confirmed -> terminated
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**16))
    plan: MediaPlan | None = None
    offered_codecs: list[AudioCodec] | None = None  # our offer awaits its answer (in an ACK)
    version: int = 1
    codec_in_use: AudioCodec | None = None
    pending_2xx: bytes | None = None
    pending_2xx_cseq: int = 0
    bye_after_ack: tuple[int, str] | None = None
    confirmed_once: bool = False
    timers: list[int] = field(default_factory=list)


class UserAgent:
    def __init__(
        self,
        send: Send,
        events: CallEvents,
        now: Callable[[], float],
        *,
        local: dict[str, Address],
        public_address: str | None = None,
        user_agent: str = "meeting-gateway",
        max_calls: int = 1000,
        max_transactions: int = 10_000,
    ) -> None:
        self._send = send
        self._events = events
        self._now = now
        self.local = local  # transport -> (host, port) we listen on
        self.public_address = public_address
        self.user_agent = user_agent
        self.max_calls = max_calls
        self.calls: dict[int, _Call] = {}
        self._dialogs: dict[tuple[str, str, str], int] = {}  # (Call-ID, our tag, their tag) -> call
        # Server transactions in the order they began, so the oldest expire (and, past
        # max_transactions, are dropped) from the front: a flood of distinct branches costs bounded
        # memory and no timer per transaction.
        self._server_tx: OrderedDict[tuple[str, str], _ServerTransaction] = OrderedDict()
        self.max_transactions = max_transactions
        self._client_tx: dict[str, tuple[bytes, Peer, int]] = {}  # branch -> (request, peer, timer)
        self._invites: dict[str, tuple[int, SipMessage, Peer]] = {}  # our INVITEs: branch -> (call, request, peer)
        self._timers: list[tuple[float, int, Callable[[], object]]] = []
        self._cancelled_timers: set[int] = set()
        self._timer_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self.counters = {"requests": 0, "malformed": 0, "calls": 0, "refused_busy": 0, "transactions_dropped": 0}

    # -- timers -----------------------------------------------------------------------------------

    def _after(self, delay: float, action: Callable[[], object]) -> int:
        timer = next(self._timer_ids)
        heapq.heappush(self._timers, (self._now() + delay, timer, action))
        return timer

    def _cancel(self, timer: int) -> None:
        self._cancelled_timers.add(timer)

    @property
    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][1] in self._cancelled_timers:
            self._cancelled_timers.discard(heapq.heappop(self._timers)[1])
        return self._timers[0][0] if self._timers else None

    def poll(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, timer, action = heapq.heappop(self._timers)
            if timer in self._cancelled_timers:
                self._cancelled_timers.discard(timer)
                continue
            try:
                action()
            except Exception:
                log.exception("SIP timer failed")

    def _remember(self, tx: _ServerTransaction) -> None:
        """Keeps a server transaction for 64*T1 (retransmissions are answered from it)."""
        now = self._now()
        table = self._server_tx
        while table:
            oldest = next(iter(table.values()))
            if oldest.expires_at > now and len(table) < self.max_transactions:
                break
            table.popitem(last=False)
            if oldest.expires_at > now:  # full: the oldest live one goes (a flood of branches)
                self.counters["transactions_dropped"] += 1
                if _worth_logging(self.counters["transactions_dropped"]):
                    log.warning("SIP transaction table full; oldest dropped", dropped=self.counters["transactions_dropped"])
        tx.expires_at = now + TIMEOUT
        table[tx.key] = tx
        table.move_to_end(tx.key)

    # -- input ------------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            msg = sipmsg.parse(data)
        except SipMessageError as exc:
            self.counters["malformed"] += 1
            if _worth_logging(self.counters["malformed"]):  # a flood of garbage must not flood the log
                log.info(
                    "malformed SIP message",
                    reason=str(exc),
                    source=peer.address[0],
                    transport=peer.transport,
                    malformed_so_far=self.counters["malformed"],
                )
            self._answer_malformed(data, peer, exc)
            return
        try:
            if msg.is_request:
                self.counters["requests"] += 1
                self._request(msg, peer)
            else:
                self._response(msg)
        except SipMessageError as exc:
            self.counters["malformed"] += 1
            if _worth_logging(self.counters["malformed"]):
                log.info("unusable SIP message", reason=str(exc), source=peer.address[0])
            if msg.is_request and msg.method != "ACK":
                try:
                    self._reply(msg, peer, 400, f"Bad Request ({exc})"[:120])
                except SipMessageError:
                    pass  # (no answer can be formed: the request goes unanswered)
        except Exception:
            # A bug met by one request costs that request a 500, nothing else (logged, not floods).
            self.counters["failed"] = self.counters.get("failed", 0) + 1
            if _worth_logging(self.counters["failed"]):
                log.exception("SIP message handling failed", source=peer.address[0], method=msg.method or None)
            if msg.is_request and msg.method != "ACK":
                try:
                    self._reply(msg, peer, 500, "Server Internal Error")
                except Exception:
                    pass

    def _answer_malformed(self, data: bytes, peer: Peer, error: SipMessageError) -> None:
        """Answers a request we could not parse (400 with the reason, or the error's own status:
        505, 513) when an answer can be formed: the start line names a method (not ACK) and a Via
        and a CSeq can be found; From, To and Call-ID are copied when present (RFC 4475 insuf lacks
        them). Lenient but linear: at most MAX_HEADER_LINES lines are read, folded lines joined once,
        and nothing goes out that is too large or that our own parser would not read back."""
        head = data.lstrip(b"\r\n")
        end = head.find(b"\r\n\r\n")
        lines = (head[:end] if end >= 0 else head).decode("utf-8", "replace").split("\n", sipmsg.MAX_HEADER_LINES)
        method = lines[0].split(" ", 1)[0]
        if not sipmsg.is_token(method) or method.upper() == "ACK":
            return  # (a response starts with SIP/2.0, which is no token: never answered)
        found: list[tuple[str, list[str]]] = []
        pieces: list[str] | None = None
        for raw in lines[1 : sipmsg.MAX_HEADER_LINES]:  # (the rest, if any, is not read)
            line = raw[:-1] if raw.endswith("\r") else raw
            if line[:1] in (" ", "\t"):
                if pieces is not None:
                    pieces.append(line.strip(" \t"))
                continue
            name, colon, value = line.partition(":")
            key = name.strip(" \t").lower()
            key = sipmsg.COMPACT_FORMS.get(key, key)
            pieces = [value.strip(" \t")] if colon and key in ("via", "from", "to", "call-id", "cseq") else None
            if pieces is not None:
                found.append((key, pieces))
        values = [(key, " ".join(piece for piece in pieces if piece)) for key, pieces in found]
        if any(len(value) > sipmsg.MAX_LINE_LENGTH for _, value in values):
            return  # an echoed header too long to answer with (our answer would be refused too)
        vias = [value for key, value in values if key == "via" and value]
        if not vias or not any(key == "cseq" and value for key, value in values):
            return
        reason = sipmsg.REASON_PHRASES.get(error.status, "Bad Request")
        response = SipMessage(status=error.status, reason=f"{reason} ({error})"[:120] if error.status == 400 else reason)
        try:
            first = sipmsg.split_list(vias[0])
            if not first:
                return
            response.add("via", ", ".join([_stamp_via(first[0], peer), *first[1:]]))
            for via in vias[1:]:
                response.add("via", via)
            for name in ("from", "to", "call-id", "cseq"):
                copied = next((value for key, value in values if key == name), None)
                if copied is None:
                    continue
                if name == "to":
                    try:
                        if not NameAddr.parse(copied).tag:
                            copied += f";tag={secrets.token_hex(8)}"
                    except SipMessageError:
                        pass  # (a To we cannot read is echoed as it came, without our tag)
                response.add(name, copied)
            response.add("server", self.user_agent)
            answer = response.serialize()
            sipmsg.parse(answer)  # never send what we could not read back ourselves
        except SipMessageError:
            return
        self._send(answer, peer)

    def _request(self, msg: SipMessage, peer: Peer) -> None:
        via = msg.top_via
        method = msg.method
        if via.branch.lower() == "z9hg4bk":
            # RFC 4475 badbranch: the RFC 3261 magic cookie and no transaction id after it; every such
            # request would fall into one transaction. Refused statelessly, as the RFC suggests.
            if method != "ACK":
                self._reply(msg, peer, 400, "Bad Request (branch without a transaction id)")
            return
        # A transaction is matched on its branch and where it came from (RFC 3261 17.2.3 compares
        # the sent-by too): the same branch from another address or connection is another element's
        # request (RFC 4475 reuses z9hG4bKkdjuw in a dozen). It is handled on its own, never answered
        # from that transaction (branches are guessable), never allowed to ACK or CANCEL it, and not
        # stored over it.
        invite_tx = self._server_tx.get((via.branch, "INVITE")) if via.branch else None
        foreign = invite_tx is not None and invite_tx.peer != peer
        if method == "ACK":
            if not foreign:
                self._ack(msg)
            return
        key = (via.branch, method)
        tx = self._server_tx.get(key) if via.branch else None
        if tx is not None and tx.peer != peer:
            tx, foreign = None, True
        if tx is not None:  # a retransmission: the last answer again
            if tx.last_response is not None:
                self._send(tx.last_response, peer)
            return
        if method == "CANCEL":
            if foreign:
                self._reply(msg, peer, 481, "Call/Transaction Does Not Exist")
            else:
                self._cancel_request(msg, peer)
            return
        tx = _ServerTransaction(key, peer)
        if via.branch and not foreign:
            self._remember(tx)
        if msg.uri.partition(":")[0].lower() not in ("sip", "sips", "tel"):
            # RFC 3261 8.2.2.1 (RFC 4475 unkscm, novelsc)
            self._reply(msg, peer, 416, "Unsupported URI Scheme", tx)
            return
        content_type = msg.content_type
        if (
            method in ("INVITE", "UPDATE")
            and msg.body.strip()
            and content_type != "application/sdp"
            and not content_type.startswith("multipart/")
        ):
            # RFC 3261 8.2.3 (RFC 4475 invut): an offer we cannot read is refused, not taken as a late offer
            self._reply(msg, peer, 415, "Unsupported Media Type", tx, extra=[("accept", "application/sdp")])
            return
        accept = msg.get("accept")
        if method == "INVITE" and accept is not None and not sipmsg.accepts_sdp(accept):
            # RFC 3261 21.4.7 (RFC 4475 sdp01): our answer would carry SDP, which it says it cannot take
            self._reply(msg, peer, 406, "Not Acceptable", tx, extra=[("accept", "application/sdp")])
            return
        max_forwards = msg.get("max-forwards")
        if max_forwards is not None and sipmsg.ascii_int(max_forwards, 10) == 0 and method != "OPTIONS":
            self._reply(msg, peer, 483, "Too Many Hops", tx)
            return
        unsupported = [t for t in _tags(msg.get("require")) if t not in _KNOWN_EXTENSIONS]
        if unsupported:
            self._reply(msg, peer, 420, "Bad Extension", tx, extra=[("unsupported", ", ".join(unsupported))])
            return
        try:
            self._dispatch(msg, peer, tx)
        except SipMessageError as exc:
            self.counters["malformed"] += 1
            log.info("unusable SIP request", reason=str(exc), source=peer.address[0], method=method)
            self._reply(msg, peer, 400, f"Bad Request ({exc})"[:120], tx)

    def _dispatch(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction) -> None:
        method = msg.method
        to_tag = NameAddr.parse(msg.get("to") or "").tag
        if to_tag:
            self._in_dialog(msg, peer, tx, to_tag)
        elif method == "INVITE":
            self._new_call(msg, peer, tx)
        elif method == "OPTIONS":
            self._reply(msg, peer, 200, "OK", tx, extra=self._capabilities())
        elif method == "BYE" or method == "INFO" or method == "UPDATE":
            self._reply(msg, peer, 481, "Call/Transaction Does Not Exist", tx)
        else:
            self._refuse_method(msg, peer, tx)

    def _refuse_method(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction, to_tag: str | None = None) -> None:
        """RFC 3261 21.4.6 / 21.5.2: 405 (with Allow) for a SIP method we know but do not take here,
        501 for a method we do not know at all."""
        if msg.method in _OTHER_METHODS:
            self._reply(msg, peer, 405, "Method Not Allowed", tx, extra=[("allow", ALLOW)], to_tag=to_tag)
        else:
            self._reply(msg, peer, 501, "Not Implemented", tx, extra=[("allow", ALLOW)], to_tag=to_tag)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("allow", ALLOW), ("accept", "application/sdp, application/dtmf-relay, application/dtmf")]

    # -- new calls --------------------------------------------------------------------------------

    def _new_call(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction) -> None:
        invite = sipmsg.parse_invite(msg)  # SipMessageError -> 400
        if len(self.calls) >= self.max_calls:
            self.counters["refused_busy"] += 1
            self._reply(msg, peer, 503, "Too Many Calls", tx, extra=[("retry-after", "30")])
            return
        contact = msg.all("contact")
        call = _Call(
            id=next(self._call_ids),
            invite=msg,
            peer=peer,
            local_tag=secrets.token_hex(8),
            remote_tag=NameAddr.parse(msg.get("from") or "").tag,
            call_id=msg.call_id,
            local_uri=NameAddr.parse(msg.get("to") or "").uri,
            remote_uri=NameAddr.parse(msg.get("from") or "").uri,
            remote_target=NameAddr.parse(contact[0]).uri if contact else NameAddr.parse(msg.get("from") or "").uri,
            route_set=msg.all("record-route"),
            remote_cseq=msg.cseq[0],
            invite_tx=tx,
        )
        tx.call = call.id
        self.calls[call.id] = call
        self._dialogs[(call.call_id, call.local_tag, call.remote_tag)] = call.id
        self.counters["calls"] += 1
        self._reply(msg, peer, 100, "Trying", tx)
        self._events.incoming(
            IncomingCall(
                call=call.id,
                sip_call_id=call.call_id,
                user=invite.user,
                display_name=invite.display_name,
                from_user=invite.from_user,
                source=peer.address[0],
                transport=peer.transport,
                offer=invite.sdp,
                from_uri=invite.from_uri,
            )
        )

    # -- commands from the gateway ----------------------------------------------------------------

    def answer(
        self, call_id: int, status: int, reason: str | None = None, plan: MediaPlan | None = None, body: str | None = None
    ) -> None:
        """Answers an INVITE: 200 with `body` (our SDP answer), or with our offer from `plan`
        when the INVITE had none (the answer then comes in the ACK)."""
        call = self.calls.get(call_id)
        if call is None or call.state != "incoming":
            return
        if plan is not None:
            call.plan = plan
        if status >= 300:
            self._final_failure(call, status, reason or "Refused")
            return
        if body is None and call.plan is not None:
            body = self._our_offer(call)
        elif body is not None:
            codec = next(iter(_codecs_in(body, call.plan)), None) if call.plan else None
            call.codec_in_use = codec
        call.state = "answered"
        self._send_2xx(call, call.invite, body)
        call.invite_tx.final_status = status

    def hang_up(
        self,
        call_id: int,
        status: int = 200,
        reason: str | None = None,
        cause: tuple[int, str] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        """Refuses (before an answer: `status` >= 300, with Retry-After when given) or ends (BYE,
        with a Reason header from `cause`)."""
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.state == "incoming":
            code = status if status >= 300 else 480
            extra = [("retry-after", str(retry_after_s))] if retry_after_s is not None else None
            self._final_failure(call, code, reason or "Temporarily Unavailable", extra)
            return
        if call.state == "calling":  # our dial-out, not answered yet
            self._cancel_invite(call)
            self._terminate(call, 487, "Cancelled")
            return
        if call.state == "answered":  # no ACK yet: the BYE waits for it (RFC 3261 15)
            call.bye_after_ack = cause or (200, "")
            return
        if call.state == "confirmed":
            self._send_bye(call, cause)
            self._terminate(call, 200, "Local BYE")

    # -- responses --------------------------------------------------------------------------------

    def _contact(self, peer: Peer) -> str:
        host, port = self.local.get(peer.transport, next(iter(self.local.values())))
        host = self.public_address or host
        if ":" in host:
            host = f"[{host}]"
        # sip: with transport=tls rather than sips: (which would demand TLS on every hop; many
        # room systems and baresip do not take sips: Contacts)
        suffix = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:gateway@{host}:{port}{suffix}>"

    def _build_response(
        self,
        request: SipMessage,
        status: int,
        reason: str,
        to_tag: str | None,
        extra: list[tuple[str, str]] | None = None,
        peer: Peer | None = None,
    ) -> SipMessage:
        response = SipMessage(status=status, reason=reason)
        for index, via in enumerate(request.all("via")):
            response.add("via", _stamp_via(via, peer) if index == 0 and peer is not None else via)
        response.add("from", request.get("from") or "")
        to = request.get("to") or ""
        if to_tag and status > 100 and not NameAddr.parse(to).tag:
            to += f";tag={to_tag}"
        response.add("to", to)
        response.add("call-id", request.call_id)
        response.add("cseq", request.get("cseq") or "")
        for key, value in extra or []:
            response.add(key, value)
        response.add("server", self.user_agent)
        return response

    def _reply(
        self,
        request: SipMessage,
        peer: Peer,
        status: int,
        reason: str,
        tx: _ServerTransaction | None = None,
        extra: list[tuple[str, str]] | None = None,
        to_tag: str | None = None,
    ) -> None:
        tag = to_tag or (secrets.token_hex(8) if status >= 200 else None)
        data = self._build_response(request, status, reason, tag, extra, peer).serialize()
        if tx is not None:
            tx.last_response = data
            if request.method == "INVITE" and status >= 300 and tx.final_status == 0:
                # Every failure answer to an INVITE is retransmitted over UDP until its ACK (17.2.1).
                tx.final_status = status
                if peer.transport == "udp":
                    self._retransmit_until_acked(tx, T1)
        self._send(data, peer)

    def _final_failure(
        self, call: _Call, status: int, reason: str, extra: list[tuple[str, str]] | None = None
    ) -> None:
        """A 3xx-6xx to the INVITE, retransmitted over UDP until the ACK (timers G, H)."""
        self._reply(call.invite, call.peer, status, reason, call.invite_tx, extra=extra, to_tag=call.local_tag)
        self._terminate(call, status, reason)

    def _retransmit_until_acked(self, tx: _ServerTransaction, interval: float, waited: float = 0.0) -> None:
        def again() -> None:
            if tx.acked or tx.last_response is None:
                return
            self._send(tx.last_response, tx.peer)
            self._retransmit_until_acked(tx, min(2 * interval, T2), waited + interval)

        if waited + interval < TIMEOUT:
            self._after(interval, again)

    def _send_2xx(self, call: _Call, request: SipMessage, body: str | None) -> None:
        extra = [("contact", self._contact(call.peer)), ("allow", ALLOW)]
        if request.method == "INVITE":
            extra += [("record-route", route) for route in request.all("record-route")]
        if body is not None:
            extra.append(("content-type", "application/sdp"))
        response = self._build_response(request, 200, "OK", call.local_tag, extra, call.peer)
        if body is not None:
            response.body = body.encode()
        data = response.serialize()
        tx = self._server_tx.get((request.top_via.branch, request.method))
        if tx is not None:
            tx.last_response = data  # a retransmitted request gets this again
        if request.method == "INVITE":
            # The 2xx to an INVITE is the core's to retransmit, until the ACK (RFC 3261 13.3.1.4).
            call.pending_2xx = data
            call.pending_2xx_cseq = request.cseq[0]
            self._send(data, call.peer)
            if call.peer.transport == "udp":
                self._schedule_2xx(call, data, T1)
            call.timers.append(self._after(TIMEOUT, lambda: self._no_ack(call, data)))
        else:
            self._send(data, call.peer)

    def _schedule_2xx(self, call: _Call, data: bytes, interval: float) -> None:
        def again() -> None:
            if call.pending_2xx is not data or call.state == "terminated":
                return
            self._send(data, call.peer)
            self._schedule_2xx(call, data, min(2 * interval, T2))

        call.timers.append(self._after(interval, again))

    def _no_ack(self, call: _Call, data: bytes) -> None:
        """64*T1 without the ACK of our 2xx: the dialog is confirmed and ended (RFC 3261 13.3.1.4)."""
        if call.pending_2xx is not data or call.state == "terminated":
            return
        log.warning("no ACK for our 200 OK; ending the call", call_id=call.call_id)
        call.pending_2xx = None
        call.state = "confirmed"
        self._send_bye(call, (408, "No ACK"))
        self._terminate(call, 408, "No ACK")

    # -- ACK, CANCEL ------------------------------------------------------------------------------

    def _ack(self, msg: SipMessage) -> None:
        via_branch = msg.top_via.branch
        tx = self._server_tx.get((via_branch, "INVITE"))
        if tx is not None and tx.final_status >= 300:
            tx.acked = True  # the ACK of a failure answer: absorbed by the transaction
            return
        to_tag = NameAddr.parse(msg.get("to") or "").tag
        call_number = self._dialogs.get((msg.call_id, to_tag, NameAddr.parse(msg.get("from") or "").tag))
        call = self.calls.get(call_number) if call_number is not None else None
        if call is None or call.pending_2xx is None or msg.cseq[0] != call.pending_2xx_cseq:
            return  # a retransmitted or stray ACK
        call.pending_2xx = None
        if call.offered_codecs is not None:
            self._take_answer(call, msg)
        if call.state == "answered":
            call.state = "confirmed"
            if not call.confirmed_once:
                call.confirmed_once = True
                self._events.confirmed(call.id)
            if call.bye_after_ack is not None:
                cause = call.bye_after_ack
                self._send_bye(call, cause if cause[0] != 200 else None)
                self._terminate(call, 200, "Local BYE")

    def _cancel_request(self, msg: SipMessage, peer: Peer) -> None:
        tx = self._server_tx.get((msg.top_via.branch, "INVITE"))
        call = self.calls.get(tx.call) if tx is not None and tx.call is not None else None
        if tx is None:
            self._reply(msg, peer, 481, "Call/Transaction Does Not Exist")
            return
        cancel_tx = _ServerTransaction((msg.top_via.branch, "CANCEL"), peer)
        self._remember(cancel_tx)
        self._reply(msg, peer, 200, "OK", cancel_tx, to_tag=call.local_tag if call else None)
        if call is not None and call.state == "incoming":
            log.info("call cancelled before the answer", call_id=call.call_id)
            self._final_failure(call, 487, "Request Terminated")

    # -- in-dialog requests -----------------------------------------------------------------------

    def _in_dialog(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction, to_tag: str) -> None:
        from_tag = NameAddr.parse(msg.get("from") or "").tag
        number = self._dialogs.get((msg.call_id, to_tag, from_tag))
        call = self.calls.get(number) if number is not None else None
        if call is None or call.state == "terminated":
            self._reply(msg, peer, 481, "Call/Transaction Does Not Exist", tx)
            return
        cseq = msg.cseq[0]
        if cseq <= call.remote_cseq and msg.method != "ACK":
            self._reply(msg, peer, 500, "Server Internal Error", tx, extra=[("retry-after", "1")], to_tag=to_tag)
            return
        call.remote_cseq = cseq
        if msg.get("contact") and msg.method in ("INVITE", "UPDATE"):
            call.remote_target = NameAddr.parse(msg.all("contact")[0]).uri  # target refresh
        method = msg.method
        if method == "BYE":
            self._reply(msg, peer, 200, "OK", tx, to_tag=to_tag)
            self._terminate(call, 200, "Remote BYE")
        elif method in ("INVITE", "UPDATE"):
            self._reoffer(call, msg, peer, tx)
        elif method == "INFO":
            digits = sipmsg.info_digits(msg)
            if digits is not None and len(digits) > MAX_INFO_DIGITS:
                # A key press is one digit; thousands in one INFO would be a PIN-guessing machine gun.
                log.info("SIP INFO with too many digits refused", call_id=call.call_id, digits=len(digits))
                self._reply(msg, peer, 400, "Bad Request (too many digits in one INFO)", tx, to_tag=to_tag)
                return
            self._reply(msg, peer, 200, "OK", tx, to_tag=to_tag)
            for digit in digits or "":
                self._events.digit(call.id, digit, "sip-info")
        elif method == "OPTIONS":
            self._reply(msg, peer, 200, "OK", tx, extra=self._capabilities(), to_tag=to_tag)
        else:
            self._refuse_method(msg, peer, tx, to_tag)

    def _reoffer(self, call: _Call, msg: SipMessage, peer: Peer, tx: _ServerTransaction) -> None:
        """Hold, resume, codec change, session refresh: answered from the plan, or our offer."""
        plan = call.plan
        if call.state != "confirmed" or plan is None or call.pending_2xx is not None:
            # RFC 3261 14.2: an offer while ours is pending or the first is unconfirmed
            self._reply(msg, peer, 491, "Request Pending", tx, to_tag=call.local_tag)
            return
        offer = sipmsg.sdp_body(msg)
        if offer is None:
            if msg.method == "UPDATE":
                self._send_2xx(call, msg, None)  # a refresh without an offer
                return
            body = self._our_offer(call)
        else:
            try:
                answer = self._answer(call, offer)
            except sdp.SdpError as exc:
                log.info("re-offer refused", call_id=call.call_id, status=exc.status, reason=exc.reason)
                self._reply(msg, peer, 488, "Not Acceptable Here", tx, to_tag=call.local_tag)
                return
            body = answer.sdp
            call.codec_in_use = answer.audio.codec
            self._events.media(call.id, answer.audio)
        self._send_2xx(call, msg, body)
        if msg.method == "INVITE":
            call.state = "answered"

    def _answer(self, call: _Call, offer_text: str) -> sdp.Answer:
        plan = call.plan
        assert plan is not None
        answer = sdp.answer(
            sdp.parse(offer_text),
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=plan.codecs,
            prefer_ours=plan.prefer_ours,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=call.version + 1,
            user_agent=plan.user_agent,
        )
        if plan.require_srtp and answer.audio.local_crypto is None:
            raise sdp.SdpError(488, "SRTP required")
        call.version += 1  # (only once the answer exists: a refused offer changes nothing)
        return answer

    def _our_offer(self, call: _Call) -> str:
        plan = call.plan
        assert plan is not None
        call.version += 1
        in_use = call.codec_in_use
        call.offered_codecs = sorted(plan.codecs, key=lambda codec: codec is not in_use)
        return sdp.offer(
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=call.offered_codecs,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=call.version,
            user_agent=plan.user_agent,
        )

    def _take_answer(self, call: _Call, ack: SipMessage) -> None:
        codecs, call.offered_codecs = call.offered_codecs, None
        body = sipmsg.sdp_body(ack)
        if codecs is None or call.plan is None:
            return
        if body is None:
            log.warning("ACK without the SDP answer to our offer", call_id=call.call_id)
            return
        try:
            choice = sdp.accept_answer(sdp.parse(body), codecs, call.plan.direction)
        except sdp.SdpError as exc:
            log.warning("unusable SDP answer", call_id=call.call_id, reason=exc.reason)
            call.bye_after_ack = (488, exc.reason)
            return
        call.codec_in_use = choice.codec
        self._events.media(call.id, choice)

    # -- our requests (BYE) -----------------------------------------------------------------------

    def _send_bye(self, call: _Call, cause: tuple[int, str] | None) -> None:
        call.local_cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(10)
        host, port = self.local.get(call.peer.transport, next(iter(self.local.values())))
        host = self.public_address or host
        request = SipMessage(method="BYE", uri=call.remote_target)
        transport = call.peer.transport.upper()
        request.add("via", f"SIP/2.0/{transport} {host}:{port};branch={branch};rport")
        request.add("max-forwards", "70")
        request.add("from", f"<{call.local_uri}>;tag={call.local_tag}")
        request.add("to", f"<{call.remote_uri}>;tag={call.remote_tag}")
        request.add("call-id", call.call_id)
        request.add("cseq", f"{call.local_cseq} BYE")
        for route in call.route_set:
            request.add("route", route)
        if cause is not None:
            text = cause[1].replace('"', "'")
            request.add("reason", f'SIP;cause={cause[0]};text="{text}"')
        request.add("user-agent", self.user_agent)
        data = request.serialize()
        peer = call.peer  # in-dialog requests go back the way the call came (NAT, connections)
        self._send(data, peer)
        if peer.transport == "udp":
            self._client_retransmit(branch, data, peer, T1, 0.0)

    def _client_retransmit(self, branch: str, data: bytes, peer: Peer, interval: float, waited: float) -> None:
        def again() -> None:
            if branch not in self._client_tx:
                return
            if waited + interval >= TIMEOUT:
                self._client_tx.pop(branch, None)
                return
            self._send(data, peer)
            self._client_retransmit(branch, data, peer, min(2 * interval, T2), waited + interval)

        timer = self._after(interval, again)
        self._client_tx[branch] = (data, peer, timer)

    def _response(self, msg: SipMessage) -> None:
        branch = msg.top_via.branch
        entry = self._client_tx.get(branch)
        if entry is not None and (msg.status >= 200 or branch in self._invites):
            del self._client_tx[branch]  # (a provisional answer to our INVITE stops its retransmission)
            self._cancel(entry[2])
        if branch in self._invites and msg.cseq[1] == "INVITE":
            self._invite_response(branch, msg)

    # -- dial-out: our INVITE (RFC 3261 13.2, 17.1.1) ---------------------------------------------

    def invite(self, target: str, peer: Peer, plan: MediaPlan, display_name: str = "") -> int:
        """Calls `target` (a SIP URI) at `peer` with our offer; the call's events come as for
        incoming calls: media (from the answer), confirmed, disconnected (with the failure status)."""
        host, port = self.local.get(peer.transport, next(iter(self.local.values())))
        host = self.public_address or host
        local_uri = f"sip:gateway@{host}:{port}"
        call_id = f"{secrets.token_hex(12)}@{host}"
        request = SipMessage(method="INVITE", uri=target)
        call = _Call(
            id=next(self._call_ids),
            invite=request,
            peer=peer,
            local_tag=secrets.token_hex(8),
            remote_tag="",
            call_id=call_id,
            local_uri=local_uri,
            remote_uri=target,
            remote_target=target,
            route_set=[],
            remote_cseq=0,
            invite_tx=_ServerTransaction(("", "INVITE"), peer),
            state="calling",
            plan=plan,
        )
        call.local_cseq = 1
        body = self._our_offer(call)
        branch = "z9hG4bK" + secrets.token_hex(10)
        name = display_name.replace('"', "'")
        request.add("via", f"SIP/2.0/{peer.transport.upper()} {host}:{port};branch={branch};rport")
        request.add("max-forwards", "70")
        request.add("from", (f'"{name}" ' if name else "") + f"<{local_uri}>;tag={call.local_tag}")
        request.add("to", f"<{target}>")
        request.add("call-id", call_id)
        request.add("cseq", "1 INVITE")
        request.add("contact", self._contact(peer))
        request.add("allow", ALLOW)
        request.add("user-agent", self.user_agent)
        request.add("content-type", "application/sdp")
        request.body = body.encode()
        data = request.serialize()
        self.calls[call.id] = call
        self._invites[branch] = (call.id, request, peer)
        self.counters["calls"] += 1
        self._send(data, peer)
        if peer.transport == "udp":
            self._client_retransmit(branch, data, peer, T1, 0.0)
        call.timers.append(self._after(TIMEOUT, lambda: self._no_answer(call)))
        return call.id

    def _no_answer(self, call: _Call) -> None:
        if call.state == "calling":
            log.info("dial-out: no answer", call_id=call.call_id)
            self._cancel_invite(call)
            self._terminate(call, 408, "No answer")

    def _invite_response(self, branch: str, msg: SipMessage) -> None:
        number, request, peer = self._invites[branch]
        call = self.calls.get(number)
        to = NameAddr.parse(msg.get("to") or "")
        if msg.status < 200:
            return
        if msg.status >= 300:
            self._send(self._build_ack(request, msg, branch), peer)
            self._after(TIMEOUT, lambda: self._invites.pop(branch, None))
            if call is not None and call.state == "calling":
                self._terminate(call, msg.status, msg.reason or "Refused")
            return
        if call is None or call.state not in ("calling", "confirmed"):
            # Answered after we gave up (CANCEL lost the race): acknowledge, then end it.
            ghost = self._answered_dialog(number, request, msg, peer)
            self._send(self._build_ack(request, msg, None, ghost), ghost.peer)
            self._send_bye(ghost, None)
            return
        if call.state == "calling":
            call.remote_tag = to.tag
            contact = msg.all("contact")
            if contact:
                call.remote_target = NameAddr.parse(contact[0]).uri
            call.route_set = list(reversed(msg.all("record-route")))
            self._dialogs[(call.call_id, call.local_tag, call.remote_tag)] = call.id
            call.state = "confirmed"
            call.confirmed_once = True
            self._send(self._build_ack(request, msg, None, call), call.peer)
            self._take_answer(call, msg)
            self._events.confirmed(call.id)
            if call.bye_after_ack is not None:
                self._send_bye(call, call.bye_after_ack)
                self._terminate(call, 200, "Local BYE")
        else:  # a retransmitted 2xx: our ACK was lost
            self._send(self._build_ack(request, msg, None, call), call.peer)

    def _answered_dialog(self, number: int, request: SipMessage, msg: SipMessage, peer: Peer) -> _Call:
        """A throw-away dialog for a 2xx that came after we gave up, enough to ACK and BYE it."""
        contact = msg.all("contact")
        return _Call(
            id=number,
            invite=request,
            peer=peer,
            local_tag=NameAddr.parse(request.get("from") or "").tag,
            remote_tag=NameAddr.parse(msg.get("to") or "").tag,
            call_id=request.call_id,
            local_uri=NameAddr.parse(request.get("from") or "").uri,
            remote_uri=request.uri,
            remote_target=NameAddr.parse(contact[0]).uri if contact else request.uri,
            route_set=list(reversed(msg.all("record-route"))),
            remote_cseq=0,
            invite_tx=_ServerTransaction(("", "INVITE"), peer),
            state="confirmed",
            local_cseq=1,
        )

    def _build_ack(self, request: SipMessage, response: SipMessage, branch: str | None, call: _Call | None = None) -> bytes:
        """The ACK of a failure (same branch, hop by hop) or of a 2xx (new branch, to the dialog's target)."""
        ack = SipMessage(method="ACK", uri=request.uri if call is None else call.remote_target)
        via = request.all("via")[0]
        if branch is None:
            via = via.split(";branch=")[0] + f";branch=z9hG4bK{secrets.token_hex(10)};rport"
        ack.add("via", via)
        ack.add("max-forwards", "70")
        ack.add("from", request.get("from") or "")
        ack.add("to", response.get("to") or "")
        ack.add("call-id", request.call_id)
        ack.add("cseq", f"{request.cseq[0]} ACK")
        for route in call.route_set if call is not None else []:
            ack.add("route", route)
        return ack.serialize()

    def _cancel_invite(self, call: _Call) -> None:
        """CANCEL our INVITE (RFC 3261 9.1): same branch, Request-URI, Call-ID, From, To and CSeq number."""
        for branch, (number, request, _peer) in self._invites.items():
            if number != call.id:
                continue
            cancel = SipMessage(method="CANCEL", uri=request.uri)
            cancel.add("via", request.all("via")[0])
            cancel.add("max-forwards", "70")
            cancel.add("from", request.get("from") or "")
            cancel.add("to", request.get("to") or "")
            cancel.add("call-id", request.call_id)
            cancel.add("cseq", f"{request.cseq[0]} CANCEL")
            data = cancel.serialize()
            self._send(data, call.peer)
            entry = self._client_tx.pop(branch, None)
            if entry is not None:
                self._cancel(entry[2])
            self._after(TIMEOUT, lambda branch=branch: self._invites.pop(branch, None))  # type: ignore[misc]
            return

    # -- endings ----------------------------------------------------------------------------------

    def _terminate(self, call: _Call, status: int, reason: str) -> None:
        if call.state == "terminated":
            return
        call.state = "terminated"
        for timer in call.timers:
            self._cancel(timer)
        self.calls.pop(call.id, None)
        # The dialog lingers a little so retransmissions and late requests are still recognised.
        key = (call.call_id, call.local_tag, call.remote_tag)
        self._after(TIMEOUT, lambda: self._dialogs.pop(key, None))
        self._events.disconnected(call.id, status, reason)

    def close(self) -> None:
        """Ends every call (BYE, or 503 before an answer)."""
        for call in list(self.calls.values()):
            if call.state == "incoming":
                self._final_failure(call, 503, "Service Shutting Down")
            else:
                self._send_bye(call, (503, "Service shutting down"))
                self._terminate(call, 503, "Shutting down")


def _stamp_via(via: str, peer: Peer) -> str:
    """The top Via of a response: where the request really came from (received, rport)."""
    try:
        parsed = sipmsg.Via.parse(via)
    except SipMessageError:
        return via
    params = []
    has_rport = "rport" in parsed.params
    for part in via.split(";")[1:]:
        key = part.strip().split("=")[0].lower()
        if key in ("received", "rport"):
            continue
        params.append(part.strip())
    out = via.split(";")[0]
    if params:
        out += ";" + ";".join(params)
    if has_rport or parsed.host != peer.address[0]:
        out += f";received={peer.address[0]}"
    if has_rport:
        out += f";rport={peer.address[1]}"
    return out


def _worth_logging(count: int) -> bool:
    return count <= 20 or count % 1000 == 0


def _tags(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def _codecs_in(body: str, plan: MediaPlan | None) -> list[AudioCodec]:
    """The codecs of our own SDP answer body, in its order (to know the codec in use)."""
    if plan is None:
        return []
    try:
        session = sdp.parse(body)
    except sdp.SdpError:
        return []
    names = {sdp.RTP_NAMES[c][0].lower(): c for c in plan.codecs}
    found: list[AudioCodec] = []
    for m in session.media:
        if m.kind == "audio" and m.port:
            for value in m.values("rtpmap"):
                name = value.partition(" ")[2].split("/")[0].lower()
                if name in names:
                    found.append(names[name])
    return found
