"""The `gateway` command (gateway/cli.py): `check-config FILE` (OK for a good file, every located error for
a bad one), and the admin commands against a real gateway (rooms, systems, rules, live control,
records, host links), with the API's reasons and exit 1 on refusals, and the token never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from tests.support.api import API_CONFIG, OPERATOR_TOKEN
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, start_gateway, stop_and_check, wait_until

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "gateway.yaml"

BAD = """\
server:
  port: eighty
rooms:
  - id: demo
    host_pin: "1234"
  - id: Board Room
    host_pin: "12"
"""
BAD_ERRORS = [
    "server.port (line 2):",
    "rooms[1].id (line 6):",
    "rooms[1].host_pin (line 7):",
]


@pytest.fixture(autouse=True)
def no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    return path


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the real command in a fresh interpreter, as `python -m gateway ...`."""
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


# -- the real command -----------------------------------------------------------------------------


def test_check_config_of_a_good_file() -> None:
    result = run_cli("check-config", SHIPPED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SHIPPED}: OK (1 room(s))"
    assert result.stderr == ""


def test_check_config_of_a_bad_file(bad_file: Path) -> None:
    result = run_cli("check-config", bad_file)
    assert result.returncode != 0
    assert "OK" not in result.stdout
    assert f"{bad_file}: the configuration is not valid" in result.stderr
    for expected in BAD_ERRORS:
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_applies_env_overrides() -> None:
    result = run_cli("check-config", SHIPPED, env={"GATEWAY_SERVER__PORT": "not-a-port"})
    assert result.returncode != 0
    assert "server.port" in result.stderr


# -- the same in-process (fast) -------------------------------------------------------------------


def test_main_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("rooms:\n  - id: a\n  - id: b\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (2 room(s))\n" and err == ""


def test_main_lists_every_error_on_its_own_line(capsys: pytest.CaptureFixture[str], bad_file: Path) -> None:
    assert main(["check-config", str(bad_file)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{bad_file}: the configuration is not valid:"
    assert len(lines) == 1 + len(BAD_ERRORS)
    for line, expected in zip(lines[1:], BAD_ERRORS, strict=True):
        assert line.startswith(f"  {expected} ")


def test_main_bad_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("server:\n  port: 8080\n\thost: x\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "(file) (line 3): not valid YAML" in err


def test_main_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err
    assert "(file): cannot read" in err


@pytest.mark.parametrize("argv", [[], ["check-config"], ["frobnicate"]])
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: gateway" in capsys.readouterr().err


def test_run_with_a_bad_config_exits_before_starting(capsys: pytest.CaptureFixture[str], bad_file: Path) -> None:
    assert main(["run", "--config", str(bad_file)]) == 1
    assert "rooms[1].host_pin (line 7)" in capsys.readouterr().err


# -- administration of a running gateway through its API ------------------------------------------


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = API_CONFIG.replace("sip: {", "webrtc: {negotiation_timeout_s: 300}\nsip: {", 1)
    running = start_gateway(tmp_path_factory.mktemp("cli"), config)
    yield running
    stop_and_check(running)
    assert ADMIN_TOKEN not in running.log_path.read_text() and "24681357" not in running.log_path.read_text()


def admin(gateway: RunningGateway, *args: str, token: str | None = ADMIN_TOKEN, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` with the token in GATEWAY_TOKEN, the address in --url; the token is never printed."""
    env = {"GATEWAY_TOKEN": token} if token is not None else {}
    result = run_cli(*args, "--url", url or gateway.base_url, env=env)
    if token:
        assert token not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("gateway: "), result.stderr
    for text in expected:
        assert text in result.stderr
    return result.stderr


def test_cli_rooms(admin_gateway: RunningGateway) -> None:
    gw = admin_gateway
    created = admin(gw, "rooms", "create", "board", "--name", "Board room", "--host-pin", "24681357", "--alias", "800", "--alias", "801", "--lobby")
    assert ok(created).strip() == "room 'board' created"
    listing = ok(admin(gw, "rooms", "list")).splitlines()
    assert listing[0].split() == ["ID", "NAME", "ORIGIN", "ALIASES", "PINS", "LOBBY", "LOCKED", "IN", "WAITING"]
    board = next(line for line in listing if line.startswith("board "))
    assert "Board room" in board and "800,801" in board and " api " in board and " host " in board
    assert any(line.startswith("demo ") and " config " in line for line in listing)

    shown = json.loads(ok(admin(gw, "rooms", "show", "board")))
    assert shown["name"] == "Board room" and shown["lobby"] is True and shown["host_pin"] == "24681357"

    # update keeps what it is not told to change
    assert ok(admin(gw, "rooms", "update", "board", "--no-lobby", "--max-participants", "7")).strip() == "room 'board' changed"
    shown = json.loads(ok(admin(gw, "rooms", "show", "board")))
    assert (shown["lobby"], shown["max_participants"], shown["host_pin"], shown["aliases"]) == (False, 7, "24681357", ["800", "801"])
    hours = '{"opening_hours": {"timezone": "Europe/Berlin", "weekly": {"mon": ["08:00-12:00"]}}}'
    ok(admin(gw, "rooms", "update", "board", "--settings", hours, "--alias", ""))
    shown = json.loads(ok(admin(gw, "rooms", "show", "board", "--json")))
    assert shown["opening_hours"]["weekly"] == {"mon": ["08:00-12:00"]} and shown["aliases"] == []

    # refusals carry the API's reason, exit 1
    refused(admin(gw, "rooms", "create", "board"), "room id 'board' is taken", "(conflict, HTTP 409)")
    refused(admin(gw, "rooms", "create", "Bad Id"), "body.id", "HTTP 422")
    refused(admin(gw, "rooms", "create", "pins", "--host-pin", "1111", "--guest-pin", "1111"), "must differ")
    refused(admin(gw, "rooms", "update", "demo", "--name", "x"), "configuration file")
    refused(admin(gw, "rooms", "update", "board", "--settings", "{not json"), "not valid JSON")
    refused(admin(gw, "rooms", "show", "nowhere"), "no room 'nowhere'", "HTTP 404")
    refused(admin(gw, "rooms", "delete", "demo"), "configuration file", "HTTP 409")
    refused(admin(gw, "rooms", "create", "x", token=OPERATOR_TOKEN), "only admins", "HTTP 403")
    assert "host_pin" not in json.loads(ok(admin(gw, "rooms", "show", "board", token=OPERATOR_TOKEN)))

    assert ok(admin(gw, "rooms", "delete", "board")).strip() == "room 'board' deleted"
    refused(admin(gw, "rooms", "delete", "board"), "HTTP 404")


def test_cli_systems_rules_and_route(admin_gateway: RunningGateway) -> None:
    gw = admin_gateway
    ok(admin(gw, "rooms", "create", "room-123"))
    try:
        added = admin(gw, "systems", "add", "cisco", "sip:cisco@127.0.0.1:5999", "--name", "Cisco", "--default-room", "4711", "--trusted")
        assert ok(added).strip() == "room system 'cisco' added"
        rows = ok(admin(gw, "systems", "list")).splitlines()
        assert rows[0].split() == ["ID", "NAME", "URI", "ROOM", "TRUSTED"]
        assert rows[1].split() == ["cisco", "Cisco", "sip:cisco@127.0.0.1:5999", "demo", "yes"]
        assert json.loads(ok(admin(gw, "systems", "show", "cisco")))["trusted"] is True
        refused(admin(gw, "systems", "add", "bad", "http://x"), "body.uri")
        refused(admin(gw, "systems", "add", "cisco", "sip:other@127.0.0.1"), "exists")

        assert "rule 'by-number' added" in ok(admin(gw, "rules", "add", "by-number", r"8(\d{3})", r"room-\1"))
        ok(admin(gw, "rules", "add", "first", "9.*", "demo", "--position", "0"))
        rows = ok(admin(gw, "rules", "list")).splitlines()
        assert [row.split() for row in rows] == [["#", "ID", "PATTERN", "ROOM"], ["0", "first", "9.*", "demo"], ["1", "by-number", r"8(\d{3})", r"room-\1"]]
        refused(admin(gw, "rules", "add", "bad", "8(", "x"), "not a valid regular expression")
        refused(admin(gw, "rules", "add", "bad", r"8(\d)", r"room-\2"), "group '2'")
        assert ok(admin(gw, "route", "8123")).strip() == "8123 -> room-123"
        assert ok(admin(gw, "route", "4711")).strip() == "4711 -> demo"
        assert ok(admin(gw, "route", "777")).strip() == "777 -> no room"
        assert json.loads(ok(admin(gw, "route", "999", "--json"))) == {"called": "999", "room": "demo"}
        assert ok(admin(gw, "rules", "delete", "first")).strip() == "rule 'first' deleted"
        refused(admin(gw, "rules", "delete", "first"), "no rule 'first'")
    finally:
        admin(gw, "rules", "delete", "by-number")
        admin(gw, "systems", "delete", "cisco")
        admin(gw, "rooms", "delete", "room-123")
    assert ok(admin(gw, "systems", "list")).strip() == "no room systems"
    assert ok(admin(gw, "rules", "list")).strip() == "no routing rules"


def test_cli_live_control_records_host_link_and_dial(admin_gateway: RunningGateway) -> None:
    """A participant joins over the signalling WebSocket (no media needed to be controlled)."""
    from websockets.sync.client import connect

    gw = admin_gateway
    ok(admin(gw, "rooms", "create", "cli-live", "--host-pin", "24681357"))
    with connect(gw.ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "join", "room": "cli-live", "name": "Wanda"}))
        joined = json.loads(ws.recv(timeout=20))
        assert joined["type"] == "joined", joined
        pid = joined["you"]["id"]

        rows = ok(admin(gw, "participants", "cli-live", token=OPERATOR_TOKEN)).splitlines()
        assert rows[0].split()[:5] == ["ID", "NAME", "ROLE", "KIND", "MUTED"]
        assert rows[1].split()[:5] == [pid, "Wanda", "guest", "browser", "no"]
        assert ok(admin(gw, "mute", "cli-live", pid, "--forbid-unmute", token=OPERATOR_TOKEN)).strip() == f"Wanda ({pid}): muted, may not unmute"
        assert ok(admin(gw, "unmute", "cli-live", pid)).strip() == f"Wanda ({pid}): not muted"
        assert "may not unmute" in ok(admin(gw, "forbid-unmute", "cli-live", pid))
        assert ok(admin(gw, "allow-unmute", "cli-live", pid)).strip() == f"Wanda ({pid}): not muted"
        assert ok(admin(gw, "mute-all", "cli-live", "--forbid-unmute")).strip() == "1 guest(s) muted"
        assert ok(admin(gw, "allow-unmute-all", "cli-live")).strip() == "cli-live: guests may unmute again"
        assert ok(admin(gw, "lock", "cli-live")).strip() == "cli-live: locked"
        assert ok(admin(gw, "unlock", "cli-live")).strip() == "cli-live: unlocked"
        refused(admin(gw, "mute", "cli-live", "nobody"), "no participant 'nobody'", "HTTP 404")
        refused(admin(gw, "admit", "cli-live", "nobody"), "is not waiting", "HTTP 404")
        participants = json.loads(ok(admin(gw, "participants", "cli-live", "--json")))
        assert [p["id"] for p in participants["participants"]] == [pid] and participants["lobby"] == []
        assert ok(admin(gw, "remove", "cli-live", pid)).strip() == f"{pid} removed"
        assert ok(admin(gw, "participants", "cli-live")).strip() == "nobody in the meeting"

    wait_until(lambda: admin(gw, "records", "--room", "cli-live", "--json").stdout.strip() not in ("", "[]"), 15, what="call record")
    rows = ok(admin(gw, "records", "--room", "cli-live")).splitlines()
    assert rows[0].split()[:3] == ["JOINED", "ROOM", "NAME"] and "Wanda" in rows[1] and "removed" in rows[1]
    exported = ok(admin(gw, "records", "--room", "cli-live", "--csv"))
    assert exported.startswith("id,room,participant,name,") and ",Wanda," in exported
    assert ok(admin(gw, "records", "--room", "nowhere")).strip() == "no call records"

    link = admin(gw, "host-link", "cli-live", "--hours", "2")
    assert ok(link).startswith(f"{gw.base_url}/r/cli-live?host=") and "valid until" in link.stderr
    refused(admin(gw, "host-link", "cli-live", token=OPERATOR_TOKEN), "HTTP 403")
    ok(admin(gw, "end", "cli-live"))

    # Dial-out: the refusals (a real call is tests/e2e/test_sip_dial_out.py).
    refused(admin(gw, "dial", "cli-live", "sip:0049301234567@carrier.invalid"), "dial_out_refused", "HTTP 403")
    refused(admin(gw, "dial", "cli-live", "--system", "none"), "no room system 'none'")
    refused(admin(gw, "dial", "cli-live"), "either an address (sip:, tel:, h323:) or --system")
    ok(admin(gw, "rooms", "delete", "cli-live"))


def test_cli_status_and_connection_errors(admin_gateway: RunningGateway) -> None:
    gw = admin_gateway
    status = ok(admin(gw, "status", token=OPERATOR_TOKEN))
    assert "you: olga (operator)" in status and "database: none" in status
    refused(admin(gw, "rooms", "list", token="a-wrong-token-of-some-length"), "unknown token", "HTTP 401")
    refused(admin(gw, "rooms", "list", token=None), "no API token", "GATEWAY_TOKEN")
    refused(admin(gw, "rooms", "list", url="http://127.0.0.1:9"), "cannot reach the gateway at http://127.0.0.1:9")
    refused(admin(gw, "rooms", "list", url=gw.base_url + "/static"), "HTTP 404")
    # --token works as well as the variable
    result = run_cli("rooms", "list", "--url", gw.base_url, "--token", ADMIN_TOKEN)
    assert result.returncode == 0 and "demo" in result.stdout and ADMIN_TOKEN not in result.stdout + result.stderr
    # GATEWAY_URL names the gateway
    via_env = run_cli("status", env={"GATEWAY_TOKEN": ADMIN_TOKEN, "GATEWAY_URL": gw.base_url})
    assert via_env.returncode == 0 and "you: alice (admin)" in via_env.stdout


def test_check_config_ignores_the_cli_s_own_variables() -> None:
    """GATEWAY_TOKEN and GATEWAY_URL are the admin commands' and no setting: `run` and
    `check-config` must not refuse the configuration because a shell exported them."""
    result = run_cli("check-config", SHIPPED, env={"GATEWAY_TOKEN": ADMIN_TOKEN, "GATEWAY_URL": "http://127.0.0.1:1"})
    assert result.returncode == 0, result.stderr
