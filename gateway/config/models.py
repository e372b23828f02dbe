"""Pydantic models of the whole configuration, one per section, with the checks each setting needs.

GatewayConfig is the root: a BaseSettings whose GATEWAY_* environment variables (`__` between
levels) win over the values the file gives.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.rooms.patterns import MAX_GROUPS, PatternError, compile_rule, parse_template

ROOM_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

ENV_PREFIX = "GATEWAY_"
ENV_DELIMITER = "__"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Strict):
    cert: Path = Field(description="PEM certificate chain")
    key: Path = Field(description="PEM private key")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    tls: TlsConfig | None = None
    websocket_max_message_bytes: int = Field(256 * 1024, ge=1024)
    websocket_messages_per_s: float = Field(
        20.0, gt=0, description="sustained messages a browser may send (bursts of twice that are fine)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-For names the real client",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may open the meeting WebSocket besides the "
        "gateway's own; a browser page from any other site is refused (cross-site WebSocket hijacking)",
    )
    join_timeout_s: float = Field(30.0, gt=0, description="a meeting WebSocket that has not joined by then is closed")
    workers: int | Literal["auto"] = Field(
        1, description="worker processes (auto: one per core), supervised by `gateway run`; they share the ports, and "
        "a room's participants on different workers meet through the backplane (README \"Every core\")",
    )
    worker_ports: int = Field(
        0, ge=0, le=65535, description="with workers: worker i also serves everything (API, /metrics) on its own port, "
        "this + i, to reach (scrape) one worker; 0: free ports, listed by GET /api/node",
    )
    sockets_per_address: int = Field(
        50, ge=1, le=100_000, description="meeting WebSockets open at once from one client address (an IPv6 /64)"
    )
    joins_per_minute: int = Field(
        30, ge=1, le=10_000, description="joins one client address (an IPv6 /64) may make per minute; returns to a kept place do not count"
    )


TokenRole = Literal["admin", "operator"]


class AdminTokenConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="who acts with this token (named in logs)")
    token: str = Field(min_length=16)
    role: TokenRole = Field("admin", description="operator: may only read and control live meetings")


class AdminConfig(_Strict):
    token: str | None = Field(
        None, min_length=16, description="Bearer token (role admin) for /api; the API is closed while no token is set"
    )
    tokens: list[AdminTokenConfig] = Field(default_factory=list, description="further named tokens with a role")
    host_link_valid_h: float = Field(
        168.0, gt=0, le=24 * 366, description="how long a signed host link is valid unless the request says otherwise"
    )

    @model_validator(mode="after")
    def _distinct_tokens(self) -> AdminConfig:
        seen = [t.token for t in self.tokens] + ([self.token] if self.token else [])
        if len(set(seen)) != len(seen):
            raise ValueError("two admin tokens are the same")
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("two admin tokens have the same name")
        return self


class OidcConfig(_Strict):
    """Signing in with the town's identity provider (OpenID Connect, authorisation code flow with
    PKCE): administrators and operators on /admin, hosts on the meeting page. Off while `issuer` is
    unset; tokens and PINs work as before either way."""

    issuer: str | None = Field(
        None, description="the provider's issuer URL (Keycloak: https://idp/realms/<realm>); unset: no sign-in"
    )
    client_id: str = Field("", max_length=256, description="the gateway's client id at the provider")
    client_secret: SecretStr | None = Field(None, description="a confidential client's secret (a secret); unset: a public client")
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    claim: str = Field(
        "groups", min_length=1, max_length=128, description="the ID token claim whose values (a list, or one string) give roles"
    )
    admins: list[str] = Field(default_factory=list, description="values of `claim` that make an administrator")
    operators: list[str] = Field(default_factory=list, description="values of `claim` that make an operator")
    hosts: list[str] = Field(
        default_factory=list, description="values of `claim` that make a host in the rooms that allow it (sign_in_hosts)"
    )
    public_url: str | None = Field(
        None,
        description="the gateway's address as browsers reach it (https://meet.example.de), for the redirect "
        "URI registered at the provider (<public_url>/auth/callback); unset: the address of each request",
    )
    session_h: float = Field(8.0, gt=0, le=24 * 7, description="how long a sign-in lasts in its browser tab")
    clock_skew_s: float = Field(60.0, ge=0, le=600, description="tolerated clock difference to the provider")

    @field_serializer("client_secret", when_used="json")
    def _secret(self, secret: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(secret, info)

    @model_validator(mode="after")
    def _complete(self) -> OidcConfig:
        if self.issuer is not None:
            parts = urlsplit(self.issuer)
            loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
                raise ValueError("oidc.issuer must be an https:// URL (plain http only to a provider on this machine)")
            if not self.client_id:
                raise ValueError("oidc.client_id is needed with oidc.issuer")
            if "openid" not in self.scopes:
                raise ValueError("oidc.scopes must include openid")
        return self

    @property
    def enabled(self) -> bool:
        return self.issuer is not None


class StorageConfig(_Strict):
    path: Path | None = Field(
        Path("var/gateway.sqlite3"),
        description="SQLite file for rooms, room systems, rules and call records made through the API; "
        "null keeps them in memory only",
    )
    url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host:port/database (a secret): the nodes of a cluster share it, "
        "and `path` is not used; unset: SQLite at `path`",
    )
    call_records_days: int = Field(
        90, ge=1, le=3650, description="call records older than this are deleted (data minimisation)"
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and urlsplit(url.get_secret_value()).scheme not in ("postgresql", "postgres"):
            raise ValueError("storage.url must be a postgresql:// URL")
        return url

    @field_serializer("url", when_used="json")
    def _secret(self, secret: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(secret, info)


_TOPIC_LEVEL = r"^[^/+#\x00]{1,64}$"


class RecordingConfig(_Strict):
    folder: Path = Field(
        Path("var/recordings"),
        description="where recordings are written (one folder per room; the gateway creates them)",
    )
    retention_days: int = Field(
        30, ge=1, le=3650, description="recordings older than this are deleted, file and entry (data minimisation)"
    )


class MqttConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = Field(False, description="MQTT over TLS (the system's CA certificates)")
    tls_ca: Path | None = Field(None, description="a CA file to trust instead of the system's")
    prefix: str = Field("gateway", pattern=r"^[^+#\x00]{1,128}$", description="first topic level(s)")
    node: str = Field(
        default_factory=socket.gethostname, pattern=_TOPIC_LEVEL,
        description="this gateway's name in topics, and in a shared database (what belongs to this node: its open calls, its recordings)"
    )
    command_token: str | None = Field(
        None, min_length=16, description="commands must carry this token; no commands are taken while unset"
    )
    queue_max: int = Field(1000, ge=1, le=1_000_000, description="events kept while the broker is away")
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _backoff(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_SPAN = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-(([01][0-9]|2[0-3]):([0-5][0-9])|24:00)$")


class OpeningHoursConfig(_Strict):
    """When guests may enter (a virtual citizen office); hosts may always enter."""

    timezone: str = Field("Europe/Berlin", description="IANA time zone of the times below")
    weekly: dict[Weekday, list[str]] = Field(
        default_factory=dict, description='per weekday, spans like "08:00-12:00"; a day not named is closed'
    )
    closed: list[date] = Field(default_factory=list, description="closed days (holidays), YYYY-MM-DD")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _spans(cls, weekly: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in weekly.items():
            for span in spans:
                if not _SPAN.match(span):
                    raise ValueError(f"{day}: {span!r} is not a span like 08:00-12:00")
                start, end = span.split("-")
                if end <= start:
                    raise ValueError(f"{day}: {span!r} ends before it starts")
        return weekly


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class MixerConfig(_Strict):
    tick_ms: Literal[10, 20] = 20
    max_speakers: int = Field(3, ge=1, le=16, description="the N loudest unmuted participants mixed")
    speaker_floor_dbov: int = Field(
        -60, ge=-127, le=0, description="quieter than this never counts as speaking"
    )
    speaker_hangover_ms: int = Field(
        300, ge=0, le=5000, description="a speaker stays in the mix this long after going quiet"
    )
    late_tick_tolerance_ms: float = Field(5.0, gt=0)

    @field_validator("tick_ms", mode="before")
    @classmethod
    def _tick_from_text(cls, value: Any) -> Any:
        # A Literal of ints refuses "10", and text is all GATEWAY_MEDIA__MIXER__TICK_MS can give.
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value)
        return value


class JitterConfig(_Strict):
    min_delay_ms: int = Field(40, ge=0, le=1000)
    max_delay_ms: int = Field(200, ge=20, le=2000)

    @model_validator(mode="after")
    def _ordered(self) -> JitterConfig:
        if self.min_delay_ms > self.max_delay_ms:
            raise ValueError("min_delay_ms must not exceed max_delay_ms")
        return self


class OpusConfig(_Strict):
    bitrate: int = Field(32000, ge=6000, le=510000)
    complexity: int = Field(5, ge=0, le=10)


class WebRtcConfig(_Strict):
    video_codecs: list[Literal["VP8", "H264"]] = Field(
        default_factory=lambda: list[Literal["VP8", "H264"]](["VP8", "H264"]),
        description="offered to browsers in this order; the first common one is forwarded untouched",
    )
    ice_servers: list[str] = Field(default_factory=list, description="stun:/turn: URLs")
    negotiation_timeout_s: float = Field(15.0, gt=0)
    video_slots: int = Field(
        8, ge=0, le=25, description="other participants' videos a browser receives at once (speakers first)"
    )
    reconnect_grace_s: float = Field(
        30.0, ge=0, description="a browser that lost its connection keeps its place (and mute state) this long"
    )


class ClusterConfig(_Strict):
    """Several nodes behind a front (README "More machines")."""

    secret: SecretStr | None = Field(
        None,
        description="the same on every node (a secret, 32 characters or more): signs the browsers' resume tokens, so "
        "another node takes a browser back after a failover with its name, role and mute state; unset: a key of this "
        "node's store (a browser resumes on this node, also after a restart)",
    )
    resume_valid_s: float = Field(
        60.0, ge=30, le=3600,
        description="a resume token taken by another node is this fresh at most (browsers get a new one at every ping, 20 s)",
    )
    backplane: str | None = Field(
        None, pattern=r"^[^\s:]+:\d{1,5}$",
        description="host:port where this node takes other nodes' backplane (TCP: control, UDP: the same port for "
        "media in SRTP): the participants of one room on several nodes meet through it. Needs the secret; unset: off",
    )
    peers: list[str] = Field(
        default_factory=list, max_length=64,
        description="the other nodes' backplane addresses (host:port); this node dials each, and keeps dialling",
    )

    @model_validator(mode="after")
    def _backplane_needs_secret(self) -> ClusterConfig:
        if self.backplane is not None and self.secret is None:
            raise ValueError("the backplane needs cluster.secret (the nodes prove it to each other and key SRTP with it)")
        for peer in self.peers:
            host, _, port = peer.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"a peer must be host:port, not {peer!r}")
        return self

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 32:
            raise ValueError("the cluster secret must have 32 characters or more")
        return secret

    @field_serializer("secret", when_used="json")
    def _secret(self, secret: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(secret, info)


class VideoOutputConfig(_Strict):
    """A size, rate and bitrate of the composed picture."""

    width: int = Field(1280, ge=160, le=1920, multiple_of=16, description="the most any room system gets")
    height: int = Field(720, ge=90, le=1080, multiple_of=2)
    fps: int = Field(30, ge=5, le=30)
    bitrate_kbps: int = Field(1500, ge=64, le=8000, description="at the full size and rate; less where the far end asks")


class ComposedVideoConfig(VideoOutputConfig):
    """The composed picture legs that take one video stream (room systems) receive."""

    speaker_hold_s: float = Field(
        2.0, ge=0, le=30, description="the large picture stays on a speaker at least this long (no flicker)"
    )


class MediaConfig(_Strict):
    mixer: MixerConfig = Field(default_factory=MixerConfig)
    composed: ComposedVideoConfig = Field(default_factory=ComposedVideoConfig)
    jitter: JitterConfig = Field(default_factory=JitterConfig)
    opus: OpusConfig = Field(default_factory=OpusConfig)


class LobbyConfig(_Strict):
    default_wait_s: float = Field(
        120.0, gt=0, description="wait estimate per queue position before any admission was measured"
    )
    max_waiting: int = Field(200, ge=1, le=10_000, description="people one room's waiting room holds at most")


class SecurityConfig(_Strict):
    pin_max_failures: int = Field(5, ge=1, le=100, description="wrong PINs from one address before it is locked out")
    pin_failure_window_s: float = Field(600.0, gt=0, description="wrong PINs older than this are forgotten")
    pin_lockout_s: float = Field(900.0, gt=0, description="how long a locked-out address must wait")
    room_pin_max_failures: int = Field(
        20, ge=1, le=10_000, description="wrong PINs for one room, from anyone, before PIN entry pauses for it"
    )
    room_pin_window_s: float = Field(600.0, gt=0, description="window of room_pin_max_failures")
    room_pin_pause_s: float = Field(
        120.0, gt=0, description="how long a room takes no PINs after too many wrong ones (kept short: "
        "a guesser must not keep a room's callers out for long)"
    )


class AdmissionConfig(_Strict):
    """New calls and browsers are refused (SIP 503 with Retry-After, a message on the page) while the
    process is overloaded or the node drains; meetings in progress keep their media."""

    max_loop_lag_ms: float = Field(
        150.0, gt=0, description="refuse new participants while the event loop runs this late (smoothed over seconds)"
    )
    max_cpu: float = Field(
        0.9, gt=0, le=1.0, description="refuse new participants while the event loop's thread uses this share of its core"
    )
    retry_after_s: int = Field(30, ge=1, le=3600, description="Retry-After of the 503")
    drain_deadline_s: float = Field(
        3600.0, gt=0, le=7 * 86400,
        description="a drain (gateway drain, POST /api/node/drain) ends the meetings still running after this "
        "long, unless it names its own deadline",
    )


class SipTlsConfig(TlsConfig):
    port: int = Field(5061, ge=0, le=65535, description="SIP over TLS listens here when a certificate is set")


class SipKeysConfig(_Strict):
    """Phone keys during a meeting: a star (or hash) and a digit, or a single key."""

    self_mute: str = Field("*6", pattern=r"^[*#]?[0-9*#]$", description="toggles one's own microphone")
    hand: str = Field("*1", pattern=r"^[*#]?[0-9*#]$", description="raises or lowers the hand")
    mute_all: str = Field("*5", pattern=r"^[*#]?[0-9*#]$", description="hosts: mutes or unmutes all guests")
    lock: str = Field("*7", pattern=r"^[*#]?[0-9*#]$", description="hosts: locks or unlocks the meeting")

    @model_validator(mode="after")
    def _distinct(self) -> SipKeysConfig:
        keys = [self.self_mute, self.hand, self.mute_all, self.lock]
        if len(set(keys)) != len(keys):
            raise ValueError("every phone key must be different")
        return self


SipTransport = Literal["udp", "tcp"]
SipCodec = Literal["opus", "G722", "PCMA", "PCMU"]
_SIP_TRANSPORTS: tuple[SipTransport, ...] = ("udp", "tcp")
_SIP_CODECS: tuple[SipCodec, ...] = ("opus", "G722", "PCMA", "PCMU")


_HOST_PORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?$"
_SIP_USER = r"^[A-Za-z0-9+._~!$&'()*,;=-]{1,64}$"


RouteHeader = Literal["p_called_party_id", "request_uri", "to", "diversion"]
_ROUTE_HEADERS: tuple[RouteHeader, ...] = ("p_called_party_id", "request_uri", "to", "diversion")


MASKED_SECRET = "**********"  # (a secret as the API shows it: set, not said)


def secret_out(secret: SecretStr | None, info: SerializationInfo) -> str | None:
    """A password in JSON: masked, except where the configuration is stored (context {"secrets": True})."""
    if secret is None:
        return None
    context = info.context or {}
    return secret.get_secret_value() if context.get("secrets") else MASKED_SECRET


class TrunkConfig(_Strict):
    """A carrier's SIP trunk or the town's PBX, which the gateway registers with (and, in later
    parts, places and takes calls through). The password is a secret: never logged, never
    returned by the API."""

    id: str = Field(pattern=ROOM_ID_PATTERN)
    registrar: str = Field(pattern=_HOST_PORT, description="registrar (or peer) host[:port]")
    transport: Literal["udp", "tcp", "tls"] = Field(
        "udp",
        description="udp, tcp or tls (sip: URIs with transport=tls, RFC 5922 checks on the certificate); over tcp and tls "
        "the gateway opens the connection and keeps it (REGISTERs, keep-alives, its calls both ways)",
    )
    outbound_proxy: str | None = Field(
        None,
        pattern=_HOST_PORT,
        description="host[:port] every REGISTER and dial-out of the trunk is sent to (RFC 3263 like the registrar), "
        "with a loose Route to it; the Request-URI stays the registrar's or the callee's",
    )
    tls_ca: Path | None = Field(None, description="tls: PEM CA certificates the far end's must chain to; default: the system's")
    tls_verify: bool = Field(
        True, description="tls: check the far end's certificate (chain and name: the registrar's, or the proxy's, host)"
    )
    domain: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]{1,253}$", description="domain of the address of record; default: the registrar's host")
    user: str = Field(pattern=_SIP_USER, description="the trunk's user (often its number)")
    auth_user: str | None = Field(None, pattern=_SIP_USER, description="digest user name, if not `user`")
    password: SecretStr | None = Field(None, description="digest password (a secret)")
    realm: str | None = Field(None, max_length=128, description="answer only challenges of this realm")
    registers: bool = Field(True, description="keep a registration up (off: a peer that knows our address)")
    expires_s: int = Field(600, ge=10, le=86400, description="registration expiry asked for (the registrar may grant less)")
    keepalive_s: int = Field(
        30,
        ge=0,
        le=3600,
        description="while registered, a keep-alive this often (0: none): OPTIONS over udp, a CRLF ping over tcp/tls "
        "(RFC 5626 4.4.1); unanswered (or the connection lost): register again at once",
    )
    display_name: str = Field(
        "", max_length=64, pattern=r'^[^"\r\n\x00]*$', description="name shown with its REGISTERs and dial-outs (default on dial-outs: the room's)"
    )
    caller_id: str | None = Field(
        None,
        pattern=r"^\+?[0-9]{2,20}$",
        description="the number dial-outs through this trunk present (From and P-Preferred-Identity, RFC 3325), e.g. the "
        "town's main number; default: `user`. Nothing else of the call (a host's extension, a participant's number) is sent",
    )
    country_code: str = Field("49", pattern=r"^[1-9][0-9]{0,2}$", description="numbers the trunk delivers are normalised to E.164 with it")
    national_prefix: str = Field("0", pattern=r"^[0-9]{0,2}$", description="starts a national number (0 in Germany)")
    international_prefix: str = Field("00", pattern=r"^[0-9]{0,4}$", description="starts an international number (00 in Germany)")
    rooms: list[str] | None = Field(
        None,
        max_length=1000,
        description="the rooms (ids) its calls may reach, by number or in the voice menu; none: any room. A town's "
        "citizen-office line then cannot reach a council's closed session",
    )
    route_by: list[RouteHeader] = Field(
        default_factory=lambda: list(_ROUTE_HEADERS),
        min_length=1,
        description="where a call from this trunk names the number it is for, in order: the first that "
        "reaches a room (as it came or in E.164) wins; none: the caller is asked for the conference ID",
    )

    def _host_port(self) -> tuple[str, int]:
        text = self.registrar
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            return host, int(rest[1:]) if rest.startswith(":") else 5060
        host, colon, port = text.partition(":")
        return host, int(port) if colon else 5060

    @field_serializer("password", when_used="json")
    def _password_out(self, password: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(password, info)

    @property
    def registrar_host(self) -> str:
        return self._host_port()[0]

    @property
    def registrar_port(self) -> int:
        return self._host_port()[1]

    @property
    def registrar_explicit_port(self) -> int | None:
        """The port `registrar` names, None when it names none (then DNS SRV may say, RFC 3263)."""
        text = self.registrar.rpartition("]")[2] if self.registrar.startswith("[") else self.registrar
        return self.registrar_port if ":" in text else None

    @property
    def next_hop(self) -> tuple[str, int | None]:
        """Where the trunk's requests go, (host, port or None: RFC 3263 may say): the outbound proxy, else the registrar."""
        if self.outbound_proxy is None:
            return self.registrar_host, self.registrar_explicit_port
        text = self.outbound_proxy
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            return host, int(rest[1:]) if rest.startswith(":") else None
        host, colon, port = text.partition(":")
        return host, int(port) if colon else None

    @model_validator(mode="after")
    def _port(self) -> TrunkConfig:
        if not 1 <= self.registrar_port <= 65535:
            raise ValueError(f"registrar port {self.registrar_port} out of 1..65535")
        port = self.next_hop[1]
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"outbound_proxy port {port} out of 1..65535")
        if self.tls_ca is not None and not self.tls_ca.is_file():
            raise ValueError(f"tls_ca {str(self.tls_ca)!r} is not a file")
        return self


def _dns_server(text: str) -> tuple[str, int]:
    """A DNS server as written ("192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353"): (address, port)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"DNS server {text!r}: not ip or ip:port")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS server {text!r}: not an IP address (ip or ip:port)") from None
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 1 <= int(port) <= 65535:
        raise ValueError(f"DNS server {text!r}: port out of 1..65535")
    return str(address), int(port)


class SipConfig(_Strict):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="address SIP and RTP listen on")
    port: int = Field(5060, ge=0, le=65535, description="SIP over UDP and TCP; 0 picks a free port")
    transports: list[SipTransport] = Field(default_factory=lambda: list(_SIP_TRANSPORTS))
    tls: SipTlsConfig | None = None
    public_address: str | None = Field(
        None, description="address announced in SDP and Contact when the gateway is behind NAT"
    )
    rtp_port_min: int = Field(20000, ge=1024, le=65534)
    rtp_port_max: int = Field(39999, ge=1025, le=65535)
    codecs: list[SipCodec] = Field(
        default_factory=lambda: list(_SIP_CODECS),
        description="audio codecs taken, in the order used when prefer_our_codecs is set",
    )
    prefer_our_codecs: bool = Field(
        False, description="pick by our order instead of the caller's (RFC 3264 lets the answerer choose)"
    )
    menu: bool = Field(True, description="callers to an unknown number are asked for the conference number")
    language: Literal["de", "en"] = Field("de", description="prompts for rooms that set none, and for the menu")
    pin_attempts: int = Field(3, ge=1, le=10, description="wrong PINs (or conference numbers) before hanging up")
    digit_timeout_s: float = Field(5.0, gt=0, description="entry ends this long after the last key")
    entry_timeout_s: float = Field(20.0, gt=0, description="a prompt waits this long for the first key")
    keys: SipKeysConfig = Field(default_factory=SipKeysConfig)
    user_agent: str = "meeting-gateway"
    max_calls: int = Field(
        250, ge=1, le=10000, description="calls at once; one process carries about 250 G.711 legs (bench/sip_legs.py)"
    )
    srtp: Literal["optional", "required"] = Field(
        "optional", description="required: calls without SDES-SRTP are refused with 488 (room systems may set their own)"
    )
    rtp_latching: Literal["strict", "learn"] = Field(
        "learn",
        description="strict: RTP only from the address the SDP names; learn: also from the first source seen in "
        "rtp_learn_s after the answer (callers behind NAT); packets from anywhere else are dropped and counted",
    )
    rtp_learn_s: float = Field(3.0, gt=0, le=60, description="learning window of rtp_latching: learn")
    trunk_sources: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of carrier or PBX trunks: their callers are told apart by "
        "their From number for PIN lockouts, not by the trunk's address",
    )
    trunk_srtp: Literal["optional", "required"] | None = Field(
        None, description="overrides sip.srtp for calls from trunk_sources"
    )
    trunks: list[TrunkConfig] = Field(default_factory=list, description="trunks the gateway registers with")
    dns_servers: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="DNS servers for SIP host names (RFC 3263: NAPTR, SRV, A), each \"ip\" or \"ip:port\" "
        "(\"[v6]:port\"); none: the system's (/etc/resolv.conf; addresses also from /etc/hosts)",
    )
    caller_numbers: Literal["masked", "full"] = Field(
        "masked",
        description="a phone caller without a name, as the other participants see it: masked (+49 170 ••••• 78) or "
        "full; administrators always see the whole number, and a withheld one (Privacy: id) is never shown",
    )
    max_calls_per_source: int = Field(
        20, ge=1, le=10000, description="calls at once from one address (not counting trunk_sources): one "
        "caller or bot cannot take every line"
    )
    max_transactions: int = Field(
        10_000, ge=100, le=1_000_000, description="SIP server transactions remembered at once (bounded memory)"
    )
    tcp_max_connections: int = Field(2000, ge=1, le=100_000, description="SIP TCP/TLS connections at once")
    tcp_max_per_address: int = Field(32, ge=1, le=10_000, description="SIP TCP/TLS connections from one address")
    tcp_idle_s: float = Field(
        300.0, gt=0, description="a SIP TCP/TLS connection that carries no call and sends nothing for this long is closed"
    )
    session_expires_s: int = Field(
        1800, ge=90, le=86400, description="session timer our dial-outs ask for (RFC 4028; the far end may choose less)"
    )
    min_session_expires_s: int = Field(
        90, ge=90, le=86400, description="shortest session timer we take (RFC 4028 Min-SE; shorter asks get 422)"
    )
    realm: str = Field(
        "meeting-gateway",
        pattern=r"^[A-Za-z0-9.:_-]{1,64}$",
        description="digest realm of the gateway's challenges (room systems registering with a password)",
    )
    challenge_untrusted: bool = Field(
        False,
        description="calls from anywhere but a trunk or a directory room system recognised by its address must prove a "
        "directory entry's password (digest): only devices with credentials may call",
    )
    registrar_digest: list[Literal["MD5", "SHA-256"]] = Field(
        default_factory=lambda: ["MD5"],  # type: ignore[arg-type]
        min_length=1,
        max_length=2,
        description="digest algorithms offered to room systems registering, in this order (RFC 8760: a client takes the "
        "first it supports). MD5 alone by default: many room systems and older SIP stacks (libre 1.x, so baresip "
        "1.0) give up on a REGISTER at any challenge they cannot answer; [SHA-256, MD5] where every device copes",
    )
    dial_out_per_minute: int = Field(10, ge=1, le=10_000, description="dial-outs one actor may place per minute")
    dial_out_per_minute_total: int = Field(60, ge=1, le=100_000, description="dial-outs per minute in all")
    dial_out_allow: list[str] = Field(
        default_factory=list,
        description="regular expressions (RE2 syntax: linear time) a whole dial-out SIP URI must match after normalisation; none: no dial-out (toll fraud)",
    )
    media_timeout_s: float = Field(
        60.0, ge=5, description="a call whose RTP stops this long (not on hold) is ended: the caller is gone"
    )
    video: bool = Field(
        True, description="room systems send and receive video (H.264, VP8); false: every video line is declined"
    )
    video_codecs: list[Literal["H264", "VP8"]] = Field(
        default_factory=lambda: list[Literal["H264", "VP8"]](["H264", "VP8"]),
        description="video codecs taken from room systems and offered to them, in this order",
    )
    video_max_kbps: int = Field(
        2048, ge=64, le=20_000, description="video bandwidth of a room system's call (b=AS), both ways at most"
    )

    @field_validator("trunk_sources")
    @classmethod
    def _networks(cls, sources: list[str]) -> list[str]:
        for source in sources:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {source!r}") from None
        return sources

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, servers: list[str]) -> list[str]:
        for server in servers:
            _dns_server(server)
        return servers

    @property
    def dns_server_addresses(self) -> list[tuple[str, int]]:
        """sip.dns_servers as (address, port)."""
        return [_dns_server(server) for server in self.dns_servers]

    @field_validator("dial_out_allow")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        return _dial_out_rules(patterns)

    @model_validator(mode="after")
    def _port_range(self) -> SipConfig:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 3 (RTP and RTCP take a pair)")
        return self

    @field_validator("trunks")
    @classmethod
    def _unique_trunks(cls, trunks: list[TrunkConfig]) -> list[TrunkConfig]:
        seen: set[str] = set()
        for trunk in trunks:
            if trunk.id in seen:
                raise ValueError(f"trunk id {trunk.id!r} is defined twice")
            seen.add(trunk.id)
            if trunk.registers and trunk.password is None:
                raise ValueError(f"trunk {trunk.id!r} registers but has no password")
        return trunks


class RoomConfig(_Strict):
    id: str = Field(pattern=ROOM_ID_PATTERN)
    name: str | None = None
    host_pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")
    guest_pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")
    lobby: bool = False
    locked: bool = False
    max_participants: int = Field(100, ge=1, le=1000)
    aliases: list[str] = Field(default_factory=list, description="SIP user parts and numbers that dial this room")
    language: Literal["de", "en"] | None = Field(None, description="prompt language (default: sip.language)")
    opening_hours: OpeningHoursConfig | None = Field(None, description="none: always open")
    layout: Literal["speaker", "grid"] = Field(
        "speaker",
        description="the composed picture room systems see: the active speaker large with a strip of "
        "the others, or a grid (a host may change it during the meeting)",
    )
    presenters: Literal["everyone", "hosts"] = Field(
        "everyone",
        description="who may present (share a screen, send slides): everyone, or hosts and trusted room systems only",
    )
    sign_in_hosts: bool = Field(
        False,
        description="staff in oidc.hosts who sign in on the meeting page become hosts here without the host PIN",
    )
    recording: Literal["allowed", "automatic", "forbidden"] = Field(
        "allowed",
        description="whether hosts and administrators may record the meeting; automatic: it is recorded "
        "from the first participant on; forbidden: never (everyone is told while it is recorded)",
    )
    streaming: Literal["allowed", "automatic", "forbidden"] = Field(
        "allowed",
        description="whether the meeting may be streamed live to stream_url; automatic: from the first "
        "participant on; forbidden: never",
    )
    broadcast_video: VideoOutputConfig | None = Field(
        None,
        description="the recording's and live stream's picture (H.264): size, rate and bitrate; default "
        "media.composed's (then room systems that take the same share its encode)",
    )
    stream_url: SecretStr | None = Field(
        None,
        description="the live stream's ingest, rtmp:// or rtmps:// with its stream key (a secret: never "
        "shown, never logged)",
    )

    @field_validator("stream_url")
    @classmethod
    def _stream_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            text = url.get_secret_value()
            if not (text.startswith(("rtmp://", "rtmps://")) and text.isprintable() and " " not in text):
                raise ValueError("stream_url must be an rtmp:// or rtmps:// URL")  # (never the URL itself)
            if len(text) > 1024:
                raise ValueError("stream_url is longer than 1024 characters")
        return url

    @field_serializer("stream_url", when_used="json")
    def _stream_url_out(self, url: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(url, info)

    @field_validator("aliases")
    @classmethod
    def _aliases_distinct(cls, aliases: list[str]) -> list[str]:
        for alias in aliases:
            if not alias or len(alias) > 128 or any(c.isspace() or c in "<>" for c in alias):
                raise ValueError(f"alias {alias!r} must be a SIP user part or number (no spaces, < or >)")
        lowered = [a.lower() for a in aliases]
        if len(set(lowered)) != len(lowered):
            raise ValueError("an alias is listed twice")
        return aliases

    @field_validator("guest_pin")
    @classmethod
    def _pins_differ(cls, guest_pin: str | None, info: ValidationInfo) -> str | None:
        # A validator of guest_pin (checked after host_pin, so info.data holds a valid host_pin)
        # rather than of the whole room: the error then points at the line that has to change.
        if guest_pin is not None and guest_pin == info.data.get("host_pin"):
            raise ValueError("host_pin and guest_pin must differ, or guests would become hosts")
        return guest_pin




class RoomSystemConfig(_Strict):
    """A room system the gateway knows (directory): to call it, and to recognise it when it calls."""

    id: str = Field(pattern=ROOM_ID_PATTERN)
    name: str = Field(min_length=1, max_length=128)
    uri: str = Field(
        pattern=r"^(?:sips?:[^\s@<>]+@[^\s@<>]+|h323:[^\s<>]+)$",
        max_length=256,
        description="sip:user@host[:port][;params], or h323:[alias]@host[:port] for an H.323 room system "
        "(password, auth_user, challenge_calls and srtp are SIP's: an H.323 one is recognised by its address)",
    )
    trusted: bool = Field(
        False,
        description="skips the lobby and the PIN when it calls its own (default) room from the address its URI "
        "names (a host name is resolved when the entry is saved and refreshed); the From header alone never counts",
    )
    default_room: str | None = Field(None, pattern=ROOM_ID_PATTERN, description="its own room")
    srtp: Literal["optional", "required"] | None = Field(None, description="overrides sip.srtp for its calls")
    password: SecretStr | None = Field(
        None,
        max_length=128,
        description="with a password it may register with the gateway (digest; dial-outs to it go where it "
        "registered from). A secret: never logged; the API shows it as ********** (send that back to keep it, "
        "an empty string to remove it)",
    )
    auth_user: str | None = Field(
        None, pattern=_SIP_USER, description="digest user name it registers with (default: its URI's user part)"
    )
    challenge_calls: bool = Field(
        False,
        description="a call whose From names it must answer a digest challenge with its password (a forged From "
        "then gets nowhere); needs a password",
    )

    @model_validator(mode="after")
    def _challenge_needs_password(self) -> RoomSystemConfig:
        if self.challenge_calls and self.password is None:
            raise ValueError("challenge_calls needs a password")
        return self

    @property
    def register_user(self) -> str:
        """The user name it registers and authenticates with."""
        return self.auth_user or self.uri.partition(":")[2].rpartition("@")[0].split(";", 1)[0]

    @field_serializer("password", when_used="json")
    def _password_out(self, password: SecretStr | None, info: SerializationInfo) -> str | None:
        return secret_out(password, info)


class RoutingRuleConfig(_Strict):
    """An ordered rule: a called alias matching `pattern` (whole alias, case-insensitive) goes to `room`.

    Patterns are RE2 syntax, matched in linear time (no backreferences or lookaround: refused when
    written); an alias longer than 128 characters matches no rule."""

    id: str = Field(pattern=ROOM_ID_PATTERN)
    pattern: str = Field(
        min_length=1,
        max_length=512,
        description="RE2 regular expression (no backreferences or lookaround), matched against the whole alias",
    )
    room: str = Field(
        min_length=1, max_length=128, description=r"room id; \1 or \g<name> take the pattern's groups"
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        # Compiled as calls run it (RE2, linear time): what RE2 refuses (backreferences, lookaround)
        # is refused here, when the rule is written, not when a call comes.
        try:
            compiled = compile_rule(pattern, ignore_case=True)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        if compiled.groups > MAX_GROUPS:
            raise ValueError(f"at most {MAX_GROUPS} groups")
        return pattern

    @model_validator(mode="after")
    def _template(self) -> RoutingRuleConfig:
        try:
            parse_template(self.room, compile_rule(self.pattern, ignore_case=True))
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return self


class GatekeeperConfig(_Strict):
    """The gatekeeper the gateway registers with (RAS, H.225.0 7): the rooms' ids and aliases as its
    aliases, `prefixes` as number ranges routed to it; calls are admitted (ARQ) while registered."""

    address: str = Field(description="host or host:port of the gatekeeper's RAS (UDP, port 1719 by default)")
    identifier: str | None = Field(None, max_length=128, description="its gatekeeperIdentifier, if it wants one named")
    discover: bool = Field(False, description="send GatekeeperRequest first (the answer names its RAS address)")
    ras_port: int = Field(1719, ge=0, le=65535, description="our RAS port (UDP); 0 picks a free one")
    time_to_live_s: int = Field(300, ge=30, le=86_400, description="registration lifetime asked for")
    prefixes: list[str] = Field(default_factory=list, max_length=64, description="number prefixes routed to the gateway")

    @field_validator("prefixes")
    @classmethod
    def _digits(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not prefix or len(prefix) > 32 or not all(c in "0123456789#*," for c in prefix):
                raise ValueError(f"prefix {prefix!r} is not 1 to 32 dialled digits (0-9 # * ,)")
        return prefixes


H323Codec = Literal["G722", "PCMA", "PCMU"]
_H323_CODECS: list[H323Codec] = ["G722", "PCMA", "PCMU"]


def _dial_out_rules(patterns: list[str]) -> list[str]:
    """Dial-out rules as the check runs them (RE2, gateway.rooms.patterns: linear time on any
    address); ValueError naming the first that does not compile."""
    for pattern in patterns:
        try:
            compile_rule(pattern)
        except PatternError as exc:
            raise ValueError(f"{pattern!r}: {exc}") from None
    return patterns


class H323Config(_Strict):
    """H.323 room systems (gateway/h323/): call signalling on TCP (H.225.0), H.245 tunnelled or on
    its own connection. RTP ports come from sip.rtp_port_min..max, the voice menu's settings
    (language, PIN attempts, timeouts, keys, media timeout) from sip."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="address H.323 call signalling and H.245 listen on")
    port: int = Field(1720, ge=0, le=65535, description="H.225.0 call signalling (TCP); 0 picks a free port")
    public_address: str | None = Field(
        None, description="address written into H.245 and fastStart (default: host)"
    )
    fast_start: bool = Field(True, description="answer fastStart proposals (media set up with the Setup)")
    tunnelling: bool = Field(True, description="H.245 tunnelled in H.225.0 messages where the caller offers it")
    codecs: list[H323Codec] = Field(
        default_factory=lambda: list(_H323_CODECS), min_length=1, description="audio, in our order of preference"
    )
    prefer_our_codecs: bool = Field(False, description="pick from fastStart by our order rather than the caller's")
    video: bool = Field(True, description="H.264 video both ways")
    video_max_kbps: int = Field(2048, ge=64, le=20_000, description="the most we ask room systems to send")
    content: bool = Field(
        True, description="H.239 presentation (a second H.264 channel and its token) with video on"
    )
    h245_port_min: int = Field(0, ge=0, le=65535, description="H.245 connections we listen for: lowest port (0: any free)")
    h245_port_max: int = Field(0, ge=0, le=65535, description="H.245 connections we listen for: highest port")
    max_calls: int = Field(200, ge=1, le=10_000, description="H.323 calls at once")
    max_calls_per_source: int = Field(
        10, ge=1, le=10_000, description="calls at once from one address (a gatekeeper's or MCU's address may need more)"
    )
    max_connections: int = Field(1000, ge=1, le=100_000, description="signalling connections at once, idle ones included")
    setup_timeout_s: float = Field(10.0, gt=0, le=120, description="a connection must bring its Setup within this")
    gatekeeper: GatekeeperConfig | None = Field(None, description="none: direct calls only, no registration")
    dial_out_allow: list[str] = Field(
        default_factory=list,
        description="regular expressions (RE2 syntax: linear time) a whole dial-out h323: URL must match after "
        "normalisation (h323:alias@host:port); none: only the directory's room systems are called (toll fraud). "
        "The rates are sip.dial_out_per_minute and dial_out_per_minute_total, shared by both protocols",
    )

    @field_validator("dial_out_allow")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        return _dial_out_rules(patterns)

    @model_validator(mode="after")
    def _h245_range(self) -> H323Config:
        if (self.h245_port_min == 0) != (self.h245_port_max == 0) or self.h245_port_max < self.h245_port_min:
            raise ValueError("h245_port_min and h245_port_max: both 0 (any free port), or a range low to high")
        return self

    @property
    def h245_ports(self) -> tuple[int, int] | None:
        return (self.h245_port_min, self.h245_port_max) if self.h245_port_min else None


class GatewayConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid"
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig)
    lobby: LobbyConfig = Field(default_factory=LobbyConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    sip: SipConfig = Field(default_factory=SipConfig)
    h323: H323Config = Field(default_factory=H323Config)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    oidc: OidcConfig = Field(default_factory=OidcConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    rooms: list[RoomConfig] = Field(default_factory=list)

    @field_validator("rooms")
    @classmethod
    def _unique_rooms(cls, rooms: list[RoomConfig]) -> list[RoomConfig]:
        # A ValidationError raised here is merged into the outer one with its locations taken as
        # relative to `rooms`, so each duplicate is reported at its own `rooms[i].id` (and line).
        first: dict[str, int] = {}
        duplicates: list[InitErrorDetails] = []
        for index, room in enumerate(rooms):
            if room.id in first:
                problem = PydanticCustomError(
                    "duplicate_room_id",
                    "room id '{room_id}' is defined twice (first at rooms[{first}])",
                    {"room_id": room.id, "first": first[room.id]},
                )
                duplicates.append({"type": problem, "loc": (index, "id"), "input": room.id})
            first.setdefault(room.id, index)
        if duplicates:
            raise ValidationError.from_exception_data(cls.__name__, duplicates)
        return rooms

    @model_validator(mode="after")
    def _workers_share_a_store(self) -> GatewayConfig:
        if self.server.workers != 1 and self.storage.path is None and self.storage.url is None:
            raise ValueError(
                "server.workers: the workers share one store (what the API changes, call records): "
                "storage.path must name a file, or set storage.url"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return env_settings, init_settings
