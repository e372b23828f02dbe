"""`gateway check-config FILE` (gateway/cli.py): OK for a good file, every located error for a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "gateway.yaml"

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
