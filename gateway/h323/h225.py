"""H.225.0 call signalling messages: the H.323-UserInformation (aligned PER, by pycrate's H.225.0
module through gateway/h323/per.py) inside a Q.931 message's User-user element, read into `Signal` and written from one.

A `Signal` is what the call layer needs of a message, whatever its type: the call's identifiers
(callIdentifier, conferenceID), the aliases and addresses, fastStart proposals and tunnelled H.245
(both kept as the PER octets of their own PDUs, read by gateway/h323/h245.py), the H.245 address and
tunnelling flag, release and facility reasons, and from Q.931 the cause, display and called number.

Reading tolerates what real endpoints leave out (version 1 and 2 messages lack most extension
additions) and raises only H225Error; writing always includes the extension additions H.225.0 makes
mandatory, and never writes an empty SEQUENCE OF inside an extension addition (pycrate encodes it
malformed: such a field is left out instead).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pycrate_asn1dir import H225

from gateway.h323 import q931
from gateway.h323.per import PerError, decode, encode

PROTOCOL_OID = (0, 0, 8, 2250, 0)  # itu-t recommendation h 2250 version: the last arc is the version
VERSION = 6  # what we say we speak (H.225.0 v6 and its ASN.1 are what we read and write)
MAX_ALIASES = 16  # aliases read from one message; the rest are ignored
MAX_FAST_START = 32  # fastStart proposals taken from one message
MAX_TUNNELLED = 16  # tunnelled H.245 PDUs taken from one message

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,15}:")  # (a scheme: h323:, sip:, tel:)
_USER_INFORMATION = H225.H323_MESSAGES.H323_UserInformation

# The H.225.0 message body each Q.931 message type carries.
BODY_OF: dict[int, str] = {
    q931.MessageType.SETUP: "setup",
    q931.MessageType.CALL_PROCEEDING: "callProceeding",
    q931.MessageType.ALERTING: "alerting",
    q931.MessageType.CONNECT: "connect",
    q931.MessageType.RELEASE_COMPLETE: "releaseComplete",
    q931.MessageType.FACILITY: "facility",
    q931.MessageType.PROGRESS: "progress",
    q931.MessageType.INFORMATION: "information",
    q931.MessageType.NOTIFY: "notify",
    q931.MessageType.STATUS: "status",
    q931.MessageType.STATUS_ENQUIRY: "statusInquiry",
    q931.MessageType.SETUP_ACKNOWLEDGE: "setupAcknowledge",
}
TYPE_OF: dict[str, int] = {body: message_type for message_type, body in BODY_OF.items()}
_WITH_DESTINATION_INFO = {"callProceeding", "alerting", "connect", "progress"}
_WITH_CALL_FLAGS = {"setup", "callProceeding", "alerting", "connect", "facility"}  # multipleCalls, maintainConnection


class H225Error(ValueError):
    """A message whose H.323-UserInformation we cannot read (or write)."""


@dataclass(frozen=True)
class Alias:
    """An H.323 alias: `kind` is the AliasAddress alternative (h323-ID, dialledDigits, url-ID,
    email-ID); transport addresses and party numbers are not aliases a room is called by."""

    kind: str
    value: str

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Vendor:
    """Who made an endpoint (its VendorIdentifier): for logs and interop quirks."""

    country: int = 0
    extension: int = 0
    manufacturer: int = 0
    product: str = ""
    version: str = ""


# The gateway's own VendorIdentifier: no T.35 manufacturer code is ours, so none is claimed.
GATEWAY_VENDOR = Vendor(0xFF, 0, 0, "meeting-gateway", "0.1")


@dataclass(frozen=True)
class Signal:
    """One H.225.0 call signalling message, as the call layer sees it."""

    body: str  # the h323-message-body alternative: setup, callProceeding, connect, ...
    call_reference: int = 0
    from_destination: bool = False
    version: int = VERSION  # the sender's protocolIdentifier version
    call_identifier: bytes | None = None  # 16 octets
    conference_id: bytes | None = None  # 16 octets
    conference_goal: str | None = None  # create, join, invite ... (Setup)
    source_aliases: tuple[Alias, ...] = ()
    destination_aliases: tuple[Alias, ...] = ()
    source_address: tuple[str, int] | None = None  # sourceCallSignalAddress
    destination_address: tuple[str, int] | None = None  # destCallSignalAddress
    h245_address: tuple[str, int] | None = None
    tunnelling: bool = False  # h245Tunnelling
    h245_control: tuple[bytes, ...] = ()  # tunnelled H.245 PDUs (PER)
    fast_start: tuple[bytes, ...] = ()  # OpenLogicalChannel PDUs (PER)
    fast_connect_refused: bool = False
    release_reason: str | None = None  # ReleaseCompleteReason alternative
    facility_reason: str | None = None  # FacilityReason alternative
    vendor: Vendor | None = None  # of sourceInfo (Setup) or destinationInfo (responses)
    endpoint_kind: str | None = None  # terminal, gateway, mcu, gatekeeper: what the sender says it is
    display_name: str | None = None  # displayName (v6) or the Q.931 Display element
    called_number: str | None = None  # the Q.931 Called party number
    cause: int | None = None  # the Q.931 Cause (Q.850 value)
    media_wait_for_connect: bool = False

    @property
    def message_type(self) -> int:
        return TYPE_OF[self.body]


# -- reading ----------------------------------------------------------------------------------------


def read(message: q931.Message) -> Signal:
    """The Signal of a Q.931 message: its User-user element's H.323-UserInformation and the Q.931
    elements the call layer uses. H225Error when the element is missing or its PER cannot be read."""
    per = message.user_user
    if per is None:
        raise H225Error("no H.323 user information (User-user element)")
    try:
        value = decode(_USER_INFORMATION, per)
    except PerError as exc:
        raise H225Error(str(exc)) from None
    pdu = value["h323-uu-pdu"]
    body, uuie = pdu["h323-message-body"]
    expected = BODY_OF.get(message.type)
    if expected is not None and body != expected and body != "empty":
        raise H225Error(f"{q931.MessageType(message.type).name} carries a {body} body")
    uuie = uuie if isinstance(uuie, dict) else {}
    info = uuie.get("sourceInfo") if body == "setup" else uuie.get("destinationInfo")
    protocol = uuie.get("protocolIdentifier", ())
    signal = Signal(
        body=body,
        call_reference=message.call_reference,
        from_destination=message.from_destination,
        version=protocol[5] if len(protocol) == 6 and tuple(protocol[:5]) == PROTOCOL_OID else 0,
        call_identifier=_guid(uuie.get("callIdentifier")),
        conference_id=_guid_bytes(uuie.get("conferenceID")),
        conference_goal=uuie["conferenceGoal"][0] if "conferenceGoal" in uuie else None,
        source_aliases=_aliases(uuie.get("sourceAddress")),
        destination_aliases=_aliases(uuie.get("destinationAddress")),
        source_address=read_transport(uuie.get("sourceCallSignalAddress")),
        destination_address=read_transport(uuie.get("destCallSignalAddress")),
        h245_address=read_transport(uuie.get("h245Address")),
        tunnelling=bool(pdu.get("h245Tunnelling", False)),
        h245_control=tuple(bytes(b) for b in pdu.get("h245Control", ())[:MAX_TUNNELLED]),
        fast_start=tuple(bytes(b) for b in uuie.get("fastStart", ())[:MAX_FAST_START]),
        fast_connect_refused="fastConnectRefused" in uuie,
        release_reason=uuie["reason"][0] if body == "releaseComplete" and "reason" in uuie else None,
        facility_reason=uuie["reason"][0] if body == "facility" and "reason" in uuie else None,
        vendor=_vendor(info),
        endpoint_kind=_endpoint_kind(info),
        display_name=_display_name(uuie.get("displayName")) or message.display,
        called_number=message.called_number,
        cause=message.cause,
        media_wait_for_connect=bool(uuie.get("mediaWaitForConnect", False)),
    )
    return signal


def _guid(value: Any) -> bytes | None:
    return _guid_bytes(value.get("guid")) if isinstance(value, dict) else None


def _guid_bytes(value: Any) -> bytes | None:
    return bytes(value) if isinstance(value, bytes | bytearray) and len(value) == 16 else None


def _aliases(values: Any) -> tuple[Alias, ...]:
    out = []
    for kind, value in (values or ())[:MAX_ALIASES]:
        if kind in ("dialledDigits", "h323-ID", "url-ID", "email-ID") and isinstance(value, str):
            out.append(Alias(kind, value))
    return tuple(out)


def read_transport(value: Any) -> tuple[str, int] | None:
    """A TransportAddress: IPv4 and IPv6 only (IPX, NetBIOS and NSAP are not on our networks)."""
    if not isinstance(value, tuple) or value[0] not in ("ipAddress", "ip6Address"):
        return None
    ip, port = value[1].get("ip"), value[1].get("port")
    try:
        return str(ipaddress.ip_address(bytes(ip))), int(port)
    except (TypeError, ValueError):
        return None


def _vendor(info: Any) -> Vendor | None:
    vendor = info.get("vendor") if isinstance(info, dict) else None
    if not isinstance(vendor, dict):
        return None
    t35 = vendor.get("vendor", {})
    return Vendor(
        t35.get("t35CountryCode", 0),
        t35.get("t35Extension", 0),
        t35.get("manufacturerCode", 0),
        _text(vendor.get("productId", b"")),
        _text(vendor.get("versionId", b"")),
    )


def _endpoint_kind(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    return next((kind for kind in ("terminal", "mcu", "gateway", "gatekeeper") if kind in info), None)


def _display_name(values: Any) -> str | None:
    for item in values or ():
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            return str(item["name"])
    return None


def _text(value: bytes) -> str:
    """A product or version id: printable, without the NUL that some endpoints end it with."""
    return "".join(c if c.isprintable() else "?" for c in bytes(value).rstrip(b"\0").decode("latin-1"))[:64]


# -- writing ----------------------------------------------------------------------------------------


def write(signal: Signal, elements: Iterable[q931.InformationElement] = ()) -> q931.Message:
    """The Q.931 message for `signal`: its User-user element (after `elements`: the bearer
    capability, display, called number ... of that message) and, for a release, its Cause."""
    uuie = _uuie(signal)
    pdu: dict[str, Any] = {"h323-message-body": (signal.body, uuie)}
    pdu["h245Tunnelling"] = signal.tunnelling
    if signal.h245_control:
        pdu["h245Control"] = list(signal.h245_control)
    try:
        per = encode(_USER_INFORMATION, {"h323-uu-pdu": pdu})
    except PerError as exc:
        raise H225Error(str(exc)) from None
    ies = list(elements)
    if signal.display_name and signal.body in ("setup", "connect", "alerting"):
        ies.append(q931.display(signal.display_name))
    if signal.called_number and signal.body == "setup":
        ies.append(q931.called_party_number(signal.called_number))
    if signal.cause is not None:
        ies.append(q931.cause(signal.cause))
    ies.append(q931.user_user(per))
    message_type = q931.MessageType.FACILITY if signal.body == "empty" else signal.message_type
    return q931.Message(message_type, signal.call_reference, signal.from_destination, ies)


def _uuie(signal: Signal) -> Any:
    if signal.body == "empty":
        return 0  # (NULL: a Facility carrying tunnelled H.245 only, version 4 and later)
    uuie: dict[str, Any] = {
        "protocolIdentifier": (*PROTOCOL_OID, signal.version),
        "callIdentifier": {"guid": signal.call_identifier or bytes(16)},  # (every body but `empty` names the call)
    }
    body = signal.body
    if body == "setup":
        uuie["sourceInfo"] = _endpoint(signal)
        if signal.source_aliases:
            uuie["sourceAddress"] = [_alias(a) for a in signal.source_aliases]
        if signal.destination_aliases:
            uuie["destinationAddress"] = [_alias(a) for a in signal.destination_aliases]
        if signal.destination_address is not None:
            uuie["destCallSignalAddress"] = transport_address(signal.destination_address)
        if signal.source_address is not None:
            uuie["sourceCallSignalAddress"] = transport_address(signal.source_address)
        uuie.update(
            activeMC=False,
            conferenceID=signal.conference_id or bytes(16),
            conferenceGoal=(signal.conference_goal or "create", 0),
            callType=("pointToPoint", 0),
            mediaWaitForConnect=signal.media_wait_for_connect,
            canOverlapSend=False,
        )
    if body in _WITH_DESTINATION_INFO:
        uuie["destinationInfo"] = _endpoint(signal)
    if body == "connect":
        uuie["conferenceID"] = signal.conference_id or bytes(16)
    if body in _WITH_CALL_FLAGS:
        uuie.update(multipleCalls=False, maintainConnection=False)
    if body == "releaseComplete" and signal.release_reason is not None:
        uuie["reason"] = (signal.release_reason, 0)
    if body == "facility":
        uuie["reason"] = (signal.facility_reason or "undefinedReason", 0)
        if signal.conference_id is not None:
            uuie["conferenceID"] = signal.conference_id
    if signal.h245_address is not None and body in ("setup", "callProceeding", "alerting", "connect", "facility", "progress"):
        uuie["h245Address"] = transport_address(signal.h245_address)
    if signal.fast_start:  # (never an empty list: it is an extension addition)
        uuie["fastStart"] = list(signal.fast_start)
    if signal.fast_connect_refused and body in ("callProceeding", "alerting", "connect", "facility", "progress", "information"):
        uuie["fastConnectRefused"] = 0
    return uuie


def _endpoint(signal: Signal) -> dict[str, Any]:
    vendor = signal.vendor or GATEWAY_VENDOR
    identifier: dict[str, Any] = {
        "vendor": {"t35CountryCode": vendor.country, "t35Extension": vendor.extension, "manufacturerCode": vendor.manufacturer}
    }
    if vendor.product:
        identifier["productId"] = vendor.product.encode("latin-1", "replace")[:256]
    if vendor.version:
        identifier["versionId"] = vendor.version.encode("latin-1", "replace")[:256]
    return {"vendor": identifier, signal.endpoint_kind or "terminal": {}, "mc": False, "undefinedNode": False}


def _alias(alias: Alias) -> tuple[str, str]:
    return (alias.kind, alias.value)


def transport_address(address: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    ip = ipaddress.ip_address(address[0])
    return ("ipAddress" if ip.version == 4 else "ip6Address", {"ip": ip.packed, "port": address[1]})


def alias_of(text: str) -> Alias:
    """The alias a dialled text is: digits (and * # ,) are dialledDigits, a URL is url-ID, an
    address with @ email-ID, anything else an h323-ID."""
    if text and all(c in "0123456789#*," for c in text):
        return Alias("dialledDigits", text[:128])
    if _URL.match(text):
        return Alias("url-ID", text[:512])
    if "@" in text:
        return Alias("email-ID", text[:512])
    return Alias("h323-ID", text[:256])

