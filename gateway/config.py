"""Pydantic models of the whole configuration: one YAML file, overridable by GATEWAY_* variables.

Environment overrides use `__` between levels, e.g. `GATEWAY_SERVER__PORT=9000` or
`GATEWAY_ADMIN__TOKEN=...`; they win over the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ROOM_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


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


class AdminConfig(_Strict):
    token: str | None = Field(
        None, min_length=16, description="Bearer token for /api; the API is closed while unset"
    )


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
        default_factory=lambda: ["VP8", "H264"],
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


class RoomConfig(_Strict):
    id: str = Field(pattern=ROOM_ID_PATTERN)
    name: str | None = None
    host_pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")
    guest_pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")
    lobby: bool = False
    locked: bool = False
    max_participants: int = Field(100, ge=1, le=1000)
    aliases: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pins_differ(self) -> RoomConfig:
        if self.host_pin is not None and self.host_pin == self.guest_pin:
            raise ValueError("host_pin and guest_pin must differ, or guests would become hosts")
        return self


class GatewayConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid")

    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig)
    lobby: LobbyConfig = Field(default_factory=LobbyConfig)
    rooms: list[RoomConfig] = Field(default_factory=list)

    @field_validator("rooms")
    @classmethod
    def _unique_rooms(cls, rooms: list[RoomConfig]) -> list[RoomConfig]:
        seen: set[str] = set()
        for room in rooms:
            if room.id in seen:
                raise ValueError(f"room id {room.id!r} is defined twice")
            seen.add(room.id)
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


@dataclass(frozen=True)
class ConfigError:
    """One problem in a configuration file, located as precisely as the file allows."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, source: str, errors: Sequence[ConfigError]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__(f"{source}: {len(self.errors)} error(s)")


def _yaml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Maps each key path in the YAML document to its 1-based line number."""
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parses and validates YAML text; raises ConfigInvalid listing every error with its path."""
    try:
        data: Any = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigInvalid(source, [ConfigError("(file)", line, f"not valid YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigInvalid(source, [ConfigError("(top level)", 1, "must be a mapping of sections")])
    try:
        return GatewayConfig(**data)
    except ValidationError as exc:
        lines = _yaml_lines(text)
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            # pydantic appends validator names (e.g. a union member) after the real path
            line = None
            for cut in range(len(loc), -1, -1):
                if loc[:cut] in lines:
                    line = lines[loc[:cut]]
                    break
            msg = re.sub(r"^Value error, ", "", err["msg"])
            errors.append(ConfigError(_dotted(loc), line, msg))
        raise ConfigInvalid(source, errors) from None


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigInvalid(str(path), [ConfigError("(file)", None, f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, str(path))
