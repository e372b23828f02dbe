"""The configuration (gateway/config.py): the shipped file, defaults, env overrides, located errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gateway.config import (
    ConfigError,
    ConfigInvalid,
    GatewayConfig,
    load_config,
    parse_config,
)

SHIPPED = Path(__file__).resolve().parents[3] / "configs" / "gateway.yaml"


@pytest.fixture(autouse=True)
def no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own GATEWAY_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, snippet: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing snippet."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(hits) >= occurrence, f"{snippet!r} is not in the test YAML {occurrence} time(s)"
    return hits[occurrence - 1]


def errors_of(text: str) -> list[ConfigError]:
    with pytest.raises(ConfigInvalid) as invalid:
        parse_config(text, "test.yaml")
    assert invalid.value.source == "test.yaml"
    assert invalid.value.errors, "ConfigInvalid without errors"
    return invalid.value.errors


def only_error(text: str) -> ConfigError:
    errors = errors_of(text)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# -- the shipped file and the defaults ------------------------------------------------------------


def test_the_shipped_config_parses() -> None:
    config = load_config(SHIPPED)
    [demo] = config.rooms
    assert demo.id == "demo"
    assert demo.name == "Demo meeting"
    assert demo.host_pin == "1234"
    assert demo.guest_pin is None
    assert demo.aliases == ["4711"]
    assert (demo.lobby, demo.locked, demo.max_participants) == (False, False, 100)
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.webrtc.video_codecs == ["VP8", "H264"]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "---\n", "~\n"])
def test_an_empty_file_means_all_defaults(text: str) -> None:
    config = parse_config(text)
    assert config == GatewayConfig()
    assert config.rooms == []
    assert (config.server.host, config.server.port, config.server.tls) == ("127.0.0.1", 8080, None)
    assert config.admin.token is None
    assert (config.logging.level, config.logging.format) == ("info", "auto")
    assert config.media.mixer.tick_ms == 20 and config.media.mixer.max_speakers == 3
    assert (config.media.jitter.min_delay_ms, config.media.jitter.max_delay_ms) == (40, 200)
    assert config.webrtc.video_codecs == ["VP8", "H264"] and config.webrtc.ice_servers == []
    assert config.lobby.default_wait_s == 120.0


def test_a_partial_section_keeps_the_other_defaults() -> None:
    config = parse_config(yaml_text("""
        media:
          mixer:
            max_speakers: 4
        rooms:
          - id: board
    """))
    assert config.media.mixer.max_speakers == 4
    assert config.media.mixer.tick_ms == 20 and config.media.opus.bitrate == 32000
    [room] = config.rooms
    assert (room.name, room.host_pin, room.guest_pin, room.lobby, room.locked, room.max_participants, room.aliases) == (
        None,
        None,
        None,
        False,
        False,
        100,
        [],
    )


def test_a_full_room_entry() -> None:
    [room] = parse_config(yaml_text("""
        rooms:
          - id: board_room-2
            name: Board
            host_pin: "000111"
            guest_pin: "222333"
            lobby: true
            locked: true
            max_participants: 12
            aliases: ["sip:board@example.org", "4712"]
    """)).rooms
    assert room.id == "board_room-2" and room.host_pin == "000111" and room.guest_pin == "222333"
    assert room.lobby and room.locked and room.max_participants == 12
    assert room.aliases == ["sip:board@example.org", "4712"]


# -- environment overrides ------------------------------------------------------------------------


def test_env_overrides_win_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "9000")
    monkeypatch.setenv("GATEWAY_ADMIN__TOKEN", "a-much-better-secret-token")
    monkeypatch.setenv("GATEWAY_LOGGING__LEVEL", "debug")
    config = load_config(SHIPPED)
    assert config.server.port == 9000
    assert config.admin.token == "a-much-better-secret-token"
    assert config.logging.level == "debug"
    # the rest of each overridden section still comes from the file
    assert config.server.host == "127.0.0.1"
    assert config.logging.format == "auto"
    assert config.rooms[0].id == "demo"


def test_deeply_nested_env_override_keeps_sibling_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MEDIA__MIXER__MAX_SPEAKERS", "5")
    config = parse_config(yaml_text("""
        media:
          mixer:
            max_speakers: 3
            tick_ms: 10
          opus:
            complexity: 9
    """))
    assert config.media.mixer.max_speakers == 5
    assert config.media.mixer.tick_ms == 10
    assert config.media.opus.complexity == 9


def test_env_override_of_an_integer_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MEDIA__MIXER__TICK_MS", "10")
    assert parse_config("").media.mixer.tick_ms == 10
    monkeypatch.setenv("GATEWAY_MEDIA__MIXER__TICK_MS", "15")
    assert "10 or 20" in only_error("").message


def test_env_override_of_a_section_the_file_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "0")
    assert parse_config("").server.port == 0


def test_an_invalid_env_override_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "not-a-port")
    error = only_error("server:\n  port: 8080\n")
    assert error.path == "server.port"
    assert "integer" in error.message


@pytest.mark.parametrize("text", ["server:\n  port: 8080\n", ""])
def test_an_invalid_env_override_names_the_variable_not_the_file_line(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "abc")
    error = only_error(text)
    assert (error.path, error.line, error.env_var) == ("server.port", None, "GATEWAY_SERVER__PORT")
    assert str(error).startswith(
        "server.port (from environment GATEWAY_SERVER__PORT): Input should be a valid integer"
    )


def test_an_env_section_given_as_json_is_checked_and_blamed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ROOMS", '[{"id": "a"}, {"id": "a"}]')
    error = only_error("rooms:\n  - id: b\n")
    assert (error.path, error.line, error.env_var) == ("rooms[1].id", None, "GATEWAY_ROOMS")
    monkeypatch.setenv("GATEWAY_ROOMS", '[{"id": "a"}')
    error = only_error("")
    assert str(error).startswith("GATEWAY_ROOMS (environment): not valid JSON")


def test_env_json_values_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER", '{"port": 9001}')
    monkeypatch.setenv("GATEWAY_WEBRTC__ICE_SERVERS", '["stun:stun.example.org"]')
    config = parse_config("")
    assert config.server.port == 9001
    assert config.webrtc.ice_servers == ["stun:stun.example.org"]


def test_a_section_the_environment_starts_is_blamed_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__TLS__CERT", "/etc/cert.pem")
    error = only_error("server:\n  port: 8080\n")
    assert str(error) == "server.tls.key (from environment GATEWAY_SERVER__TLS__CERT): Field required"


def test_a_file_error_the_environment_takes_part_in_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MEDIA__JITTER__MAX_DELAY_MS", "50")
    error = only_error("media:\n  jitter:\n    min_delay_ms: 100\n")
    assert (error.path, error.line, error.env_var) == ("media.jitter", 2, None)
    assert "GATEWAY_MEDIA__JITTER__MAX_DELAY_MS" in error.message


@pytest.mark.parametrize(
    "name",
    [
        "GATEWAY_SERVER_PORT",
        "GATEWAY_SERVR__PORT",
        "GATEWAY_SERVER__PROT",
        "gateway_server_port",
        "GATEWAY_SERVER__PORT__X",
        "GATEWAY_ROOMS__0__ID",
        "GATEWAY_SERVER____PORT",
        "GATEWAY_",
    ],
)
def test_an_env_variable_that_names_no_setting_is_an_error(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "9000")
    error = only_error("server:\n  port: 8080\n")
    assert (error.path, error.line, error.env_var) == (name, None, name)
    assert str(error).startswith(
        f"{name} (environment): no such setting; sections are joined with __, e.g. GATEWAY_SERVER__PORT"
    )


def test_the_one_underscore_mistake_reads_as_specified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER_PORT", "9000")
    assert str(only_error("")) == (
        "GATEWAY_SERVER_PORT (environment): no such setting; sections are joined with __, e.g. GATEWAY_SERVER__PORT"
    )


def test_a_near_miss_env_name_gets_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "a-much-better-secret-token")
    assert only_error("").message.endswith("did you mean GATEWAY_ADMIN__TOKEN?")


@pytest.mark.parametrize(
    "name",
    [
        "GATEWAY_SERVER__PORT",
        "gateway_server__port",
        "GATEWAY_MEDIA__MIXER__TICK_MS",
        "GATEWAY_LOBBY__DEFAULT_WAIT_S",
    ],
)
def test_env_names_of_real_settings_are_case_insensitive(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "10")
    parse_config("")


def test_a_wrong_env_name_and_file_errors_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SERVER_PORT", "9000")
    monkeypatch.setenv("GATEWAY_LOGGING__LEVEL", "loud")  # not applied while the environment is wrong
    text = "server:\n  port: eighty\n"
    assert [str(e) for e in errors_of(text)] == [
        "server.port (line 2): Input should be a valid integer, unable to parse string as an integer",
        "GATEWAY_SERVER_PORT (environment): no such setting; sections are joined with __, e.g. GATEWAY_SERVER__PORT",
    ]


# -- located errors -------------------------------------------------------------------------------


def test_not_yaml_is_located() -> None:
    text = "server:\n  port: 8080\n\thost: oops\n"  # YAML forbids tabs for indentation
    error = only_error(text)
    assert error.path == "(file)"
    assert error.line == line_of(text, "host: oops")
    assert error.message.startswith("not valid YAML")


def test_a_yaml_syntax_error_names_the_file_line_and_column() -> None:
    error = only_error("server:\n  port: 8080\n\thost: oops\n")
    assert error.message == (
        "not valid YAML: found character '\\t' that cannot start any token (test.yaml, line 3, column 1),"
        " while scanning for the next token"
    )
    assert "<unicode string>" not in error.message and "\n" not in error.message


def test_unbalanced_yaml_is_refused() -> None:
    error = only_error('rooms: [{id: "demo"\n')
    assert error.path == "(file)" and "not valid YAML" in error.message and error.line is not None
    assert "(test.yaml, line 2, column 1)" in error.message
    assert "while parsing a flow mapping at line 1, column 9" in error.message
    assert "<unicode string>" not in error.message and "\n" not in error.message


def test_a_control_character_is_located() -> None:
    error = only_error("server:\n  host: a\x00b\n")
    assert (error.path, error.line) == ("(file)", 2)
    assert "(test.yaml, line 2, column 10)" in error.message and "<unicode string>" not in error.message


@pytest.mark.parametrize("text", ["rooms: &loop [*loop]\n", "server: &loop {host: *loop}\n"])
def test_a_recursive_alias_is_an_error_not_a_crash(text: str) -> None:
    assert only_error(text).line == 1


def test_merge_keys_still_work() -> None:
    text = "server:\n  <<: {port: 9000, host: 0.0.0.0}\n  host: 127.0.0.2\n"
    server = parse_config(text).server
    assert (server.port, server.host) == (9000, "127.0.0.2")


@pytest.mark.parametrize("text", ["- server\n- rooms\n", "just a string\n", "42\n"])
def test_the_top_level_must_be_a_mapping(text: str) -> None:
    error = only_error(text)
    assert (error.path, error.line) == ("(top level)", 1)
    assert "mapping" in error.message


@pytest.mark.parametrize(
    ("text", "path", "snippet", "words"),
    [
        ("server:\n  port: eighty\n", "server.port", "port:", "integer"),
        ("server:\n  port: 70000\n", "server.port", "port:", "less than or equal to 65535"),
        ("server: 8080\n", "server", "server:", "dictionary"),
        ("logging:\n  level: loud\n", "logging.level", "level:", "'debug'"),
        ("media:\n  mixer:\n    tick_ms: 15\n", "media.mixer.tick_ms", "tick_ms", "10 or 20"),
        ("rooms:\n  - id: a\n    lobby: maybe\n", "rooms[0].lobby", "lobby:", "boolean"),
        ("rooms:\n  - id: a\n    max_participants: 0\n", "rooms[0].max_participants", "max_participants", "greater"),
        ("rooms:\n  - id: a\n    host_pin: 1234\n", "rooms[0].host_pin", "host_pin", "string"),
        ("rooms:\n  - id: a\n    aliases: 4711\n", "rooms[0].aliases", "aliases", "list"),
        ("rooms: demo\n", "rooms", "rooms:", "list"),
        ("webrtc:\n  video_codecs: [VP8, AV1]\n", "webrtc.video_codecs[1]", "video_codecs", "'VP8' or 'H264'"),
        ("admin:\n  token: short\n", "admin.token", "token:", "at least 16 characters"),
    ],
)
def test_wrong_types_and_values_are_located(text: str, path: str, snippet: str, words: str) -> None:
    error = only_error(text)
    assert error.path == path
    assert error.line == line_of(text, snippet)
    assert words in error.message


@pytest.mark.parametrize(
    ("text", "path", "snippet"),
    [
        ("sevrer:\n  port: 9000\n", "sevrer", "sevrer:"),
        ("server:\n  port: 9000\n  prot: 9001\n", "server.prot", "prot:"),
        ("media:\n  mixer:\n    speakers: 2\n", "media.mixer.speakers", "speakers:"),
        ("rooms:\n  - id: a\n  - id: b\n    colour: blue\n", "rooms[1].colour", "colour:"),
    ],
)
def test_unknown_keys_are_located(text: str, path: str, snippet: str) -> None:
    error = only_error(text)
    assert (error.path, error.line) == (path, line_of(text, snippet))
    assert "Extra inputs are not permitted" in error.message


@pytest.mark.parametrize("room_id", ["Demo", "with space", "-leading-dash", "_x", "", "a" * 65, "ümlaut", "a.b"])
def test_bad_room_ids_are_located(room_id: str) -> None:
    text = f'rooms:\n  - id: good\n  - id: "{room_id}"\n'
    error = only_error(text)
    assert error.path == "rooms[1].id"
    assert error.line == 3
    assert "pattern" in error.message


@pytest.mark.parametrize("room_id", ["a", "0", "board-room_2", "a" * 64])
def test_good_room_ids(room_id: str) -> None:
    assert parse_config(f'rooms:\n  - id: "{room_id}"\n').rooms[0].id == room_id


def test_a_missing_room_id_is_located() -> None:
    text = yaml_text("""
        rooms:
          - id: a
          - name: No id
    """)
    error = only_error(text)
    assert (error.path, error.line) == ("rooms[1].id", line_of(text, "name: No id"))
    assert "required" in error.message


def test_duplicate_room_ids() -> None:
    text = yaml_text("""
        server:
          port: 8080
        rooms:
          - id: sales
          - id: board
          - id: sales
    """)
    error = only_error(text)
    assert (error.path, error.line) == ("rooms[2].id", line_of(text, "id: sales", 2))
    assert "'sales'" in error.message and "twice" in error.message and "rooms[0]" in error.message


def test_every_duplicate_room_id_is_located() -> None:
    text = "rooms:\n  - id: s\n  - id: b\n  - id: s\n  - id: s\n  - id: b\n"
    found = [(e.path, e.line) for e in errors_of(text)]
    assert found == [("rooms[2].id", 4), ("rooms[3].id", 5), ("rooms[4].id", 6)]


def test_equal_host_and_guest_pins() -> None:
    text = yaml_text("""
        rooms:
          - id: a
            host_pin: "1111"
          - id: b
            host_pin: "2222"
            guest_pin: "2222"
    """)
    error = only_error(text)
    assert (error.path, error.line) == ("rooms[1].guest_pin", line_of(text, "guest_pin"))
    assert "must differ" in error.message


def test_a_bad_host_pin_is_not_also_compared() -> None:
    text = 'rooms:\n  - id: a\n    host_pin: "12"\n    guest_pin: "12"\n'
    assert [e.path for e in errors_of(text)] == ["rooms[0].host_pin", "rooms[0].guest_pin"]


@pytest.mark.parametrize("pin", ["123", "12a4", "1234567890123", " 1234"])
def test_badly_formed_pins_are_located(pin: str) -> None:
    text = f'rooms:\n  - id: a\n  - id: b\n    name: B\n    host_pin: "{pin}"\n'
    error = only_error(text)
    assert (error.path, error.line) == ("rooms[1].host_pin", 5)


def test_jitter_bounds_must_be_ordered() -> None:
    error = only_error("media:\n  jitter:\n    min_delay_ms: 300\n    max_delay_ms: 100\n")
    assert error.path == "media.jitter"
    assert error.line == 2
    assert error.message == "min_delay_ms must not exceed max_delay_ms"


def test_every_error_is_reported_with_its_own_line() -> None:
    text = yaml_text("""
        server:
          port: -1
        logging:
          colour: green
        rooms:
          - id: fine
          - id: Not Fine
            host_pin: "12"
    """)
    found = {(e.path, e.line) for e in errors_of(text)}
    assert found == {
        ("server.port", line_of(text, "port: -1")),
        ("logging.colour", line_of(text, "colour:")),
        ("rooms[1].id", line_of(text, "Not Fine")),
        ("rooms[1].host_pin", line_of(text, 'host_pin: "12"')),
    }


def test_config_error_text() -> None:
    assert str(ConfigError("rooms[1].host_pin", 7, "bad")) == "rooms[1].host_pin (line 7): bad"
    assert str(ConfigError("(file)", None, "cannot read")) == "(file): cannot read"


def test_config_invalid_summarises() -> None:
    invalid = ConfigInvalid("x.yaml", [ConfigError("a", 1, "m"), ConfigError("b", 2, "n")])
    assert str(invalid) == "x.yaml: 2 error(s)"


def test_load_config_reports_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("server:\n  port: x\n", encoding="utf-8")
    with pytest.raises(ConfigInvalid) as invalid:
        load_config(path)
    assert invalid.value.source == str(path)
    assert [(e.path, e.line) for e in invalid.value.errors] == [("server.port", 2)]


def test_load_config_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as invalid:
        load_config(tmp_path / "nope.yaml")
    [error] = invalid.value.errors
    assert error.path == "(file)" and error.line is None
    assert error.message.startswith("cannot read")


@pytest.mark.parametrize(("text", "kind"), [("1: 2\n", "int"), ("true: x\n", "bool"), ("null: x\n", "null")])
def test_non_string_top_level_keys_are_a_config_error(text: str, kind: str) -> None:
    error = only_error(text)
    assert (error.path, error.line) == (text.split(":")[0], 1)
    assert error.message == f"keys must be text, this one is read as {kind}"


def test_non_string_keys_are_located_at_any_depth_with_the_other_errors() -> None:
    text = yaml_text("""
        server:
          port: eighty
          8080: x
        2024-01-01: new year
        rooms:
          - id: a
            on: true
    """)
    assert [(e.path, e.line) for e in errors_of(text)] == [
        ("server.8080", line_of(text, "8080:")),
        ("2024-01-01", line_of(text, "new year")),
        ("rooms[0].on", line_of(text, "on:")),
        ("server.port", line_of(text, "eighty")),
    ]


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rooms:\n  - id: a\n    name: Caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigInvalid) as invalid:
        load_config(path)
    assert invalid.value.source == str(path)
    [error] = invalid.value.errors
    assert (error.path, error.line) == ("(file)", 3)
    assert error.message.startswith("not UTF-8 text (byte 0xe9")


def test_trunks_are_read_with_their_password_kept_secret() -> None:
    config = parse_config(yaml_text("""
        sip:
          trunks:
            - {id: telekom, registrar: "tel.t-online.de", user: "+4930123456", password: "Geheim-1", expires_s: 300}
            - {id: pbx, registrar: "[2001:db8::1]:5070", user: "1001", registers: false}
    """))
    telekom, pbx = config.sip.trunks
    assert (telekom.registrar_host, telekom.registrar_port, telekom.expires_s) == ("tel.t-online.de", 5060, 300)
    assert (pbx.registrar_host, pbx.registrar_port, pbx.registers) == ("2001:db8::1", 5070, False)
    assert "Geheim-1" not in repr(config) and "Geheim-1" not in config.model_dump_json()
    assert telekom.password is not None and telekom.password.get_secret_value() == "Geheim-1"


@pytest.mark.parametrize(
    ("trunks", "says"),
    [
        ('[{id: a, registrar: "x.example", user: "1", password: p}, {id: a, registrar: "y.example", user: "2", password: p}]', "defined twice"),
        ('[{id: a, registrar: "x.example", user: "1"}]', "has no password"),
        ('[{id: a, registrar: "x.example", user: "1", password: p, transport: sctp}]', "'tls'"),
        ('[{id: a, registrar: "x.example", user: "1", password: p, outbound_proxy: "proxy .example"}]', "outbound_proxy"),
        ('[{id: a, registrar: "x.example", user: "1", password: p, outbound_proxy: "proxy.example:0"}]', "outbound_proxy port"),
        ('[{id: a, registrar: "x.example", user: "1", password: p, transport: tls, tls_ca: /nonexistent/ca.pem}]', "tls_ca"),
        ('[{id: a, registrar: "x .example", user: "1", password: p}]', "registrar"),
        ('[{id: a, registrar: "x.example", user: "with space", password: p}]', "user"),
        ('[{id: a, registrar: "x.example", user: "1", password: p, expires_s: 5}]', "expires_s"),
    ],
)
def test_bad_trunks_are_refused_with_a_clear_error(trunks: str, says: str) -> None:
    errors = errors_of(f"sip:\n  trunks: {trunks}\n")
    assert any(says in f"{e.path} {e.message}" for e in errors), errors


def test_trunks_over_tcp_and_tls_with_an_outbound_proxy() -> None:
    config = parse_config(yaml_text("""
        sip:
          trunks:
            - {id: a, registrar: "trunk.example", user: "1", password: p, transport: tcp, outbound_proxy: "proxy.example:5070"}
            - {id: b, registrar: "trunk.example:5071", user: "2", password: p, transport: tls, tls_verify: false}
            - {id: c, registrar: "trunk.example", user: "3", password: p, outbound_proxy: "[2001:db8::5]"}
    """))
    a, b, c = config.sip.trunks
    assert (a.transport, a.next_hop, a.tls_ca, a.tls_verify) == ("tcp", ("proxy.example", 5070), None, True)
    assert (b.transport, b.next_hop, b.tls_verify) == ("tls", ("trunk.example", 5071), False)  # (no proxy: the registrar)
    assert (c.transport, c.next_hop) == ("udp", ("2001:db8::5", None))  # (no port: RFC 3263 says)


def test_dns_servers_for_sip_names_are_addresses_with_an_optional_port() -> None:
    config = parse_config(yaml_text("""
        sip:
          dns_servers: ["192.0.2.53", "127.0.0.1:5353", "2001:db8::53", "[2001:db8::54]:5300"]
          trunks:
            - {id: a, registrar: "trunk.example", user: "1", password: p}
            - {id: b, registrar: "trunk.example:5070", user: "2", password: p}
            - {id: c, registrar: "[2001:db8::1]", user: "3", registers: false}
    """))
    assert config.sip.dns_server_addresses == [("192.0.2.53", 53), ("127.0.0.1", 5353), ("2001:db8::53", 53), ("2001:db8::54", 5300)]
    assert [t.registrar_explicit_port for t in config.sip.trunks] == [None, 5070, None]  # (none: SRV may say)
    assert parse_config(yaml_text("sip: {}")).sip.dns_servers == []  # the system's


@pytest.mark.parametrize("server", ["dns.example", "192.0.2.53:0", "192.0.2.53:99999", "192.0.2.53:x", "[2001:db8::53]x", "1.2.3.4:٥٣"])
def test_bad_dns_servers_are_refused(server: str) -> None:
    errors = errors_of(f'sip:\n  dns_servers: ["{server}"]\n')
    assert any("dns_servers" in e.path and "DNS server" in e.message for e in errors), errors
