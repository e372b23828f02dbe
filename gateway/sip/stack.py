"""pjsua2 as a SIP signalling engine, polled by one thread of its own and handed to asyncio.

pjsua2 does transactions, dialogs and transports; it never carries our media. Every pjsua2 call
happens on the thread that created the library (`_run`), which polls `libHandleEvents` and runs
the commands that asyncio queued (`submit`). Every callback is handed to the asyncio loop with
`call_soon_threadsafe`, except the one that cannot wait: an SDP answer must be written while
pjsua builds it (`onCallSdpCreated`), so it is computed right there from the call's `MediaPlan`
(immutable, replaced by asyncio) with the sans-IO `sdp` module.

Drop every Python reference to a `pj.Call` before `libDestroy()`, or the process aborts: calls
live in `SipStack._calls` only, and go when they are disconnected.
"""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pjsua2 as pj
import structlog

from gateway.config import SipConfig
from gateway.sip import message, sdp
from gateway.transcode.audio import AudioCodec

log = structlog.get_logger(__name__)

POLL_MS = 10
_TRANSPORT_TYPES = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}
_UNWANTED_CODECS = ("speex", "ilbc", "gsm", "l16")


@dataclass(frozen=True)
class MediaPlan:
    """What our SDP says about our side of a call: set by asyncio, read by the SIP thread."""

    local_address: str
    audio_port: int
    codecs: list[AudioCodec]
    prefer_ours: bool
    user_agent: str
    session_id: int = field(default_factory=lambda: secrets.randbelow(2**31))
    direction: str = "sendrecv"  # what we want (inactive while a caller waits without media, ...)


@dataclass(frozen=True)
class IncomingCall:
    call: int  # pjsua call id: the handle asyncio uses
    sip_call_id: str
    user: str  # user part of the request URI: the alias dialled
    display_name: str
    from_user: str
    source: str  # the address the INVITE came from (ip), for lockouts and logs
    transport: str
    offer: str | None  # the SDP body, None for a late offer


class CallEvents(Protocol):
    """What the SIP thread reports, on the asyncio loop."""

    def incoming(self, call: IncomingCall) -> None: ...
    def media(self, call: int, choice: sdp.AudioChoice) -> None: ...
    def digit(self, call: int, digit: str, via: str) -> None: ...
    def confirmed(self, call: int) -> None: ...
    def disconnected(self, call: int, status: int, reason: str) -> None: ...


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, stack: SipStack, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.stack = stack
        self.id = call_id
        self.plan: MediaPlan | None = None
        self.offered_codecs: list[AudioCodec] | None = None  # set while our offer awaits an answer
        self.sip_call_id = ""
        self._version = 1

    # -- SDP: answered here, on the SIP thread, from the plan --------------------------------------

    def onCallRxOffer(self, prm: pj.OnCallRxOfferParam) -> None:
        """A re-INVITE or UPDATE with an offer: refuse it (488) when we could not answer it."""
        plan = self.plan
        if plan is None:
            return
        try:
            self._answer(prm.offer.wholeSdp, plan)
        except sdp.SdpError as exc:
            log.info("re-offer refused", call_id=self.sip_call_id, status=exc.status, reason=exc.reason)
            prm.statusCode = 488

    def _answer(self, offer_text: str, plan: MediaPlan) -> sdp.Answer:
        self._version += 1
        return sdp.answer(
            sdp.parse(offer_text),
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=plan.codecs,
            prefer_ours=plan.prefer_ours,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=self._version,
            user_agent=plan.user_agent,
        )

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        plan = self.plan
        if plan is None:
            return
        remote = prm.remSdp.wholeSdp
        try:
            if remote:
                answer = self._answer(remote, plan)
                prm.sdp.wholeSdp = answer.sdp
                self.offered_codecs = None
                self.stack._post("media", self.id, answer.audio)
                return
        except sdp.SdpError as exc:
            # (offers were checked before: by asyncio for the INVITE, in onCallRxOffer for re-offers)
            log.warning("could not answer an offer", call_id=self.sip_call_id, reason=exc.reason)
            return
        self._version += 1
        # We offer (late offer, refresh without SDP): in a running call the codec in use goes first.
        in_use = self._codec_in_use()
        self.offered_codecs = sorted(plan.codecs, key=lambda codec: codec is not in_use)
        prm.sdp.wholeSdp = sdp.offer(
            local_address=plan.local_address,
            audio_port=plan.audio_port,
            codecs=self.offered_codecs,
            direction=plan.direction,
            session_id=plan.session_id,
            session_version=self._version,
            user_agent=plan.user_agent,
        )

    def _take_answer(self, text: str) -> None:
        codecs = self.offered_codecs
        if codecs is None or self.plan is None:
            return
        body = message.sdp_body(text)
        if body is None:
            return
        self.offered_codecs = None
        try:
            choice = sdp.accept_answer(sdp.parse(body), codecs, self.plan.direction)
        except sdp.SdpError as exc:
            log.warning("unusable SDP answer", call_id=self.sip_call_id, reason=exc.reason)
            self.stack._post("disconnect_request", self.id, 488, exc.reason)
            return
        self.stack._post("media", self.id, choice)

    # -- state, DTMF over SIP -----------------------------------------------------------------------

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            if prm.e.type == pj.PJSIP_EVENT_RX_MSG:
                self._take_answer(prm.e.body.rxMsg.rdata.wholeMsg)  # the ACK of a late offer
            elif prm.e.type == pj.PJSIP_EVENT_TSX_STATE and prm.e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
                self._take_answer(prm.e.body.tsxState.src.rdata.wholeMsg)
            self.stack._post("confirmed", self.id)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.stack._forget(self, int(info.lastStatusCode), str(info.lastReason))

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        event = prm.e.body.tsxState
        tsx = event.tsx
        if tsx.role != pj.PJSIP_ROLE_UAS or event.type != pj.PJSIP_EVENT_RX_MSG:
            return
        text = event.src.rdata.wholeMsg
        if tsx.method == "INFO":
            digits = message.info_digits(text)
            if digits is None:
                return
            for digit in digits:
                self.stack._post("digit", self.id, digit, "sip-info")
        elif tsx.method == "ACK":
            self._take_answer(text)

    def _stream(self) -> pj.StreamInfo | None:
        """pjsua's audio stream info (it runs one on its loop transport for every completed
        offer/answer), None before the first one or for a codec pjsua lacks (opus)."""
        if not self.hasMedia():
            return None  # (asking anyway makes pjsua2 log an error line)
        try:
            return self.getStreamInfo(0)
        except pj.Error:
            return None

    def _codec_in_use(self) -> AudioCodec | None:
        stream = self._stream()
        name = str(stream.codecName).lower() if stream is not None else ""
        return next((codec for codec, (wire, _) in sdp.RTP_NAMES.items() if wire.lower() == name), None)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        """An offer/answer completed. The answer to our offer in the 200 to a re-INVITE without SDP
        comes in the ACK, which pjsua2 shows nowhere else (no state change, no transaction event
        with the message): it is read back from the stream pjsua negotiated from it."""
        codecs = self.offered_codecs
        if codecs is None or self.getInfo().state != pj.PJSIP_INV_STATE_CONFIRMED:
            return  # (the ACK of a late offer confirms the call: onCallState reads it whole)
        self.offered_codecs = None
        stream, codec = self._stream(), self._codec_in_use()
        if stream is None or codec not in codecs:
            log.warning("SDP answer in an ACK not readable; media unchanged", call_id=self.sip_call_id)
            return
        host, _, port = str(stream.remoteRtpAddress).rpartition(":")
        rtcp_port = str(stream.remoteRtcpAddress).rpartition(":")[2]
        directions = {
            pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv",
            pj.PJMEDIA_DIR_ENCODING: "sendonly",
            pj.PJMEDIA_DIR_DECODING: "recvonly",
        }
        choice = sdp.AudioChoice(
            codec=codec,
            payload_type=int(stream.txPt),
            clock_rate=sdp.RTP_NAMES[codec][1],
            fmtp=None,
            telephone_event_pt=int(stream.audTxEventPt) if stream.audTxEventPt >= 0 else None,
            direction=directions.get(stream.dir, "inactive"),
            remote_address=host.strip("[]"),
            remote_port=int(port),
            remote_rtcp_port=int(rtcp_port),
            rtcp_mux=rtcp_port == port,
            ptime_ms=20,
            remote_crypto=None,
            local_crypto=None,
        )
        self.stack._post("media", self.id, choice)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        """pjsua's own DTMF reports: SIP INFO (application/dtmf-relay) is parsed in onCallTsxState,
        RFC 4733 arrives on our RTP engine; nothing is left for this."""


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, stack: SipStack) -> None:
        super().__init__()
        self.stack = stack

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.stack._incoming(self, prm)


class SipStack:
    def __init__(self, config: SipConfig, events: CallEvents, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self._events = events
        self._loop = loop
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._calls: dict[int, _Call] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.ports: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        self._thread = threading.Thread(target=self._run, name="sip", daemon=True)
        self._thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self._started.wait)
        if self._start_error is not None:
            raise self._start_error
        return self.ports

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)
        self._thread = None

    def _run(self) -> None:
        endpoint = pj.Endpoint()
        try:
            self._account = self._init(endpoint)
        except BaseException as exc:  # noqa: BLE001 (reported to the starter, which raises it)
            self._start_error = exc if not isinstance(exc, pj.Error) else RuntimeError(f"SIP start failed: {exc.info()}")
            self._started.set()
            try:
                endpoint.libDestroy()
            except pj.Error:
                pass
            return
        self._started.set()
        while not self._stopping.is_set():
            endpoint.libHandleEvents(POLL_MS)
            self._run_commands()
        self._shutdown(endpoint)

    def _init(self, endpoint: pj.Endpoint) -> pj.Account:
        config = self.config
        endpoint.libCreate()
        ep_config = pj.EpConfig()
        ep_config.uaConfig.threadCnt = 0
        ep_config.uaConfig.mainThreadOnly = False
        ep_config.uaConfig.maxCalls = min(config.max_calls, 4000)
        ep_config.uaConfig.userAgent = config.user_agent
        ep_config.medConfig.threadCnt = 0
        ep_config.medConfig.noVad = True
        ep_config.logConfig.level = 1
        ep_config.logConfig.consoleLevel = 1
        endpoint.libInit(ep_config)
        endpoint.audDevManager().setNullDev()
        for codec in endpoint.codecEnum2():
            if codec.codecId.split("/")[0].lower() in _UNWANTED_CODECS:
                endpoint.codecSetPriority(codec.codecId, 0)
        port = config.port
        for name in config.transports:
            transport = pj.TransportConfig()
            transport.boundAddress = config.host
            transport.port = port
            if config.public_address:
                transport.publicAddress = config.public_address
            tid = endpoint.transportCreate(_TRANSPORT_TYPES[name], transport)
            port = int(endpoint.transportGetInfo(tid).localName.rsplit(":", 1)[1])
            self.ports[name] = port
        if config.tls is not None:
            transport = pj.TransportConfig()
            transport.boundAddress = config.host
            transport.port = config.tls.port
            transport.tlsConfig.certFile = str(config.tls.cert)
            transport.tlsConfig.privKeyFile = str(config.tls.key)
            tid = endpoint.transportCreate(pj.PJSIP_TRANSPORT_TLS, transport)
            self.ports["tls"] = int(endpoint.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        endpoint.libStart()
        account_config = pj.AccountConfig()
        account_config.idUri = f"sip:gateway@{config.public_address or config.host}"
        account_config.mediaConfig.useLoopMedTp = True
        account_config.mediaConfig.enableLoopback = False
        # pjsua checks offers itself before we see them: let RTP/SAVP (SDES) through, we do the SRTP.
        account_config.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_OPTIONAL
        account_config.mediaConfig.srtpSecureSignaling = 0
        account = _Account(self)
        account.create(account_config, True)
        return account

    def _shutdown(self, endpoint: pj.Endpoint) -> None:
        for call in list(self._calls.values()):
            try:
                call.hangup(_op(503, "Service shutting down"))
            except pj.Error:
                pass
        deadline = 0
        while self._calls and deadline < 100:  # BYEs out, at most a second
            endpoint.libHandleEvents(POLL_MS)
            deadline += 1
        self._calls.clear()
        self._account.shutdown()
        del self._account
        endpoint.libDestroy()

    # -- commands from asyncio -------------------------------------------------------------------

    def submit(self, command: Callable[[], None]) -> None:
        self._commands.put(command)

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command()
            except pj.Error as exc:
                log.warning("SIP command failed", error=exc.info())
            except Exception:
                log.exception("SIP command failed")

    def answer(
        self, call_id: int, status: int, reason: str | None = None, plan: MediaPlan | None = None, body: str | None = None
    ) -> None:
        """Answers an INVITE. `body` is our SDP answer: pjsua built its own before the call reached
        us. A late offer (INVITE without SDP) is answered without body: pjsua then asks
        onCallSdpCreated for the offer, which the plan provides."""

        def run() -> None:
            call = self._calls.get(call_id)
            if call is None:
                return
            if plan is not None:
                call.plan = plan
            param = _op(status, reason)
            if body is not None:
                param.sdp.wholeSdp = body
            call.answer(param)

        self.submit(run)

    def hang_up(self, call_id: int, status: int = 200, reason: str | None = None, cause: tuple[int, str] | None = None) -> None:
        """Rejects (status >= 300, before answer), cancels or ends (BYE) a call. `cause` becomes a
        Reason header (RFC 3326) on the BYE: why a caller was put out (wrong PIN, removed)."""

        def run() -> None:
            call = self._calls.get(call_id)
            if call is None:
                return
            param = _op(status, reason)
            if cause is not None:
                header = pj.SipHeader()
                header.hName = "Reason"
                header.hValue = f'SIP;cause={cause[0]};text="{cause[1]}"'
                param.txOption.headers.append(header)
            call.hangup(param)

        self.submit(run)

    def set_plan(self, call_id: int, **changes: Any) -> None:
        def run() -> None:
            call = self._calls.get(call_id)
            if call is not None and call.plan is not None:
                call.plan = replace(call.plan, **changes)

        self.submit(run)

    # -- from the SIP thread ---------------------------------------------------------------------

    def _post(self, name: str, *args: Any) -> None:
        if name == "disconnect_request":
            call_id, status, reason = args
            self.hang_up(call_id, status, reason)
            return
        handler = getattr(self._events, name)
        self._loop.call_soon_threadsafe(handler, *args)

    def _incoming(self, account: _Account, prm: pj.OnIncomingCallParam) -> None:
        call = _Call(self, account, prm.callId)
        text = prm.rdata.wholeMsg
        try:
            request = message.parse_invite(text)
        except message.SipMessageError as exc:
            self._calls[call.id] = call
            log.info("INVITE refused", reason=str(exc), source=prm.rdata.srcAddress)
            call.answer(_op(400, str(exc)[:100]))
            return
        info = call.getInfo()
        call.sip_call_id = info.callIdString
        self._calls[call.id] = call
        if len(self._calls) > self.config.max_calls:
            call.answer(_op(503, "Too many calls"))
            return
        source = prm.rdata.srcAddress.rsplit(":", 1)[0].strip("[]")
        self._post(
            "incoming",
            IncomingCall(
                call=call.id,
                sip_call_id=info.callIdString,
                user=request.user,
                display_name=request.display_name,
                from_user=request.from_user,
                source=source,
                transport=request.transport,
                offer=request.sdp,
            ),
        )

    def _forget(self, call: _Call, status: int, reason: str) -> None:
        self._calls.pop(call.id, None)
        self._post("disconnected", call.id, status, reason)

    @property
    def active_calls(self) -> int:
        return len(self._calls)


def _op(status: int, reason: str | None = None) -> pj.CallOpParam:
    param = pj.CallOpParam(True)
    param.statusCode = status
    if reason:
        param.reason = reason
    return param
