"""Pydantic models of the whole configuration: one YAML file, overridable by GATEWAY_* variables.

Environment overrides use `__` between levels, e.g. `GATEWAY_SERVER__PORT=9000` or
`GATEWAY_ADMIN__TOKEN=...`; they win over the file.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from gateway.rooms.patterns import MAX_GROUPS, PatternError, compile_rule, parse_template

ROOM_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

_ENV_PREFIX = "GATEWAY_"
_ENV_DELIMITER = "__"


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


class StorageConfig(_Strict):
    path: Path | None = Field(
        Path("var/gateway.sqlite3"),
        description="SQLite file for rooms, room systems, rules and call records made through the API; "
        "null keeps them in memory only",
    )
    call_records_days: int = Field(
        90, ge=1, le=3650, description="call records older than this are deleted (data minimisation)"
    )


_TOPIC_LEVEL = r"^[^/+#\x00]{1,64}$"


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
        default_factory=socket.gethostname, pattern=_TOPIC_LEVEL, description="this gateway's name in topics"
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


class MediaConfig(_Strict):
    mixer: MixerConfig = Field(default_factory=MixerConfig)
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
    process is overloaded; meetings in progress keep their media."""

    max_loop_lag_ms: float = Field(
        150.0, gt=0, description="refuse new participants while the event loop runs this late (smoothed over seconds)"
    )
    max_cpu: float = Field(
        0.9, gt=0, le=1.0, description="refuse new participants while the event loop's thread uses this share of its core"
    )
    retry_after_s: int = Field(30, ge=1, le=3600, description="Retry-After of the 503")


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
    dial_out_per_minute: int = Field(10, ge=1, le=10_000, description="dial-outs one actor may place per minute")
    dial_out_per_minute_total: int = Field(60, ge=1, le=100_000, description="dial-outs per minute in all")
    dial_out_allow: list[str] = Field(
        default_factory=list,
        description="regular expressions (RE2 syntax: linear time) a whole dial-out SIP URI must match after normalisation; none: no dial-out (toll fraud)",
    )
    media_timeout_s: float = Field(
        60.0, ge=5, description="a call whose RTP stops this long (not on hold) is ended: the caller is gone"
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

    @field_validator("dial_out_allow")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        # RE2, as the dial-out check runs them (gateway.rooms.patterns): linear time on any URI.
        for pattern in patterns:
            try:
                compile_rule(pattern)
            except PatternError as exc:
                raise ValueError(f"{pattern!r}: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _port_range(self) -> SipConfig:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 3 (RTP and RTCP take a pair)")
        return self


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
    uri: str = Field(pattern=r"^sips?:[^\s@<>]+@[^\s@<>]+$", max_length=256, description="sip:user@host[:port][;params]")
    trusted: bool = Field(
        False,
        description="skips the lobby and the PIN when it calls its own (default) room from the address its URI "
        "names (a host name is resolved when the entry is saved and refreshed); the From header alone never counts",
    )
    default_room: str | None = Field(None, pattern=ROOM_ID_PATTERN, description="its own room")
    srtp: Literal["optional", "required"] | None = Field(None, description="overrides sip.srtp for its calls")


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


class GatewayConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX, env_nested_delimiter=_ENV_DELIMITER, extra="forbid"
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
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
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


class _FileOnlyConfig(GatewayConfig):
    """GatewayConfig without the environment, to still check the file while the environment is unusable."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass(frozen=True)
class ConfigError:
    """One problem in the configuration, located as precisely as the file (or environment) allows.

    `env_var` names the GATEWAY_* variable the problem comes from (then `line` is None); when it is
    the `path` itself, the variable as such is wrong (it names no setting, or is not JSON).
    """

    path: str
    line: int | None
    message: str
    env_var: str | None = None

    def __str__(self) -> str:
        if self.env_var is None:
            where = f"{self.path}" + (f" (line {self.line})" if self.line else "")
        elif self.env_var == self.path:
            where = f"{self.path} (environment)"
        else:
            where = f"{self.path} (from environment {self.env_var})"
        return f"{where}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, source: str, errors: Sequence[ConfigError]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__(f"{source}: {len(self.errors)} error(s)")


_Path = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"

# GATEWAY_INTERFACE is CGI's (set by web servers for their scripts); GATEWAY_URL and GATEWAY_TOKEN
# are the admin CLI's (which API, which token), not settings of the gateway itself.
_NOT_SETTINGS = frozenset({"GATEWAY_INTERFACE", "GATEWAY_URL", "GATEWAY_TOKEN"})

_ENV_EXAMPLE = f"{_ENV_PREFIX}SERVER{_ENV_DELIMITER}PORT"


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _read_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for lines), from one parse."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        # Constructing also resolves merge keys (`<<: *base`) in the node tree, so the lines of
        # merged keys are found like any other.
        return (loader.construct_document(root) if root is not None else None), root
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    """A syntax error naming the file, line and column, on one line (the CLI prints one per error):
    PyYAML's own text says `in "<unicode string>"` and quotes the offending line below.
    """
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "syntax error"
        if mark is not None:
            message += f" ({source}, line {mark.line + 1}, column {mark.column + 1})"
        if exc.problem and exc.context:  # e.g. "while parsing a flow mapping" and where it began
            context = exc.context_mark
            at = "" if context is None else f" at line {context.line + 1}, column {context.column + 1}"
            message += f", {exc.context}{at}"
        return ConfigError("(file)", None if mark is None else mark.line + 1, f"not valid YAML: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        # Raised before scanning, so there is no mark; the position counts characters.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        message = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        message += f" ({source}, line {line}, column {column})"
        return ConfigError("(file)", line, f"not valid YAML: {message}")
    return ConfigError("(file)", None, f"not valid YAML ({source}): {' '.join(str(exc).split())}")


def _index_yaml(root: yaml.Node | None) -> tuple[dict[_Path, int], list[ConfigError]]:
    """Maps each key path in the YAML document to its 1-based line; lists keys that are not text."""
    lines: dict[_Path, int] = {}
    errors: list[ConfigError] = []

    def walk(node: yaml.Node, path: _Path, ancestors: frozenset[int]) -> None:
        if id(node) in ancestors:  # a recursive alias (`a: &x [*x]`)
            return
        ancestors |= {id(node)}
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                text = str(key.value) if isinstance(key, yaml.ScalarNode) else key.tag
                child = (*path, text)
                lines[child] = key.start_mark.line + 1
                if key.tag != _STR_TAG:
                    # `1:`, `true:`, `null:` and dates are no setting's name (and would crash
                    # GatewayConfig(**data)); reported here, with the key as written and its line.
                    kind = key.tag.rsplit(":", 1)[-1]
                    message = f"keys must be text, this one is read as {kind}"
                    errors.append(ConfigError(_dotted(child), lines[child], message))
                    continue
                walk(value, child, ancestors)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index), ancestors)

    if root is not None:
        walk(root, (), frozenset())
    return lines, errors


def _drop_non_text_keys(value: Any, ancestors: frozenset[int] = frozenset()) -> None:
    """Removes the keys _index_yaml reported, so that the rest of the file is still checked."""
    if id(value) in ancestors or not isinstance(value, dict | list):
        return
    if isinstance(value, dict):
        for key in [key for key in value if not isinstance(key, str)]:
            del value[key]
    for child in value.values() if isinstance(value, dict) else value:
        _drop_non_text_keys(child, ancestors | {id(value)})


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types of a union (`TlsConfig | None`), or the annotation itself."""
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _settings(model: type[BaseModel], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], bool]:
    """Every setting an environment variable can name (sections and their fields, at any depth),
    mapped to whether its value must be JSON (a section or a list, as pydantic-settings decodes it).
    """
    found: dict[tuple[str, ...], bool] = {}
    for name, field in model.model_fields.items():
        members = _members(field.annotation)
        sections = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        found[(*path, name)] = bool(sections) or any(get_origin(m) in (list, dict) for m in members)
        for section in sections:
            found.update(_settings(section, (*path, name)))
    return found


def _check_environment(environ: Mapping[str, str]) -> tuple[dict[tuple[str, ...], str], list[ConfigError]]:
    """The settings the GATEWAY_* variables override (setting -> variable), and the variables that are
    wrong. pydantic-settings itself silently ignores a name that matches no setting (a typo, or
    `GATEWAY_SERVER_PORT` with one underscore) and crashes on a section that is not JSON.
    """
    settings = _settings(GatewayConfig)
    overrides: dict[tuple[str, ...], str] = {}
    errors: list[ConfigError] = []
    for name in sorted(environ):
        if not name.upper().startswith(_ENV_PREFIX) or name.upper() in _NOT_SETTINGS:
            continue
        # Names are case-insensitive, as for pydantic-settings (case_sensitive=False).
        setting = tuple(name[len(_ENV_PREFIX) :].lower().split(_ENV_DELIMITER))
        if setting not in settings:
            message = f"no such setting; sections are joined with {_ENV_DELIMITER}, e.g. {_ENV_EXAMPLE}"
            names = [_ENV_PREFIX + _ENV_DELIMITER.join(s).upper() for s in settings]
            guess = difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.8)
            if guess and guess[0] != _ENV_EXAMPLE:
                message += f"; did you mean {guess[0]}?"
            errors.append(ConfigError(name, None, message, env_var=name))
            continue
        if settings[setting]:
            try:
                json.loads(environ[name])
            except json.JSONDecodeError as exc:
                message = f"not valid JSON ({exc.msg}, column {exc.colno}); a section or list is set as JSON"
                errors.append(ConfigError(name, None, message, env_var=name))
                continue
        overrides[setting] = name
    return overrides, errors


def _common_prefix(a: Sequence[str | int], b: Sequence[str | int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _located(
    loc: _Path, lines: dict[_Path, int], overrides: dict[tuple[str, ...], str]
) -> tuple[int | None, str | None, list[str]]:
    """Where an error at `loc` comes from: its line in the file, or else the environment variable(s);
    plus the variables that set something inside `loc` (e.g. one bound of media.jitter).
    """
    # pydantic appends validator names (e.g. a union member) after the real path
    depth = next(cut for cut in range(len(loc), -1, -1) if loc[:cut] in lines or cut == 0)
    reach = {name: _common_prefix(setting, loc) for setting, name in overrides.items()}
    # The value itself, or the JSON section holding it, came from a variable.
    exact = [setting for setting, name in overrides.items() if reach[name] == len(setting)]
    if exact:
        return None, overrides[max(exact, key=len)], []
    # Otherwise variables count only where they go deeper than the file: a missing
    # server.tls.key is the fault of GATEWAY_SERVER__TLS__CERT when the file has no tls section.
    deepest = max(reach.values(), default=0)
    if deepest > depth:
        return None, ", ".join(name for name in reach if reach[name] == deepest), []
    return lines.get(loc[:depth]), None, [name for name in reach if reach[name] == len(loc)]


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parses and validates YAML text and the GATEWAY_* variables; raises ConfigInvalid listing
    every error with its path, and its line or variable.
    """
    overrides, env_errors = _check_environment(os.environ)
    try:
        data, root = _read_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigInvalid(source, [_yaml_error(exc, text, source), *env_errors]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        error = ConfigError("(top level)", 1, "must be a mapping of sections")
        raise ConfigInvalid(source, [error, *env_errors])
    lines, errors = _index_yaml(root)
    _drop_non_text_keys(data)
    # With broken variables the combination is not what the user meant; the file is still checked.
    model = _FileOnlyConfig if env_errors else GatewayConfig
    try:
        config = model(**data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line, env_var, inside = _located(loc, lines, overrides if model is GatewayConfig else {})
            msg = re.sub(r"^Value error, ", "", err["msg"])
            if inside:
                msg += f" (with {', '.join(inside)} from the environment)"
            errors.append(ConfigError(_dotted(loc), line, msg, env_var))
    except SettingsError as exc:  # _check_environment should leave nothing for this
        errors.append(ConfigError("(environment)", None, str(exc)))
    errors += env_errors
    if errors:
        raise ConfigInvalid(source, errors)
    return config


def load_config(path: str | Path) -> GatewayConfig:
    """Reads and parses a UTF-8 YAML file; every problem, including an unreadable file, is ConfigInvalid."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        error = ConfigError("(file)", None, f"cannot read: {exc.strerror}")
        raise ConfigInvalid(str(path), [error]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded); save the file as UTF-8"
        raise ConfigInvalid(str(path), [ConfigError("(file)", line, message)]) from None
    return parse_config(text, str(path))
