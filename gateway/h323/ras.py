"""RAS (H.225.0 7, registration, admission and status on UDP 1719) toward a gatekeeper, sans-IO:
datagrams and time in, datagrams and events out.

The gateway registers as an MCU-like gateway endpoint whose aliases are the rooms' (h323-ID for
names, dialledDigits for numbers) and whose prefixes route whole number ranges to it:

- `start()`: GatekeeperRequest first when `discover` (the GatekeeperConfirm names the gatekeeper
  and its RAS address), then RegistrationRequest with our call signalling and RAS addresses, the
  aliases, the prefixes (voice gateway protocol) and a time to live. RegistrationConfirm gives
  our endpointIdentifier; before the time to live runs out a lightweight RegistrationRequest
  (keepAlive, endpoint and gatekeeper identifiers, no aliases) renews it. A gatekeeper that
  forgot us (RRJ to a keep-alive, its own UnregistrationRequest) gets a full registration again.
- `admit()` before answering or placing a call: AdmissionRequest, then Admitted (with where to
  call, for outgoing calls) or AdmissionRefused; `disengage()` when the call ends.
- InfoRequest is answered with InfoRequestResponse; `stop()` sends UnregistrationRequest.
- Requests are sent again after RETRY_S, RETRIES times (H.225.0 recommends a few seconds and a
  few retries); then the request fails (registration: retried from the start after BACKOFF_S).
- Datagrams from anywhere but the gatekeeper's address are dropped; what cannot be read is a
  RasProblem for the log.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Any

from pycrate_asn1dir import H225

from gateway.h323.h225 import GATEWAY_VENDOR, PROTOCOL_OID, VERSION, Alias, read_transport, transport_address
from gateway.h323.per import PerError, decode, encode

Address = tuple[str, int]
RETRY_S = 3.0
RETRIES = 2
BACKOFF_S = 30.0
MAX_DATAGRAM = 8192
_RAS = H225.H323_MESSAGES.RasMessage


class RasError(ValueError):
    pass


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    endpoint_id: str
    time_to_live: int


@dataclass(frozen=True)
class RegistrationFailed:
    reason: str


@dataclass(frozen=True)
class Unregistered:
    by_gatekeeper: bool


@dataclass(frozen=True)
class Admitted:
    key: Any  # the caller's key of the call
    address: Address | None  # where to call (outgoing calls)


@dataclass(frozen=True)
class AdmissionRefused:
    key: Any
    reason: str


@dataclass(frozen=True)
class RasProblem:
    what: str


Event = Registered | RegistrationFailed | Unregistered | Admitted | AdmissionRefused | RasProblem


class State(enum.StrEnum):
    IDLE = "idle"
    DISCOVERING = "discovering"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # (waiting to try again)
    STOPPED = "stopped"


@dataclass
class _Pending:
    name: str
    datagram: bytes
    sent_at: float
    tries: int = 1
    key: Any = None


@dataclass
class RasClient:
    gatekeeper: Address
    ras_address: Address  # ours, as the gatekeeper should send to it
    call_signal_address: Address  # ours (TCP, H.225.0)
    aliases: tuple[Alias, ...] = ()
    prefixes: tuple[str, ...] = ()
    gatekeeper_id: str | None = None
    discover: bool = False
    time_to_live: int = 300
    state: State = State.IDLE
    endpoint_id: str = ""
    _out: list[bytes] = field(default_factory=list)
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _sequence: int = field(default_factory=lambda: secrets.randbelow(60000) + 1)
    _renew_at: float | None = None
    _retry_at: float | None = None
    _out_events: list[Event] = field(default_factory=list)

    # -- datagrams in and out -------------------------------------------------------------------

    def datagrams_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def start(self, now: float) -> None:
        if self.discover and self.gatekeeper_id is None:
            self.state = State.DISCOVERING
            self._request("gatekeeperRequest", {
                "protocolIdentifier": (*PROTOCOL_OID, VERSION), "rasAddress": transport_address(self.ras_address),
                "endpointType": self._endpoint_type(), **self._aliases(),
            }, now)  # fmt: skip
        else:
            self._register(now, keep_alive=False)

    def update_aliases(self, aliases: tuple[Alias, ...], now: float) -> None:
        """The rooms changed: registered, a full RegistrationRequest with the new aliases at once
        (it replaces the old ones at the gatekeeper); otherwise they go in the next one."""
        if aliases == self.aliases:
            return
        self.aliases = aliases
        if self.state is State.REGISTERED:
            # (we stay registered meanwhile: a call that comes before the confirm still asks for
            # admission, under the endpoint id we have)
            self._register(now, keep_alive=False, update=True)

    def stop(self, now: float) -> None:
        """UnregistrationRequest (when registered); no more requests after it."""
        if self.state is State.REGISTERED:
            value: dict[str, Any] = {"callSignalAddress": [transport_address(self.call_signal_address)],
                                     "endpointIdentifier": self.endpoint_id}  # fmt: skip
            if self.gatekeeper_id:
                value["gatekeeperIdentifier"] = self.gatekeeper_id
            self._request("unregistrationRequest", value, now)
        self.state = State.STOPPED
        self._renew_at = self._retry_at = None

    def receive(self, data: bytes, source: Address, now: float) -> list[Event]:
        if source != self.gatekeeper:
            return [RasProblem(f"RAS from {source[0]}:{source[1]}, not the gatekeeper: dropped")]
        if len(data) > MAX_DATAGRAM:
            return [RasProblem("RAS datagram too long")]
        try:
            name, value = decode(_RAS, data)
        except PerError as exc:
            return [RasProblem(str(exc))]
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            return [RasProblem(f"RAS {name} not handled")]
        try:
            events: list[Event] = handler(value, now)
        except (KeyError, TypeError, ValueError) as exc:
            return [RasProblem(f"RAS {name}: {type(exc).__name__}")]
        return events

    @property
    def deadline(self) -> float | None:
        times = [p.sent_at + RETRY_S for p in self._pending.values()]
        times += [t for t in (self._renew_at, self._retry_at) if t is not None]
        return min(times) if times else None

    def timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        for sequence, pending in list(self._pending.items()):
            if now < pending.sent_at + RETRY_S:
                continue
            if pending.tries <= RETRIES:
                pending.tries += 1
                pending.sent_at = now
                self._out.append(pending.datagram)
                continue
            del self._pending[sequence]
            events += self._gave_up(pending, now)
        if self._renew_at is not None and now >= self._renew_at and self.state is State.REGISTERED:
            self._renew_at = None
            self._register(now, keep_alive=True)
        if self._retry_at is not None and now >= self._retry_at and self.state is State.FAILED:
            self._retry_at = None
            self.start(now)
        return events

    def _gave_up(self, pending: _Pending, now: float) -> list[Event]:
        if pending.name in ("gatekeeperRequest", "registrationRequest"):
            self.state = State.FAILED
            self._retry_at = now + BACKOFF_S
            return [RegistrationFailed("no answer from the gatekeeper")]
        if pending.name == "admissionRequest":
            return [AdmissionRefused(pending.key, "no answer from the gatekeeper")]
        return []

    # -- requests ---------------------------------------------------------------------------------

    def _next(self) -> int:
        self._sequence = self._sequence % 65535 + 1
        return self._sequence

    def _request(self, name: str, value: dict[str, Any], now: float, key: Any = None) -> int:
        sequence = self._next()
        datagram = self._encode(name, {"requestSeqNum": sequence, **value})
        self._pending[sequence] = _Pending(name, datagram, now, key=key)
        self._out.append(datagram)
        return sequence

    def _encode(self, name: str, value: dict[str, Any]) -> bytes:
        try:
            return encode(_RAS, (name, value))
        except PerError as exc:
            raise RasError(str(exc)) from None

    def _endpoint_type(self) -> dict[str, Any]:
        vendor = {"vendor": {"t35CountryCode": GATEWAY_VENDOR.country, "t35Extension": GATEWAY_VENDOR.extension,
                             "manufacturerCode": GATEWAY_VENDOR.manufacturer},
                  "productId": GATEWAY_VENDOR.product.encode(), "versionId": GATEWAY_VENDOR.version.encode()}  # fmt: skip
        endpoint: dict[str, Any] = {"vendor": vendor, "mc": False, "undefinedNode": False}
        protocols: list[Any] = [("h323", {})]
        if self.prefixes:  # (a gateway's prefixes route number ranges to it; never an empty list)
            protocols.append(("voice", {"supportedPrefixes": [{"prefix": ("dialledDigits", p)} for p in self.prefixes]}))
        endpoint["gateway"] = {"protocol": protocols}
        return endpoint

    def _aliases(self) -> dict[str, Any]:
        return {"endpointAlias": [(a.kind, a.value) for a in self.aliases]} if self.aliases else {}

    def _register(self, now: float, keep_alive: bool, update: bool = False) -> None:
        self.state = State.REGISTERED if keep_alive or update else State.REGISTERING
        value: dict[str, Any] = {
            "protocolIdentifier": (*PROTOCOL_OID, VERSION),
            "discoveryComplete": self.discover,
            "callSignalAddress": [transport_address(self.call_signal_address)],
            "rasAddress": [transport_address(self.ras_address)],
            "terminalType": self._endpoint_type(),
            "endpointVendor": self._endpoint_type()["vendor"],
            "timeToLive": self.time_to_live,
            "keepAlive": keep_alive,
            "willSupplyUUIEs": False,
            "maintainConnection": False,
        }
        if not keep_alive and self.aliases:
            value["terminalAlias"] = [(a.kind, a.value) for a in self.aliases]
        if self.gatekeeper_id:
            value["gatekeeperIdentifier"] = self.gatekeeper_id
        if keep_alive:
            value["endpointIdentifier"] = self.endpoint_id
        self._request("registrationRequest", value, now)

    def admit(
        self,
        key: Any,
        now: float,
        *,
        answer: bool,
        call_identifier: bytes,
        conference_id: bytes,
        call_reference: int,
        source: tuple[Alias, ...] = (),
        destination: tuple[Alias, ...] = (),
        destination_address: Address | None = None,
        bandwidth_kbps: int = 2048,
    ) -> None:
        """AdmissionRequest for a call (`answer`: one we answer); Admitted or AdmissionRefused with
        `key` follows. Not registered: refused at once."""
        if self.state is not State.REGISTERED:
            self._out_events.append(AdmissionRefused(key, "not registered with the gatekeeper"))
            return
        value: dict[str, Any] = {
            "callType": ("pointToPoint", 0),
            "endpointIdentifier": self.endpoint_id,
            "srcInfo": [(a.kind, a.value) for a in source or self.aliases or (Alias("h323-ID", "gateway"),)],
            "bandWidth": bandwidth_kbps * 10,  # (units of 100 bit/s)
            "callReferenceValue": call_reference,
            "conferenceID": conference_id,
            "activeMC": False,
            "answerCall": answer,
            "canMapAlias": False,
            "callIdentifier": {"guid": call_identifier},
            "willSupplyUUIEs": False,
        }
        if destination:
            value["destinationInfo"] = [(a.kind, a.value) for a in destination]
        if destination_address is not None:
            value["destCallSignalAddress"] = transport_address(destination_address)
        if self.gatekeeper_id:
            value["gatekeeperIdentifier"] = self.gatekeeper_id
        self._request("admissionRequest", value, now, key=key)

    def events(self) -> list[Event]:
        """Events made by calls into the client (an admission refused at once)."""
        out, self._out_events = self._out_events, []
        return out

    def disengage(self, now: float, *, call_identifier: bytes, conference_id: bytes, call_reference: int, answered: bool) -> None:
        if self.state is not State.REGISTERED:
            return
        value: dict[str, Any] = {
            "endpointIdentifier": self.endpoint_id,
            "conferenceID": conference_id,
            "callReferenceValue": call_reference,
            "disengageReason": ("normalDrop", 0),
            "callIdentifier": {"guid": call_identifier},
            "answeredCall": answered,
        }
        if self.gatekeeper_id:
            value["gatekeeperIdentifier"] = self.gatekeeper_id
        self._request("disengageRequest", value, now)

    # -- answers from the gatekeeper ------------------------------------------------------------

    def _answered(self, value: Any, name: str) -> _Pending | None:
        pending = self._pending.get(value["requestSeqNum"])
        if pending is None or pending.name != name:
            return None
        del self._pending[value["requestSeqNum"]]
        return pending

    def _on_gatekeeperConfirm(self, value: Any, now: float) -> list[Event]:
        if self._answered(value, "gatekeeperRequest") is None:
            return []
        self.gatekeeper_id = value.get("gatekeeperIdentifier") or self.gatekeeper_id
        ras = read_transport(value.get("rasAddress"))
        if ras is not None:
            self.gatekeeper = ras
        self._register(now, keep_alive=False)
        return []

    def _on_gatekeeperReject(self, value: Any, now: float) -> list[Event]:
        if self._answered(value, "gatekeeperRequest") is None:
            return []
        self.state, self._retry_at = State.FAILED, now + BACKOFF_S
        return [RegistrationFailed(f"gatekeeper discovery rejected: {value['rejectReason'][0]}")]

    def _on_registrationConfirm(self, value: Any, now: float) -> list[Event]:
        pending = self._answered(value, "registrationRequest")
        if pending is None:
            return []
        first = self.state is not State.REGISTERED or not self.endpoint_id
        self.endpoint_id = value["endpointIdentifier"]
        self.gatekeeper_id = value.get("gatekeeperIdentifier") or self.gatekeeper_id
        ttl = int(value.get("timeToLive", self.time_to_live))
        self.state = State.REGISTERED
        self._renew_at = now + max(10.0, ttl * 0.8)
        return [Registered(self.endpoint_id, ttl)] if first else []

    def _on_registrationReject(self, value: Any, now: float) -> list[Event]:
        pending = self._answered(value, "registrationRequest")
        if pending is None:
            return []
        reason = value["rejectReason"][0]
        if self.state is State.REGISTERED:  # (a keep-alive the gatekeeper no longer knows: all again)
            self.endpoint_id = ""
            self._register(now, keep_alive=False)
            return [RasProblem(f"keep-alive rejected ({reason}): registering again")]
        self.state, self._retry_at = State.FAILED, now + BACKOFF_S
        return [RegistrationFailed(reason)]

    def _on_unregistrationConfirm(self, value: Any, now: float) -> list[Event]:
        self._answered(value, "unregistrationRequest")
        return [Unregistered(by_gatekeeper=False)]

    def _on_unregistrationRequest(self, value: Any, now: float) -> list[Event]:
        """The gatekeeper drops us: confirmed, and (unless we stop) registered again."""
        self._out.append(self._encode("unregistrationConfirm", {"requestSeqNum": value["requestSeqNum"]}))
        if self.state is State.STOPPED:
            return [Unregistered(by_gatekeeper=True)]
        self.endpoint_id = ""
        self._register(now, keep_alive=False)
        return [Unregistered(by_gatekeeper=True)]

    def _on_admissionConfirm(self, value: Any, now: float) -> list[Event]:
        pending = self._answered(value, "admissionRequest")
        if pending is None:
            return []
        return [Admitted(pending.key, read_transport(value.get("destCallSignalAddress")))]

    def _on_admissionReject(self, value: Any, now: float) -> list[Event]:
        pending = self._answered(value, "admissionRequest")
        if pending is None:
            return []
        return [AdmissionRefused(pending.key, value["rejectReason"][0])]

    def _on_disengageConfirm(self, value: Any, now: float) -> list[Event]:
        self._answered(value, "disengageRequest")
        return []

    def _on_disengageReject(self, value: Any, now: float) -> list[Event]:
        self._answered(value, "disengageRequest")
        return []

    def _on_requestInProgress(self, value: Any, now: float) -> list[Event]:
        """The gatekeeper needs longer: the request's retry waits `delay` ms more."""
        pending = self._pending.get(value["requestSeqNum"])
        if pending is not None:
            pending.sent_at = now + min(int(value.get("delay", 0)), 60_000) / 1000
        return []

    def _on_infoRequest(self, value: Any, now: float) -> list[Event]:
        answer: dict[str, Any] = {
            "requestSeqNum": value["requestSeqNum"],
            "endpointType": self._endpoint_type(),
            "endpointIdentifier": self.endpoint_id or "unregistered",
            "rasAddress": transport_address(self.ras_address),
            "callSignalAddress": [transport_address(self.call_signal_address)],
        }
        self._out.append(self._encode("infoRequestResponse", answer))
        return []

