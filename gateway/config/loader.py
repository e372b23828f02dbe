"""Loads the configuration: the YAML file, the GATEWAY_* environment overrides, and every problem of
either located by its line or variable (ConfigInvalid), as `gateway check-config` prints them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from gateway.config.models import ENV_DELIMITER, ENV_PREFIX, GatewayConfig


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

_ENV_EXAMPLE = f"{ENV_PREFIX}SERVER{ENV_DELIMITER}PORT"


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
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _NOT_SETTINGS:
            continue
        # Names are case-insensitive, as for pydantic-settings (case_sensitive=False).
        setting = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        if setting not in settings:
            message = f"no such setting; sections are joined with {ENV_DELIMITER}, e.g. {_ENV_EXAMPLE}"
            names = [ENV_PREFIX + ENV_DELIMITER.join(s).upper() for s in settings]
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
