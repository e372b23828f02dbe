"""The gateway's SIP user agent core, sans-IO, in the shape of aioquic's `QuicConnection` and h11
(RFC 3261 8.2, 12, 13, 17; RFC 3311 UPDATE, RFC 6086 INFO, RFC 3326 Reason, RFC 6026; RFC 3262
100rel/PRACK and RFC 4028 session timers, which carriers require):

    ua.receive(data, peer, now)        # bytes in, with where they came from and the time
    ua.answer(call, sdp) ...           # commands: answer, reject, hang_up, accept_offer,
                                       #   refuse_offer, invite, send_info
    ua.datagrams_to_send(now)          # [(bytes, Peer)] to write out
    ua.get_timer() / ua.handle_timer(now)
    ua.next_event()                    # IncomingCall, OfferReceived, AnswerReceived, ... or None

It answers calls (room systems and phones dial in) and places them (dial-out): INVITE server
transactions with 100 Trying and retransmitted final answers, 2xx retransmitted until the ACK,
CANCEL, re-INVITE and UPDATE offers, late offers (the answer then read from the ACK), INFO digits
and keyframe requests (RFC 5168), OPTIONS, BYE either way (ours with a Reason header, retransmitted
until answered), 481 for requests outside any dialog, 420 for extensions we do not support, 405/501
for methods we do not take, and a 400 with the reason for malformed requests.

Carriers' extensions, both ways: a caller that requires 100rel gets a reliable 180 (RSeq, sent again
until its PRACK; our answer follows the PRACK); a reliable 18x to our INVITE is PRACKed in its early
dialog and its SDP taken as the answer. Session timers are negotiated on every INVITE and UPDATE
(422 below our Min-SE; the refresher named in the 2xx); as refresher we send an UPDATE half-way (a
re-INVITE of our last SDP where the far end takes no UPDATE), and a session nobody refreshed ends
with a BYE (Reason 408) at interval - min(32, interval/3).

SDP bodies pass through unread: the layer above (the SIP call, with `sip/negotiation.py`) reads
the offers the events carry and gives its answers back with `answer()` / `accept_offer()`.

Timers are named as in RFC 3261 17 (`Timer`), kept per transaction and per call; transaction and
call states are enums. Server transactions live in one table in the order they began, expiring
from the front (timers I and J are that expiry, so a flood of distinct branches costs bounded
memory and no timer per transaction).

Why our own core and not pjsua2: the pjsua2-python wheel is built with PJSUA_MAX_CALLS 4 (a fifth
concurrent call is answered 486 by pjsua itself), leaks a conference slot per call (no calls
after about 253), and refuses any answer with a codec it lacks (Opus). A conference bridge needs
hundreds of calls per process; the SIP a bridge needs as a UA is a small, testable core.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gateway.sip import message as sipmsg
from gateway.sip import session_timer
from gateway.sip.digest import DigestClient, DigestError, choose, parse_challenge
from gateway.sip.message import NameAddr, SipMessage, SipMessageError
from gateway.sip.registrar import Registrar
from gateway.sip.session_timer import SessionTimer, TooBrief

log = structlog.get_logger(__name__)

Address = tuple[str, int]
T1, T2, T4 = 0.5, 4.0, 5.0
TIMEOUT = 64 * T1  # timers B, F, H (and the life of a server transaction): 32 s
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK"
SUPPORTED = "100rel, timer"  # RFC 3262 reliable provisional answers, RFC 4028 session timers
_KNOWN_EXTENSIONS = {"100rel", "timer"}
# Methods of SIP extensions we know and do not take (405); anything else is unknown to us (501).
_OTHER_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
MAX_INFO_DIGITS = 4  # digits one SIP INFO may carry (phones send one per INFO)


class Timer(enum.Enum):
    """RFC 3261 17's timers (and RFC 6026's M), by what they do here."""

    A = "A"  # INVITE client: retransmit our INVITE (UDP), T1 doubling up to T2
    B = "B"  # INVITE client: no final answer within 64*T1 (ringing included): give up, CANCEL
    D = "D"  # INVITE client: after a failure (or our CANCEL), ACK its retransmissions for 64*T1
    E = "E"  # non-INVITE client: retransmit our request (UDP), T1 doubling up to T2
    F = "F"  # non-INVITE client: no final answer within 64*T1
    G = "G"  # INVITE server: retransmit the final answer (UDP) until the ACK; the 2xx by the dialog
    H = "H"  # INVITE server: no ACK within 64*T1 (for a 2xx: the call ends with a BYE, 408)
    I = "I"  # noqa: E741  INVITE server: absorb ACK retransmissions (the transaction table's expiry)
    J = "J"  # non-INVITE server: absorb request retransmissions (the transaction table's expiry)
    K = "K"  # non-INVITE client: absorb response retransmissions (T4 over UDP)
    M = "M"  # INVITE client (RFC 6026): after the 2xx, ACK its retransmissions for 64*T1
    REL = "rel"  # RFC 3262 3: our reliable 18x again at T1, 2*T1 ... until its PRACK (64*T1: 5xx)
    REFRESH = "refresh"  # RFC 4028: we are the refresher: UPDATE (or re-INVITE) half-way through
    EXPIRY = "expiry"  # RFC 4028 10: no refresh came in time: BYE


class ServerTransactionState(enum.Enum):
    TRYING = "trying"  # non-INVITE, nothing answered yet
    PROCEEDING = "proceeding"  # a provisional answer sent (INVITE: 100 Trying)
    ACCEPTED = "accepted"  # INVITE answered 2xx (RFC 6026): retransmissions get it again
    COMPLETED = "completed"  # a final answer sent (INVITE: a failure, retransmitted until the ACK)
    CONFIRMED = "confirmed"  # INVITE: the ACK of the failure arrived
    TERMINATED = "terminated"


class ClientTransactionState(enum.Enum):
    CALLING = "calling"  # INVITE sent, nothing heard
    TRYING = "trying"  # non-INVITE sent, nothing heard
    PROCEEDING = "proceeding"  # a provisional answer heard
    ACCEPTED = "accepted"  # INVITE answered 2xx (RFC 6026)
    COMPLETED = "completed"  # a final answer heard
    TERMINATED = "terminated"


class CallState(enum.Enum):
    INCOMING = "incoming"  # INVITE received, not answered yet
    CALLING = "calling"  # our INVITE sent (dial-out), not answered yet
    ANSWERED = "answered"  # our 2xx to an INVITE (or re-INVITE) sent, its ACK not yet here
    CONFIRMED = "confirmed"  # the dialog is up
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and so where answers go: a UDP address or a stream connection."""

    transport: str  # udp, tcp, tls
    address: Address
    connection: int | None = None


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingCall:
    """A new INVITE: answer it (`answer`) or refuse it (`reject`)."""

    call: int
    sip_call_id: str
    user: str  # user part of the request URI: the alias dialled
    display_name: str
    from_user: str
    source: str  # the address the INVITE came from (ip), for lockouts and logs
    transport: str
    offer: str | None  # the SDP body, None for a late offer (`answer` then carries our offer)
    from_uri: str = ""  # the caller's URI (From): recognises a room system of the directory
    to_user: str = ""  # the called party as To, P-Called-Party-ID and Diversion name it (trunk calls)
    called_party: str = ""
    diverted_from: str = ""
    privacy: tuple[str, ...] = ()  # Privacy header values (RFC 3323): "id" withholds the number
    asserted_user: str = ""  # P-Asserted-Identity's user (RFC 3325): believed from trunks only
    authorization: str | None = None  # its digest answer, when it was challenged (never logged)


@dataclass(frozen=True)
class OfferReceived:
    """A re-INVITE or UPDATE in the dialog with an offer: `accept_offer` or `refuse_offer`."""

    call: int
    sdp: str
    method: str  # INVITE or UPDATE


@dataclass(frozen=True)
class OfferRequested:
    """A re-INVITE without a body: `accept_offer` with our offer; the answer comes in the ACK."""

    call: int


@dataclass(frozen=True)
class AnswerReceived:
    """The answer to an offer of ours: in the ACK (late offer) or in the 2xx to our INVITE."""

    call: int
    sdp: str


@dataclass(frozen=True)
class DigitReceived:
    call: int
    digit: str
    via: str  # sip-info


@dataclass(frozen=True)
class KeyframeRequested:
    """The remote asked for a full picture of the video we send (SIP INFO picture_fast_update):
    of the stream whose a=label is `stream_id`, or of the main video (None)."""

    call: int
    stream_id: str | None = None


@dataclass(frozen=True)
class CallConfirmed:
    """The dialog is up (the ACK of our 2xx, or the 2xx to our INVITE): media may flow."""

    call: int


@dataclass(frozen=True)
class CallEnded:
    call: int
    status: int  # 200 for a BYE either way, else the failure (487 cancelled, 408 no ACK ...)
    reason: str


@dataclass(frozen=True)
class ResponseReceived:
    """The final answer to a request of ours outside any call (`request`: REGISTER, OPTIONS);
    status 408 with `message` None when none came within 64*T1."""

    branch: str
    status: int
    reason: str
    message: SipMessage | None


Event = (
    IncomingCall
    | OfferReceived
    | OfferRequested
    | AnswerReceived
    | DigitReceived
    | KeyframeRequested
    | CallConfirmed
    | CallEnded
    | ResponseReceived
)


# -- transactions and calls -----------------------------------------------------------------------


@dataclass(eq=False)
class _Timed:
    timers: dict[Timer, int] = field(default_factory=dict, init=False)  # running timer -> its serial


@dataclass(eq=False)
class _ServerTransaction(_Timed):
    key: tuple[str, str]  # (branch, method)
    peer: Peer
    expires_at: float = 0.0
    last_response: bytes | None = None
    call: int | None = None  # for INVITE transactions
    final_status: int = 0
    acked: bool = False
    state: ServerTransactionState = ServerTransactionState.TRYING
    interval: float = T1  # of timer G

    def __post_init__(self) -> None:
        if self.key[1] == "INVITE":
            self.state = ServerTransactionState.PROCEEDING


@dataclass(eq=False)
class _ClientTransaction(_Timed):
    branch: str
    method: str
    request: SipMessage
    data: bytes
    peer: Peer
    call: int | None
    state: ClientTransactionState
    interval: float = T1  # of timer A or E
    waited: float = 0.0
    report: bool = False  # its final answer becomes a ResponseReceived (requests outside calls)
    dialog: _Call | None = None  # (in-dialog requests: the call, kept past its end for a challenge)
    refresh: bool = False  # our session refresh (RFC 4028): its answer sets the timer


@dataclass(eq=False)
class _Call(_Timed):
    id: int
    invite: SipMessage
    peer: Peer
    local_tag: str
    remote_tag: str
    call_id: str
    local_uri: str  # the To of the INVITE (we are the callee), the From of ours (the caller)
    remote_uri: str
    remote_target: str  # the other side's Contact
    route_set: list[str]
    remote_cseq: int
    invite_tx: _ServerTransaction
    state: CallState = CallState.INCOMING
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**16))
    offer_in_invite: bool = True  # (an INVITE without SDP: our 2xx carries the offer)
    awaiting_answer: bool = False  # our last 2xx (or our INVITE) carried an offer: the answer is due
    pending_offer: tuple[SipMessage, Peer, _ServerTransaction] | None = None  # a re-offer we must answer
    pending_2xx: bytes | None = None
    pending_2xx_cseq: int = 0
    interval: float = T1  # of timer G (2xx retransmission)
    bye_after_ack: tuple[int, str] | None = None
    confirmed_once: bool = False
    credentials: DigestClient | None = None  # (dial-out over a trunk: answers its 401/407)
    auth_answered: tuple[str, str] | None = None  # (realm, nonce) our last INVITE answered
    auth_tries: int = 0
    local_sdp: str = ""  # the last SDP we sent (a re-INVITE refresh offers it again, unchanged)
    # RFC 3262, as callee: our reliable 18x waiting for its PRACK (and the answer that waits for it)
    local_rseq: int = 0
    unacked_18x: bytes | None = None
    rel_interval: float = T1
    rel_waited: float = 0.0
    answer_after_prack: tuple[str | None] | None = None
    # RFC 3262, as caller: the RSeq of the last in-order reliable 18x we took
    remote_rseq: int = 0
    # RFC 4028: the session timer in force, whether the far end takes UPDATE, our refresh in flight
    session: SessionTimer | None = None
    peer_allows_update: bool = False
    refreshing: bool = False
    se_asked: int = 0  # (dial-out: the Session-Expires our INVITE asks for; raised by a 422)


class UserAgent:
    def __init__(
        self,
        *,
        local: dict[str, Address],
        public_address: str | None = None,
        user_agent: str = "meeting-gateway",
        max_calls: int = 1000,
        max_transactions: int = 10_000,
        session_expires_s: int = 1800,
        min_se_s: int = session_timer.MIN_SE,
    ) -> None:
        self.local = local
        self.session_expires_s = max(session_expires_s, min_se_s)  # asked for in our INVITEs (RFC 4028)
        self.min_se_s = max(min_se_s, session_timer.MIN_SE)  # shorter asks get 422  # transport -> (host, port) we listen on
        self.public_address = public_address
        self.user_agent = user_agent
        self.max_calls = max_calls
        # While new calls are refused (overloaded, draining): their Retry-After in seconds, so that
        # an OPTIONS probe (a front's dispatcher) gets 503 too and sends the calls elsewhere.
        self.refusing_calls: Callable[[], int | None] = lambda: None
        self.calls: dict[int, _Call] = {}
        self._dialogs: dict[tuple[str, str, str], int] = {}  # (Call-ID, our tag, their tag) -> call
        # Server transactions in the order they began, so the oldest expire (and, past
        # max_transactions, are dropped) from the front: a flood of distinct branches costs bounded
        # memory and no timer per transaction.
        self._server_tx: OrderedDict[tuple[str, str], _ServerTransaction] = OrderedDict()
        self.max_transactions = max_transactions
        self._client_tx: dict[str, _ClientTransaction] = {}  # our requests, by branch
        self._outbox: list[tuple[bytes, Peer]] = []
        self._events: deque[Event] = deque()
        # Timers: a heap of (deadline, serial, owner, name); an entry counts while its owner still
        # holds that serial for that name (stopping a timer is forgetting its serial).
        self._timers: list[tuple[float, int, _Timed, Timer]] = []
        self._unplaced: list[tuple[float, int, _Timed, Timer]] = []  # started by a command: no time yet
        self._serials = itertools.count(1)
        self._now = 0.0
        self._timed = False  # inside receive/handle_timer: the time is known
        self._call_ids = itertools.count(1)
        self.counters = {"requests": 0, "malformed": 0, "calls": 0, "refused_busy": 0, "transactions_dropped": 0}
        self.registrar: Registrar | None = None  # (the directory's room systems register here)
        # One worker of several sharing the SIP port (gateway/workers.py): our branches and tags
        # carry its index, and an answer or an in-dialog request over UDP that the kernel gave this
        # worker but names another's is handed to that one (`hand_off(index, data, peer)`, False:
        # no such worker now, so it is handled here)
        self.worker: int | None = None
        self.hand_off: Callable[[int, bytes, Peer], bool] | None = None
        # An outbound proxy in front of a destination (a trunk's): (transport, address) -> its Route
        # value; requests outside dialogs sent there carry it, a loose route (RFC 3261 8.1.2).
        self.preloaded_routes: dict[tuple[str, Address], str] = {}

    # -- what the adapter asks ------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Peer]]:
        """What to write out, in order (and the timers commands started are placed at `now`)."""
        self._advance(now)
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When `handle_timer` is next due (None: no timer runs)."""
        heap = self._timers
        while heap and heap[0][2].timers.get(heap[0][3]) != heap[0][1]:
            heapq.heappop(heap)
        if self._unplaced:
            return self._now
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> None:
        self._advance(now)
        self._timed = True
        try:
            heap = self._timers
            while heap and heap[0][0] <= now:
                _, serial, owner, name = heapq.heappop(heap)
                if owner.timers.get(name) != serial:
                    continue  # stopped
                del owner.timers[name]
                try:
                    self._expired(owner, name)
                except Exception:
                    log.exception("SIP timer failed", timer=name.value)
        finally:
            self._timed = False

    # -- state, for tests and the adapter ---------------------------------------------------------

    def call_state(self, call: int) -> CallState:
        found = self.calls.get(call)
        return found.state if found is not None else CallState.TERMINATED

    def server_transaction_state(self, branch: str, method: str) -> ServerTransactionState:
        tx = self._server_tx.get((branch, method))
        if tx is None or tx.expires_at <= self._now:
            return ServerTransactionState.TERMINATED
        return tx.state

    def client_transaction_state(self, branch: str) -> ClientTransactionState:
        tx = self._client_tx.get(branch)
        return tx.state if tx is not None else ClientTransactionState.TERMINATED

    # -- timers -----------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        self._now = now
        for delay, serial, owner, name in self._unplaced:
            heapq.heappush(self._timers, (now + delay, serial, owner, name))
        self._unplaced.clear()

    def _start(self, owner: _Timed, name: Timer, delay: float) -> None:
        serial = next(self._serials)
        owner.timers[name] = serial
        if self._timed:
            heapq.heappush(self._timers, (self._now + delay, serial, owner, name))
        else:  # a command: placed at the time of the next call that brings one
            self._unplaced.append((delay, serial, owner, name))

    @staticmethod
    def _stop(owner: _Timed, *names: Timer) -> None:
        for name in names:
            owner.timers.pop(name, None)

    def _expired(self, owner: _Timed, name: Timer) -> None:
        if isinstance(owner, _Call):
            if name is Timer.G:
                self._retransmit_2xx(owner)
            elif name is Timer.H:
                self._no_ack(owner)
            elif name is Timer.REL:
                self._retransmit_reliable(owner)
            elif name is Timer.REFRESH:
                self._refresh(owner)
            elif name is Timer.EXPIRY:
                self._session_expired(owner)
        elif isinstance(owner, _ServerTransaction):
            if name is Timer.G:
                self._retransmit_failure(owner)
            elif name is Timer.H:
                self._stop(owner, Timer.G)
                owner.state = ServerTransactionState.TERMINATED
        elif isinstance(owner, _ClientTransaction):
            if name in (Timer.A, Timer.E):
                self._retransmit_request(owner, name)
            elif name is Timer.B:
                self._no_answer(owner)
                if owner.refresh and owner.dialog is not None:
                    self._refresh_failed(owner.dialog, 408, "Request Timeout")
            else:  # D, F, K, M: the transaction ends
                if name is Timer.F and owner.report:
                    self._events.append(ResponseReceived(owner.branch, 408, "Request Timeout", None))
                if name is Timer.F and owner.refresh and owner.dialog is not None:
                    self._refresh_failed(owner.dialog, 408, "Request Timeout")
                self._stop(owner, *Timer)
                owner.state = ClientTransactionState.TERMINATED
                if self._client_tx.get(owner.branch) is owner:
                    del self._client_tx[owner.branch]

    def _remember(self, tx: _ServerTransaction) -> None:
        """Keeps a server transaction for 64*T1 (retransmissions are answered from it)."""
        now = self._now
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

    def _queue(self, data: bytes, peer: Peer) -> None:
        self._outbox.append((data, peer))

    # -- input ------------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """One datagram or one framed stream message from `peer`, at `now`."""
        self._advance(now)
        self._timed = True
        try:
            self._receive(data, peer)
        finally:
            self._timed = False

    def _new_branch(self) -> str:
        return f"z9hG4bK{'' if self.worker is None else f'w{self.worker}x'}{secrets.token_hex(10)}"

    def _new_tag(self) -> str:
        return f"{'' if self.worker is None else f'w{self.worker}x'}{secrets.token_hex(8)}"

    def _owner(self, msg: SipMessage) -> int | None:
        """The worker whose branch (an answer) or tag (a request in a dialog) the message names."""
        if msg.is_request:
            found = _WORKER_TAG.match(NameAddr.parse(msg.get("to") or "").tag or "")
        else:
            found = _WORKER_BRANCH.match(msg.top_via.branch)
        return int(found.group(1)) if found else None

    def _receive(self, data: bytes, peer: Peer) -> None:
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
        if self.hand_off is not None and peer.transport == "udp":
            try:
                owner = self._owner(msg)
            except SipMessageError:
                owner = None  # (handled here, and refused here)
            if owner is not None and owner != self.worker and self.hand_off(owner, data, peer):
                self.counters["handed_off"] = self.counters.get("handed_off", 0) + 1
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
        self._queue(answer, peer)

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
                self._queue(tx.last_response, peer)
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
            retry_after = self.refusing_calls()
            if retry_after is not None:
                self._reply(msg, peer, 503, "Service Unavailable", tx, extra=[("retry-after", str(retry_after))])
            else:
                self._reply(msg, peer, 200, "OK", tx, extra=self._capabilities())
        elif method == "REGISTER" and self.registrar is not None:
            answer = self.registrar.handle(msg, peer.transport, peer.address, self._now, peer.connection)
            self._reply(msg, peer, answer.status, answer.reason, tx, extra=answer.headers)
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
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
        return [
            ("allow", ALLOW),
            ("accept", "application/sdp, application/dtmf-relay, application/dtmf"),
            ("supported", SUPPORTED),
        ]

    # -- new calls --------------------------------------------------------------------------------

    def _new_call(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction) -> None:
        invite = sipmsg.parse_invite(msg)  # SipMessageError -> 400
        if len(self.calls) >= self.max_calls:
            self.counters["refused_busy"] += 1
            self._reply(msg, peer, 503, "Too Many Calls", tx, extra=[("retry-after", "30")])
            return
        if self._too_brief(msg, peer, tx):
            return
        contact = msg.all("contact")
        call = _Call(
            id=next(self._call_ids),
            invite=msg,
            peer=peer,
            local_tag=self._new_tag(),
            remote_tag=NameAddr.parse(msg.get("from") or "").tag,
            call_id=msg.call_id,
            local_uri=NameAddr.parse(msg.get("to") or "").uri,
            remote_uri=NameAddr.parse(msg.get("from") or "").uri,
            remote_target=NameAddr.parse(contact[0]).uri if contact else NameAddr.parse(msg.get("from") or "").uri,
            route_set=msg.all("record-route"),
            remote_cseq=msg.cseq[0],
            invite_tx=tx,
            offer_in_invite=invite.sdp is not None,
        )
        tx.call = call.id
        self.calls[call.id] = call
        self._dialogs[(call.call_id, call.local_tag, call.remote_tag)] = call.id
        self.counters["calls"] += 1
        self._reply(msg, peer, 100, "Trying", tx)
        if "100rel" in _tags(msg.get("require")):
            # The caller wants its provisional answers reliable (carriers do): a 180 with RSeq,
            # until its PRACK (RFC 3262 3); our answer waits for that PRACK.
            self._send_reliable_18x(call, 180, "Ringing")
        self._events.append(
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
                to_user=invite.to_user,
                called_party=invite.called_party,
                diverted_from=invite.diverted_from,
                privacy=invite.privacy,
                asserted_user=invite.asserted_user,
                authorization=msg.get("authorization"),
            )
        )

    # -- commands ---------------------------------------------------------------------------------

    def answer(self, call_id: int, sdp: str | None) -> None:
        """Answers a new call 200 with `sdp`: our answer to its offer, or our offer when the INVITE
        had none (the answer then comes in the ACK, as an AnswerReceived)."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.INCOMING or call.answer_after_prack is not None:
            return
        if call.unacked_18x is not None:
            call.answer_after_prack = (sdp,)  # (RFC 3262: our 2xx follows the PRACK of our 18x)
            return
        self._answer_now(call, sdp)

    def _answer_now(self, call: _Call, sdp: str | None) -> None:
        call.awaiting_answer = not call.offer_in_invite and sdp is not None
        call.state = CallState.ANSWERED
        if sdp is not None:
            call.local_sdp = sdp
        self._send_2xx(call, call.invite, sdp)
        call.invite_tx.final_status = 200

    def reject(
        self,
        call_id: int,
        status: int,
        reason: str | None = None,
        retry_after_s: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Refuses a new call with a 3xx-6xx (480 when `status` is none), Retry-After when given,
        and `headers` (a 401's WWW-Authenticate)."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.INCOMING:
            return
        code = status if status >= 300 else 480
        extra = [("retry-after", str(retry_after_s))] if retry_after_s is not None else []
        self._final_failure(call, code, reason or "Temporarily Unavailable", [*extra, *(headers or [])])

    def hang_up(self, call_id: int, cause: tuple[int, str] | None = None) -> None:
        """Ends a call: a BYE with a Reason header from `cause` (once the ACK is in, RFC 3261 15),
        a CANCEL for our unanswered INVITE, a 480 for a call not answered yet."""
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.state is CallState.INCOMING:
            self._final_failure(call, 480, "Temporarily Unavailable")
        elif call.state is CallState.CALLING:  # our dial-out, not answered yet
            self._cancel_invite(call)
            self._terminate(call, 487, "Cancelled")
        elif call.state is CallState.ANSWERED:  # no ACK yet: the BYE waits for it (RFC 3261 15)
            call.bye_after_ack = cause or (200, "")
        elif call.state is CallState.CONFIRMED:
            self._send_request(call, "BYE", self._reason(cause))
            self._terminate(call, 200, "Local BYE")

    def accept_offer(self, call_id: int, sdp: str | None) -> None:
        """Answers the pending re-INVITE or UPDATE 200 with `sdp` (our answer, or our offer for
        an OfferRequested; None: a refresh without SDP)."""
        call = self.calls.get(call_id)
        if call is None or call.pending_offer is None:
            return
        msg, _peer, _tx = call.pending_offer
        call.pending_offer = None
        if sdp is not None:
            call.local_sdp = sdp
        self._send_2xx(call, msg, sdp)
        if msg.method == "INVITE":
            call.awaiting_answer = sipmsg.sdp_body(msg) is None and sdp is not None
            call.state = CallState.ANSWERED

    def refuse_offer(self, call_id: int, status: int = 488, reason: str = "Not Acceptable Here") -> None:
        """Refuses the pending re-INVITE or UPDATE (488: the session goes on unchanged)."""
        call = self.calls.get(call_id)
        if call is None or call.pending_offer is None:
            return
        msg, peer, tx = call.pending_offer
        call.pending_offer = None
        self._reply(msg, peer, status, reason, tx, to_tag=call.local_tag)

    def send_info(self, call_id: int, body: str, content_type: str) -> None:
        """An INFO in the dialog (RFC 6086), e.g. application/media_control+xml for a keyframe."""
        call = self.calls.get(call_id)
        if call is not None and call.state is CallState.CONFIRMED:
            self._send_request(call, "INFO", [("content-type", content_type)], body)

    def close(self) -> None:
        """Ends every call (BYE, CANCEL, or 503 before an answer)."""
        for call in list(self.calls.values()):
            if call.state is CallState.INCOMING:
                self._final_failure(call, 503, "Service Shutting Down")
            elif call.state is CallState.CALLING:
                self._cancel_invite(call)
                self._terminate(call, 503, "Shutting down")
            else:
                self._send_request(call, "BYE", self._reason((503, "Service shutting down")))
                self._terminate(call, 503, "Shutting down")

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
        tag = to_tag or (self._new_tag() if status >= 200 else None)
        data = self._build_response(request, status, reason, tag, extra, peer).serialize()
        if tx is not None:
            tx.last_response = data
            invite = request.method == "INVITE"
            if status < 200:
                tx.state = ServerTransactionState.PROCEEDING
            elif status < 300:
                tx.state = ServerTransactionState.ACCEPTED if invite else ServerTransactionState.COMPLETED
            elif not invite:
                tx.state = ServerTransactionState.COMPLETED
            elif tx.final_status == 0:
                # Every failure answer to an INVITE is retransmitted over UDP until its ACK (17.2.1).
                tx.final_status = status
                tx.state = ServerTransactionState.COMPLETED
                if peer.transport == "udp":
                    tx.interval = T1
                    self._start(tx, Timer.G, T1)
                    self._start(tx, Timer.H, TIMEOUT)
        self._queue(data, peer)

    def _final_failure(
        self, call: _Call, status: int, reason: str, extra: list[tuple[str, str]] | None = None
    ) -> None:
        """A 3xx-6xx to the INVITE, retransmitted over UDP until the ACK (timers G, H)."""
        self._reply(call.invite, call.peer, status, reason, call.invite_tx, extra=extra, to_tag=call.local_tag)
        self._terminate(call, status, reason)

    def _retransmit_failure(self, tx: _ServerTransaction) -> None:
        if tx.acked or tx.last_response is None:
            return
        self._queue(tx.last_response, tx.peer)
        tx.interval = min(2 * tx.interval, T2)
        self._start(tx, Timer.G, tx.interval)

    def _send_2xx(self, call: _Call, request: SipMessage, body: str | None) -> None:
        extra = [("contact", self._contact(call.peer)), ("allow", ALLOW), ("supported", SUPPORTED)]
        if request.method == "INVITE":
            extra += [("record-route", route) for route in request.all("record-route")]
        timed = request.method in ("INVITE", "UPDATE")
        if timed:
            # Each INVITE or UPDATE negotiates the session timer anew (RFC 4028 9; its bounds were
            # checked when it came: 422 for one too brief).
            negotiated = session_timer.as_uas(request, self.min_se_s)
            call.session = negotiated if isinstance(negotiated, SessionTimer) else None
            if call.session is not None:
                extra += session_timer.uas_headers(request, call.session)
            if request.get("allow") is not None:
                call.peer_allows_update = "update" in _tags(request.get("allow"))
        if body is not None:
            extra.append(("content-type", "application/sdp"))
        response = self._build_response(request, 200, "OK", call.local_tag, extra, call.peer)
        if body is not None:
            response.body = body.encode()
        data = response.serialize()
        tx = self._server_tx.get((request.top_via.branch, request.method))
        if tx is not None:
            tx.last_response = data  # a retransmitted request gets this again
            tx.state = ServerTransactionState.ACCEPTED if request.method == "INVITE" else ServerTransactionState.COMPLETED
        if request.method == "INVITE":
            # The 2xx to an INVITE is the core's to retransmit, until the ACK (RFC 3261 13.3.1.4).
            call.pending_2xx = data
            call.pending_2xx_cseq = request.cseq[0]
            self._queue(data, call.peer)
            if call.peer.transport == "udp":
                call.interval = T1
                self._start(call, Timer.G, T1)
            self._start(call, Timer.H, TIMEOUT)
        else:
            self._queue(data, call.peer)
        if timed:
            self._arm_session(call)

    def _retransmit_2xx(self, call: _Call) -> None:
        if call.pending_2xx is None or call.state is CallState.TERMINATED:
            return
        self._queue(call.pending_2xx, call.peer)
        call.interval = min(2 * call.interval, T2)
        self._start(call, Timer.G, call.interval)

    def _no_ack(self, call: _Call) -> None:
        """64*T1 without the ACK of our 2xx: the dialog is confirmed and ended (RFC 3261 13.3.1.4)."""
        if call.pending_2xx is None or call.state is CallState.TERMINATED:
            return
        log.warning("no ACK for our 200 OK; ending the call", call_id=call.call_id)
        call.pending_2xx = None
        self._stop(call, Timer.G)
        call.state = CallState.CONFIRMED
        self._send_request(call, "BYE", self._reason((408, "No ACK")))
        self._terminate(call, 408, "No ACK")

    # -- reliable provisional answers (RFC 3262), as the callee -------------------------------------

    def _send_reliable_18x(self, call: _Call, status: int, reason: str) -> None:
        """A 18x with Require: 100rel and RSeq (the first a random number, RFC 3262 3), sent again
        at T1, 2*T1 ... until its PRACK; it opens the early dialog (our To tag, Contact)."""
        call.local_rseq = call.local_rseq + 1 if call.local_rseq else 1 + secrets.randbelow(2**30)
        extra = [
            ("contact", self._contact(call.peer)),
            ("require", "100rel"),
            ("rseq", str(call.local_rseq)),
            ("allow", ALLOW),
            ("supported", SUPPORTED),
            *[("record-route", route) for route in call.invite.all("record-route")],
        ]
        data = self._build_response(call.invite, status, reason, call.local_tag, extra, call.peer).serialize()
        call.invite_tx.last_response = data  # (a retransmitted INVITE gets it again)
        call.unacked_18x = data
        call.rel_interval = T1
        call.rel_waited = 0.0
        self._queue(data, call.peer)
        self._start(call, Timer.REL, T1)

    def _retransmit_reliable(self, call: _Call) -> None:
        if call.unacked_18x is None or call.state is not CallState.INCOMING:
            return
        call.rel_waited += call.rel_interval
        if call.rel_waited >= TIMEOUT:
            # RFC 3262 3: no PRACK in 64*T1: the INVITE is refused with a 5xx
            log.info("no PRACK for our reliable provisional answer; call refused", call_id=call.call_id)
            call.unacked_18x = None
            call.answer_after_prack = None
            self._final_failure(call, 500, "No PRACK")
            return
        self._queue(call.unacked_18x, call.peer)
        call.rel_interval = min(2 * call.rel_interval, TIMEOUT - call.rel_waited)
        self._start(call, Timer.REL, call.rel_interval)

    def _prack(self, call: _Call, msg: SipMessage, peer: Peer, tx: _ServerTransaction, to_tag: str) -> None:
        """RFC 3262 3: a PRACK whose RAck names our reliable 18x gets 200 (and our answer, if it
        waited, goes out); any other gets 481."""
        rack = (msg.get("rack") or "").split()
        rseq = sipmsg.ascii_int(rack[0], 10) if len(rack) == 3 else None
        cseq = sipmsg.ascii_int(rack[1], 10) if len(rack) == 3 else None
        if (
            rseq is None
            or rseq != call.local_rseq
            or cseq != call.invite.cseq[0]
            or rack[2].upper() != "INVITE"
        ):
            self._reply(msg, peer, 481, "Call/Transaction Does Not Exist", tx, to_tag=to_tag)
            return
        self._reply(msg, peer, 200, "OK", tx, to_tag=to_tag)
        if call.unacked_18x is None:
            return  # (a PRACK for an 18x already acknowledged, or our answer already went out)
        call.unacked_18x = None
        self._stop(call, Timer.REL)
        if call.answer_after_prack is not None and call.state is CallState.INCOMING:
            (sdp,) = call.answer_after_prack
            call.answer_after_prack = None
            self._answer_now(call, sdp)

    # -- session timers (RFC 4028) ----------------------------------------------------------------

    def _too_brief(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction, to_tag: str | None = None) -> bool:
        """422 with our Min-SE for an INVITE or UPDATE asking for a shorter session interval."""
        found = session_timer.as_uas(msg, self.min_se_s)
        if not isinstance(found, TooBrief):
            return False
        extra = [("min-se", str(found.min_se)), ("supported", SUPPORTED)]
        self._reply(msg, peer, 422, "Session Interval Too Small", tx, extra=extra, to_tag=to_tag)
        return True

    def _arm_session(self, call: _Call) -> None:
        """(Re)starts the session timer in force: our refresh half-way, the expiry either way."""
        self._stop(call, Timer.REFRESH, Timer.EXPIRY)
        timer = call.session
        if timer is None or call.state is CallState.TERMINATED:
            return
        if timer.we_refresh:
            self._start(call, Timer.REFRESH, timer.refresh_after)
        self._start(call, Timer.EXPIRY, timer.expires_after)

    def _refresh(self, call: _Call) -> None:
        """Our session refresh: an UPDATE without a body where the far end takes UPDATE, else a
        re-INVITE offering our last SDP unchanged (RFC 4028 7.4, 9)."""
        timer = call.session
        if timer is None or call.state is CallState.TERMINATED:
            return
        if call.state is not CallState.CONFIRMED or call.refreshing or call.pending_offer is not None:
            self._start(call, Timer.REFRESH, 2.0)  # (an offer exchange is under way: after it)
            return
        call.refreshing = True
        headers = [("supported", SUPPORTED), *session_timer.uac_headers(timer.interval, True, self.min_se_s)]
        if call.peer_allows_update or not call.local_sdp:
            self._send_request(call, "UPDATE", [("contact", self._contact(call.peer)), *headers], refresh=True)
        else:
            extra = [("contact", self._contact(call.peer)), ("allow", ALLOW), *headers, ("content-type", "application/sdp")]
            self._send_request(call, "INVITE", extra, call.local_sdp, refresh=True)

    def _refresh_answered(self, call: _Call, msg: SipMessage) -> None:
        call.refreshing = False
        if call.state is CallState.TERMINATED:
            return
        status = msg.status
        if 200 <= status < 300:
            try:
                call.session = session_timer.as_uac(msg)
            except SipMessageError:
                pass  # (an unreadable Session-Expires in the answer: the timer stays as it was)
            if msg.get("allow") is not None:
                call.peer_allows_update = "update" in _tags(msg.get("allow"))
            self._arm_session(call)
        elif status == 422 and call.session is not None:
            asked = session_timer.min_se(msg)
            if asked > call.session.interval:
                call.session = SessionTimer(asked, we_refresh=True)
                self._start(call, Timer.REFRESH, 0.0)
        elif status in (408, 481):
            self._refresh_failed(call, status, msg.reason)
        elif status == 491:
            self._start(call, Timer.REFRESH, 2.1 + secrets.randbelow(190) / 100)  # (RFC 3261 14.1)
        elif status in (405, 501) and call.peer_allows_update:
            call.peer_allows_update = False  # (no UPDATE after all: a re-INVITE then)
            self._start(call, Timer.REFRESH, 0.0)
        # (any other failure: the session goes on until its expiry, unless a refresh comes)

    def _refresh_failed(self, call: _Call, status: int, reason: str) -> None:
        """RFC 4028 10 / RFC 3261 12.2.1.2: a refresh unanswered or answered 408/481 ends the call."""
        call.refreshing = False
        if call.state is not CallState.CONFIRMED:
            return
        log.info("session refresh failed; ending the call", call_id=call.call_id, status=status, reason=reason)
        self._send_request(call, "BYE", self._reason((408, "Session refresh failed")))
        self._terminate(call, 408, "Session refresh failed")

    def _session_expired(self, call: _Call) -> None:
        if call.state is not CallState.CONFIRMED:
            if call.state is CallState.ANSWERED:
                self._start(call, Timer.EXPIRY, 2.0)  # (an exchange under way: its ACK first)
            return
        interval = call.session.interval if call.session is not None else None
        log.info("session expired: no refresh came; ending the call", call_id=call.call_id, interval_s=interval)
        self._send_request(call, "BYE", self._reason((408, "Session expired")))
        self._terminate(call, 408, "Session expired")

    # -- ACK, CANCEL ------------------------------------------------------------------------------

    def _ack(self, msg: SipMessage) -> None:
        via_branch = msg.top_via.branch
        tx = self._server_tx.get((via_branch, "INVITE"))
        if tx is not None and tx.final_status >= 300:
            tx.acked = True  # the ACK of a failure answer: absorbed by the transaction
            tx.state = ServerTransactionState.CONFIRMED
            self._stop(tx, Timer.G, Timer.H)
            return
        to_tag = NameAddr.parse(msg.get("to") or "").tag
        call_number = self._dialogs.get((msg.call_id, to_tag, NameAddr.parse(msg.get("from") or "").tag))
        call = self.calls.get(call_number) if call_number is not None else None
        if call is None or call.pending_2xx is None or msg.cseq[0] != call.pending_2xx_cseq:
            return  # a retransmitted or stray ACK
        call.pending_2xx = None
        self._stop(call, Timer.G, Timer.H)
        self._take_answer(call, msg, "ACK")
        if call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            if not call.confirmed_once:
                call.confirmed_once = True
                self._events.append(CallConfirmed(call.id))
            if call.bye_after_ack is not None:
                cause = call.bye_after_ack
                self._send_request(call, "BYE", self._reason(cause if cause[0] != 200 else None))
                self._terminate(call, 200, "Local BYE")

    def _take_answer(self, call: _Call, msg: SipMessage, where: str) -> None:
        """The answer to our offer, when one is due, from `msg` (an ACK, a 2xx) as AnswerReceived."""
        if not call.awaiting_answer:
            return
        call.awaiting_answer = False
        body = sipmsg.sdp_body(msg)
        if body is None:
            log.warning(f"{where} without the SDP answer to our offer", call_id=call.call_id)
        else:
            self._events.append(AnswerReceived(call.id, body))

    def _cancel_request(self, msg: SipMessage, peer: Peer) -> None:
        tx = self._server_tx.get((msg.top_via.branch, "INVITE"))
        call = self.calls.get(tx.call) if tx is not None and tx.call is not None else None
        if tx is None:
            self._reply(msg, peer, 481, "Call/Transaction Does Not Exist")
            return
        cancel_tx = _ServerTransaction((msg.top_via.branch, "CANCEL"), peer)
        self._remember(cancel_tx)
        self._reply(msg, peer, 200, "OK", cancel_tx, to_tag=call.local_tag if call else None)
        if call is not None and call.state is CallState.INCOMING:
            log.info("call cancelled before the answer", call_id=call.call_id)
            self._final_failure(call, 487, "Request Terminated")

    # -- in-dialog requests -----------------------------------------------------------------------

    def _in_dialog(self, msg: SipMessage, peer: Peer, tx: _ServerTransaction, to_tag: str) -> None:
        from_tag = NameAddr.parse(msg.get("from") or "").tag
        number = self._dialogs.get((msg.call_id, to_tag, from_tag))
        call = self.calls.get(number) if number is not None else None
        if call is None or call.state is CallState.TERMINATED:
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
        elif method == "PRACK":
            self._prack(call, msg, peer, tx, to_tag)
        elif method == "INFO":
            digits = sipmsg.info_digits(msg)
            if digits is not None and len(digits) > MAX_INFO_DIGITS:
                # A key press is one digit; thousands in one INFO would be a PIN-guessing machine gun.
                log.info("SIP INFO with too many digits refused", call_id=call.call_id, digits=len(digits))
                self._reply(msg, peer, 400, "Bad Request (too many digits in one INFO)", tx, to_tag=to_tag)
                return
            self._reply(msg, peer, 200, "OK", tx, to_tag=to_tag)
            for digit in digits or "":
                self._events.append(DigitReceived(call.id, digit, "sip-info"))
            if digits is None and sipmsg.picture_fast_update(msg):
                self._events.append(KeyframeRequested(call.id, sipmsg.fast_update_stream(msg)))
        elif method == "OPTIONS":
            self._reply(msg, peer, 200, "OK", tx, extra=self._capabilities(), to_tag=to_tag)
        else:
            self._refuse_method(msg, peer, tx, to_tag)

    def _reoffer(self, call: _Call, msg: SipMessage, peer: Peer, tx: _ServerTransaction) -> None:
        """Hold, resume, codec change, session refresh: the offer goes up (OfferReceived), or the
        request for ours (OfferRequested); the answer comes back through accept_offer/refuse_offer."""
        if (
            call.state is not CallState.CONFIRMED
            or call.pending_2xx is not None
            or call.pending_offer is not None
            or call.refreshing
        ):
            # RFC 3261 14.2: an offer while ours is pending or the first is unconfirmed
            self._reply(msg, peer, 491, "Request Pending", tx, to_tag=call.local_tag)
            return
        if self._too_brief(msg, peer, tx, call.local_tag):
            return
        offer = sipmsg.sdp_body(msg)
        if offer is None and msg.method == "UPDATE":
            self._send_2xx(call, msg, None)  # a refresh without an offer
            return
        call.pending_offer = (msg, peer, tx)
        self._events.append(OfferRequested(call.id) if offer is None else OfferReceived(call.id, offer, msg.method))

    # -- our requests in a dialog (BYE, INFO) -----------------------------------------------------

    @staticmethod
    def _reason(cause: tuple[int, str] | None) -> list[tuple[str, str]]:
        if cause is None:
            return []
        text = cause[1].replace('"', "'")
        return [("reason", f'SIP;cause={cause[0]};text="{text}"')]

    def _via(self, peer: Peer, branch: str) -> str:
        host, port = self.local.get(peer.transport, next(iter(self.local.values())))
        host = self.public_address or host
        # over a connection, alias (RFC 5923): the far end may send its requests for our sent-by
        # (our Contact: a trunk's calls) over this very connection, the one that passes NAT and,
        # for TLS, the one a gateway without a TLS listener can be reached on
        alias = ";alias" if peer.transport != "udp" else ""
        return f"SIP/2.0/{peer.transport.upper()} {host}:{port};branch={branch};rport{alias}"

    def _preloaded_route(self, request: SipMessage, peer: Peer, headers: list[tuple[str, str]]) -> None:
        route = self.preloaded_routes.get((peer.transport, peer.address))
        if route is not None and not any(key.lower() == "route" for key, _ in headers):
            request.add("route", route)

    def _send_request(
        self, call: _Call, method: str, extra: list[tuple[str, str]], body: str = "", refresh: bool = False
    ) -> None:
        """A request in the dialog: a non-INVITE client transaction (timers E, F, K), or a re-INVITE
        (timers A, B; our session refresh)."""
        call.local_cseq += 1
        branch = self._new_branch()
        request = SipMessage(method=method, uri=call.remote_target)
        request.add("via", self._via(call.peer, branch))
        request.add("max-forwards", "70")
        request.add("from", f"<{call.local_uri}>;tag={call.local_tag}")
        request.add("to", f"<{call.remote_uri}>;tag={call.remote_tag}")
        request.add("call-id", call.call_id)
        request.add("cseq", f"{call.local_cseq} {method}")
        for route in call.route_set:
            request.add("route", route)
        for key, value in extra:
            request.add(key, value)
        request.add("user-agent", self.user_agent)
        if body:
            request.body = body.encode()
        self._send_in_dialog(call, branch, request, refresh)

    def _send_in_dialog(self, call: _Call, branch: str, request: SipMessage, refresh: bool) -> None:
        data = request.serialize()
        peer = call.peer  # in-dialog requests go back the way the call came (NAT, connections)
        self._queue(data, peer)
        invite = request.method == "INVITE"
        state = ClientTransactionState.CALLING if invite else ClientTransactionState.TRYING
        tx = _ClientTransaction(branch, request.method, request, data, peer, call.id, state, dialog=call, refresh=refresh)
        self._client_tx[branch] = tx
        if peer.transport == "udp":
            self._start(tx, Timer.A if invite else Timer.E, T1)
        self._start(tx, Timer.B if invite else Timer.F, TIMEOUT)

    def _retransmit_request(self, tx: _ClientTransaction, name: Timer) -> None:
        """Timers A and E: again at T1, 2*T1 ... capped at T2, for as long as 64*T1 allows."""
        if tx.waited + tx.interval >= TIMEOUT:
            return
        self._queue(tx.data, tx.peer)
        tx.waited += tx.interval
        tx.interval = min(2 * tx.interval, T2)
        self._start(tx, name, tx.interval)

    def _response(self, msg: SipMessage) -> None:
        branch = msg.top_via.branch
        tx = self._client_tx.get(branch)
        if tx is None:
            return
        if tx.method == "INVITE":
            if msg.cseq[1] == "INVITE":
                self._stop(tx, Timer.A)  # (a provisional answer to our INVITE stops its retransmission)
                if tx.dialog is not None:
                    self._reinvite_response(tx, tx.dialog, msg)
                else:
                    self._invite_response(tx, msg)
            return
        if msg.status < 200:
            if tx.state is ClientTransactionState.TRYING:
                tx.state = ClientTransactionState.PROCEEDING
            return
        if tx.state in (ClientTransactionState.TRYING, ClientTransactionState.PROCEEDING):
            tx.state = ClientTransactionState.COMPLETED
            if tx.report:
                self._events.append(ResponseReceived(branch, msg.status, msg.reason, msg))
            elif msg.status in (401, 407) and self._request_with_auth(tx, msg):
                pass
            elif tx.refresh and tx.dialog is not None:
                self._refresh_answered(tx.dialog, msg)
            self._stop(tx, Timer.E, Timer.F)
            if tx.peer.transport == "udp":
                self._start(tx, Timer.K, T4)
            else:
                tx.state = ClientTransactionState.TERMINATED
                del self._client_tx[branch]

    # -- requests outside calls (REGISTER, OPTIONS keep-alives) ------------------------------------

    def request(self, method: str, uri: str, peer: Peer, headers: list[tuple[str, str]], body: bytes = b"") -> str:
        """Sends a request outside any call (the caller gives From, To, Call-ID, CSeq and the rest;
        Via, Max-Forwards and User-Agent are ours) as a non-INVITE client transaction, retransmitted
        over UDP; its final answer comes as ResponseReceived with the branch returned here."""
        if method in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"{method} is not a request outside calls")
        branch = self._new_branch()
        request = SipMessage(method=method, uri=uri)
        request.add("via", self._via(peer, branch))
        request.add("max-forwards", "70")
        self._preloaded_route(request, peer, headers)
        for key, value in headers:
            request.add(key, value)
        request.add("user-agent", self.user_agent)
        request.body = body
        data = request.serialize()
        self._queue(data, peer)
        tx = _ClientTransaction(branch, method, request, data, peer, None, ClientTransactionState.TRYING, report=True)
        self._client_tx[branch] = tx
        if peer.transport == "udp":
            self._start(tx, Timer.E, T1)
        self._start(tx, Timer.F, TIMEOUT)
        return branch

    def transport_error(self, peer: Peer, reason: str, now: float) -> None:
        """What was sent to `peer` could not go out, or can get no answer (a connection refused, lost
        before it was up or closed with requests waiting on it, a TLS handshake that failed). RFC 3261 8.1.3.1 takes that as a 503: our requests to it that
        wait for an answer end now instead of after 64*T1, a request outside calls with a
        ResponseReceived 503 (message None, `reason` the transport's), a dial-out not answered yet
        with CallEnded 503."""
        self._advance(now)
        self._timed = True
        try:
            waiting = (ClientTransactionState.TRYING, ClientTransactionState.PROCEEDING, ClientTransactionState.CALLING)
            for tx in list(self._client_tx.values()):
                if (tx.peer.transport, tx.peer.address) != (peer.transport, peer.address) or tx.state not in waiting:
                    continue
                call = self.calls.get(tx.call) if tx.call is not None and tx.method == "INVITE" and tx.dialog is None else None
                if not tx.report and call is None:
                    continue  # (in-dialog requests: their timers end them)
                self._stop(tx, *Timer)
                tx.state = ClientTransactionState.TERMINATED
                del self._client_tx[tx.branch]
                if tx.report:
                    self._events.append(ResponseReceived(tx.branch, 503, reason, None))
                elif call is not None and call.state is CallState.CALLING:
                    log.info("dial-out: transport error", call_id=call.call_id, reason=reason)
                    self._terminate(call, 503, reason)
        finally:
            self._timed = False

    def local_address(self, peer: Peer) -> Address:
        """Our address toward `peer` as we write it in Via and Contact (public_address if set)."""
        host, port = self.local.get(peer.transport, next(iter(self.local.values())))
        return self.public_address or host, port

    # -- dial-out: our INVITE (RFC 3261 13.2, 17.1.1) ---------------------------------------------

    def invite(
        self,
        target: str,
        peer: Peer,
        sdp: str,
        display_name: str = "",
        credentials: DigestClient | None = None,
        from_uri: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> int:
        """Calls `target` (a SIP URI) at `peer` with our offer `sdp` (and `headers`, e.g. a trunk's
        P-Preferred-Identity); the call's events come as for
        incoming calls: AnswerReceived (the 2xx's SDP), CallConfirmed, CallEnded (with the failure
        status). With `credentials` (a trunk's), a 401/407 is answered by the INVITE again with
        digest (RFC 3261 22.2): the same Call-ID and From tag, the next CSeq. `from_uri`: who calls
        (a trunk's address of record: carriers take calls only from their numbers); default: us."""
        host, port = self.local.get(peer.transport, next(iter(self.local.values())))
        host = self.public_address or host
        local_uri = from_uri or f"sip:gateway@{host}:{port}"
        call_id = f"{secrets.token_hex(12)}@{host}"
        request = SipMessage(method="INVITE", uri=target)
        call = _Call(
            id=next(self._call_ids),
            invite=request,
            peer=peer,
            local_tag=self._new_tag(),
            remote_tag="",
            call_id=call_id,
            local_uri=local_uri,
            remote_uri=target,
            remote_target=target,
            route_set=[],
            remote_cseq=0,
            invite_tx=_ServerTransaction(("", "INVITE"), peer),
            state=CallState.CALLING,
            local_cseq=1,
            awaiting_answer=True,
            credentials=credentials,
            local_sdp=sdp,
            se_asked=self.session_expires_s,
        )
        branch = self._new_branch()
        name = display_name.replace('"', "'")
        request.add("via", self._via(peer, branch))
        request.add("max-forwards", "70")
        self._preloaded_route(request, peer, headers or [])
        request.add("from", (f'"{name}" ' if name else "") + f"<{local_uri}>;tag={call.local_tag}")
        request.add("to", f"<{target}>")
        request.add("call-id", call_id)
        request.add("cseq", "1 INVITE")
        request.add("contact", self._contact(peer))
        request.add("allow", ALLOW)
        request.add("supported", SUPPORTED)
        for key, value in session_timer.uac_headers(self.session_expires_s, None, self.min_se_s):
            request.add(key, value)
        for key, value in headers or []:
            request.add(key, value)
        request.add("user-agent", self.user_agent)
        request.add("content-type", "application/sdp")
        request.body = sdp.encode()
        data = request.serialize()
        self.calls[call.id] = call
        tx = _ClientTransaction(branch, "INVITE", request, data, peer, call.id, ClientTransactionState.CALLING)
        self._client_tx[branch] = tx
        self.counters["calls"] += 1
        self._queue(data, peer)
        if peer.transport == "udp":
            self._start(tx, Timer.A, T1)
        self._start(tx, Timer.B, TIMEOUT)
        return call.id

    def _authorized_copy(self, call: _Call, old: SipMessage, msg: SipMessage) -> tuple[str, SipMessage] | None:
        """`old` again with the next CSeq and a new branch, answering the 401/407 `msg` with the
        call's credentials (RFC 3261 22.2); None when we cannot (no credentials, no challenge we
        take, our answer to this very nonce was refused, three rounds already)."""
        header = "proxy-authenticate" if msg.status == 407 else "www-authenticate"
        offered = []
        for value in msg.all_raw(header)[:8]:
            try:
                offered.append(parse_challenge(value, proxy=msg.status == 407))
            except DigestError:
                continue
        challenge = choose(offered)
        if call.credentials is None or challenge is None or call.auth_tries >= 3:
            return None
        key = (challenge.realm, challenge.nonce)
        if key == call.auth_answered and not challenge.stale:
            return None  # (our answer to this very challenge was refused: wrong credentials)
        try:
            answer = call.credentials.authorization(challenge, old.method, old.uri)
        except DigestError:
            return None
        call.auth_tries += 1
        call.auth_answered = key
        return self._next_attempt(
            call, old, {"authorization", "proxy-authorization"}, [(challenge.answer_header.lower(), answer)]
        )

    def _next_attempt(
        self, call: _Call, old: SipMessage, drop: set[str], add: list[tuple[str, str]]
    ) -> tuple[str, SipMessage]:
        """`old` again with the next CSeq and a new branch, without the headers `drop` names and
        with `add` (a new branch: a new transaction, RFC 3261 8.1.3.5)."""
        call.local_cseq += 1
        branch = self._new_branch()
        request = SipMessage(method=old.method, uri=old.uri)
        for name, value in old.headers:
            if name == "via":
                value = self._via(call.peer, branch)
            elif name == "cseq":
                value = f"{call.local_cseq} {old.method}"
            elif name in drop or name == "content-length":
                continue
            request.add(name, value)
        for name, value in add:
            request.add(name, value)
        request.body = old.body
        return branch, request

    def _invite_with_auth(self, call: _Call, tx: _ClientTransaction, msg: SipMessage) -> bool:
        """Our INVITE again with digest, as a new INVITE transaction (timers A, B)."""
        found = self._authorized_copy(call, tx.request, msg)
        if found is None:
            return False
        self._invite_again(call, *found)
        return True

    def _invite_longer(self, call: _Call, old: SipMessage, msg: SipMessage) -> bool:
        """RFC 4028 7.3: a 422 to our INVITE: again, asking for the far end's Min-SE at least (each
        round asks for more, up to a day: no loop)."""
        asked = session_timer.min_se(msg)
        if asked <= call.se_asked:
            return False  # (a 422 that does not ask for more: not again)
        call.se_asked = asked
        found = self._next_attempt(call, old, {"session-expires", "min-se"}, session_timer.uac_headers(asked, None, asked))
        self._invite_again(call, *found)
        return True

    def _invite_again(self, call: _Call, branch: str, request: SipMessage) -> None:
        data = request.serialize()
        call.invite = request
        retry = _ClientTransaction(branch, "INVITE", request, data, call.peer, call.id, ClientTransactionState.CALLING)
        self._client_tx[branch] = retry
        self._queue(data, call.peer)
        if call.peer.transport == "udp":
            self._start(retry, Timer.A, T1)
        self._start(retry, Timer.B, TIMEOUT)

    def _request_with_auth(self, tx: _ClientTransaction, msg: SipMessage) -> bool:
        """Our BYE, INFO, UPDATE or re-INVITE in a dialog again with digest, when the far end's
        proxy challenged it; False when we cannot answer the challenge."""
        call = tx.dialog
        if call is None:
            return False
        found = self._authorized_copy(call, tx.request, msg)
        if found is None:
            return False
        self._send_in_dialog(call, *found, tx.refresh)
        return True

    def _reinvite_response(self, tx: _ClientTransaction, call: _Call, msg: SipMessage) -> None:
        """The answer to our re-INVITE (a session refresh): a failure is ACKed on its branch, a 2xx
        end to end (and again when retransmitted); a challenge is answered."""
        if msg.status < 200:
            if tx.state is ClientTransactionState.CALLING:
                tx.state = ClientTransactionState.PROCEEDING
            return
        first = tx.state in (ClientTransactionState.CALLING, ClientTransactionState.PROCEEDING)
        if msg.status >= 300:
            self._queue(self._build_ack(tx.request, msg, tx.branch), tx.peer)
            if first:
                tx.state = ClientTransactionState.COMPLETED
                self._stop(tx, Timer.A, Timer.B)
                self._start(tx, Timer.D, TIMEOUT)
                if msg.status in (401, 407) and self._request_with_auth(tx, msg):
                    return
                if tx.refresh:
                    self._refresh_answered(call, msg)
            return
        self._queue(self._build_ack(tx.request, msg, None, call), call.peer)
        if first:
            tx.state = ClientTransactionState.ACCEPTED
            self._stop(tx, Timer.A, Timer.B)
            self._start(tx, Timer.M, TIMEOUT)
            if tx.refresh:
                self._refresh_answered(call, msg)

    def _no_answer(self, tx: _ClientTransaction) -> None:
        call = self.calls.get(tx.call) if tx.call is not None else None
        if call is not None and call.state is CallState.CALLING:
            log.info("dial-out: no answer", call_id=call.call_id)
            self._cancel_invite(call)
            self._terminate(call, 408, "No answer")

    def _invite_response(self, tx: _ClientTransaction, msg: SipMessage) -> None:
        call = self.calls.get(tx.call) if tx.call is not None else None
        to = NameAddr.parse(msg.get("to") or "")
        request = tx.request
        if msg.status < 200:
            if tx.state is ClientTransactionState.CALLING:
                tx.state = ClientTransactionState.PROCEEDING
            if msg.status > 100 and call is not None and call.state is CallState.CALLING:
                if "100rel" in _tags(msg.get("require")):
                    self._reliable_18x_received(call, request, msg)
            return
        if msg.status >= 300:
            self._queue(self._build_ack(request, msg, tx.branch), tx.peer)
            first = tx.state in (ClientTransactionState.CALLING, ClientTransactionState.PROCEEDING)
            if first:
                tx.state = ClientTransactionState.COMPLETED
                self._stop(tx, Timer.A, Timer.B)
                self._start(tx, Timer.D, TIMEOUT)
            if first and call is not None and call.state is CallState.CALLING:
                if msg.status in (401, 407) and self._invite_with_auth(call, tx, msg):
                    return
                if msg.status == 422 and self._invite_longer(call, request, msg):
                    return
                self._terminate(call, msg.status, msg.reason or "Refused")
            return
        if tx.state in (ClientTransactionState.CALLING, ClientTransactionState.PROCEEDING):
            tx.state = ClientTransactionState.ACCEPTED
            self._stop(tx, Timer.A, Timer.B)
            self._start(tx, Timer.M, TIMEOUT)
        if call is None or call.state not in (CallState.CALLING, CallState.CONFIRMED):
            # Answered after we gave up (CANCEL lost the race): acknowledge, then end it.
            ghost = self._answered_dialog(tx.call or 0, request, msg, tx.peer)
            self._queue(self._build_ack(request, msg, None, ghost), ghost.peer)
            self._send_request(ghost, "BYE", [])
            return
        if call.state is CallState.CALLING:
            call.remote_tag = to.tag
            contact = msg.all("contact")
            if contact:
                call.remote_target = NameAddr.parse(contact[0]).uri
            call.route_set = list(reversed(msg.all("record-route")))
            self._dialogs[(call.call_id, call.local_tag, call.remote_tag)] = call.id
            call.state = CallState.CONFIRMED
            call.confirmed_once = True
            self._queue(self._build_ack(request, msg, None, call), call.peer)
            self._take_answer(call, msg, "2xx")  # (none due when a reliable 18x brought it, RFC 3262 5)
            try:
                call.session = session_timer.as_uac(msg)
            except SipMessageError:
                log.info("unreadable Session-Expires in the answer; no session timer", call_id=call.call_id)
            call.peer_allows_update = "update" in _tags(msg.get("allow"))
            self._arm_session(call)
            self._events.append(CallConfirmed(call.id))
        else:  # a retransmitted 2xx: our ACK was lost
            self._queue(self._build_ack(request, msg, None, call), call.peer)

    def _reliable_18x_received(self, call: _Call, request: SipMessage, msg: SipMessage) -> None:
        """RFC 3262 4: a reliable 18x in order gets its PRACK, in the early dialog it opens (its To
        tag, Contact and Record-Route); one out of order or again is not PRACKed. An SDP in it is
        the answer to our offer (RFC 3262 5)."""
        rseq = sipmsg.ascii_int((msg.get("rseq") or "").strip(), 10)
        if rseq is None or (call.remote_rseq and rseq != call.remote_rseq + 1):
            return
        call.remote_rseq = rseq
        call.remote_tag = NameAddr.parse(msg.get("to") or "").tag
        contact = msg.all("contact")
        if contact:
            call.remote_target = NameAddr.parse(contact[0]).uri
        call.route_set = list(reversed(msg.all("record-route")))
        body = sipmsg.sdp_body(msg)
        if body is not None and call.awaiting_answer:
            call.awaiting_answer = False
            self._events.append(AnswerReceived(call.id, body))
        self._send_request(call, "PRACK", [("rack", f"{rseq} {request.cseq[0]} INVITE")])

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
            state=CallState.CONFIRMED,
            local_cseq=1,
        )

    def _build_ack(self, request: SipMessage, response: SipMessage, branch: str | None, call: _Call | None = None) -> bytes:
        """The ACK of a failure (same branch, hop by hop) or of a 2xx (new branch, to the dialog's target)."""
        ack = SipMessage(method="ACK", uri=request.uri if call is None else call.remote_target)
        via = request.all("via")[0]
        if branch is None:
            via = via.split(";branch=")[0] + f";branch={self._new_branch()};rport"
        ack.add("via", via)
        ack.add("max-forwards", "70")
        ack.add("from", request.get("from") or "")
        ack.add("to", response.get("to") or "")
        ack.add("call-id", request.call_id)
        ack.add("cseq", f"{request.cseq[0]} ACK")
        # (a 2xx's ACK follows the dialog's route set; a failure's, the INVITE's Route: RFC 3261 17.1.1.3)
        for route in call.route_set if call is not None else request.all_raw("route"):
            ack.add("route", route)
        return ack.serialize()

    def _cancel_invite(self, call: _Call) -> None:
        """CANCEL our INVITE (RFC 3261 9.1): same branch, Request-URI, Call-ID, From, To and CSeq
        number. The INVITE transaction stays (timer D) to ACK the 487 that answers it."""
        for tx in self._client_tx.values():
            if tx.method != "INVITE" or tx.call != call.id:
                continue
            if tx.state not in (ClientTransactionState.CALLING, ClientTransactionState.PROCEEDING):
                continue  # (an earlier INVITE answered 401/407: done)
            request = tx.request
            cancel = SipMessage(method="CANCEL", uri=request.uri)
            cancel.add("via", request.all("via")[0])
            cancel.add("max-forwards", "70")
            cancel.add("from", request.get("from") or "")
            cancel.add("to", request.get("to") or "")
            cancel.add("call-id", request.call_id)
            cancel.add("cseq", f"{request.cseq[0]} CANCEL")
            for route in request.all_raw("route"):  # (RFC 3261 9.1: the INVITE's Route headers)
                cancel.add("route", route)
            self._queue(cancel.serialize(), call.peer)
            self._stop(tx, Timer.A, Timer.B)
            self._start(tx, Timer.D, TIMEOUT)
            return

    # -- endings ----------------------------------------------------------------------------------

    def _terminate(self, call: _Call, status: int, reason: str) -> None:
        if call.state is CallState.TERMINATED:
            return
        call.state = CallState.TERMINATED
        self._stop(call, *Timer)
        self.calls.pop(call.id, None)
        # (requests naming the dialog from now on get 481; retransmissions are answered by their
        # transactions)
        self._dialogs.pop((call.call_id, call.local_tag, call.remote_tag), None)
        if call.pending_offer is not None:  # RFC 3261 15.1.2: a pending request gets 487
            msg, peer, tx = call.pending_offer
            call.pending_offer = None
            self._reply(msg, peer, 487, "Request Terminated", tx, to_tag=call.local_tag)
        self._events.append(CallEnded(call.id, status, reason))


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


_WORKER_BRANCH = re.compile(r"z9hG4bKw(\d{1,3})x")
_WORKER_TAG = re.compile(r"w(\d{1,3})x")


def _tags(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]

