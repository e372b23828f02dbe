"""Routing rules on RE2 (linear time on caller input) and room systems recognised by the addresses
their host names resolve to (issue 9)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from gateway.config import (
    ConfigInvalid,
    GatewayConfig,
    RoomConfig,
    RoomSystemConfig,
    RoutingRuleConfig,
    parse_config,
)
from gateway.control.admin import Administration
from gateway.control.store import Store
from gateway.rooms.directory import Directory, resolve_host
from gateway.rooms.patterns import MAX_ALIAS, PatternError, compile_rule, full_match, parse_template
from gateway.sip.uri import sip_identity

# -- rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [r"(\d)\1", r"(?=8)\d+", r"(?!9)\d+", r"(?<=8)\d", r"(?<!8)\d", r"\d+\Z", r"a{1001}", r"((a{100}){100}){100}"],
)
def test_patterns_re2_cannot_run_in_linear_time_are_refused_when_written(pattern: str) -> None:
    with pytest.raises(ValidationError, match="RE2") as refused:
        RoutingRuleConfig(id="r", pattern=pattern, room="demo")
    [error] = refused.value.errors()
    assert error["loc"] == ("pattern",)


def test_templates_take_numbered_and_named_groups_and_nothing_else() -> None:
    pattern = compile_rule(r"(?P<site>[a-z]+)-(\d+)(x)?", ignore_case=True)
    match = full_match(pattern, "Berlin-42")
    assert match is not None
    assert parse_template(r"\g<site>-\2", pattern).expand(match) == "Berlin-42"
    assert parse_template(r"room-\g<2>\1", pattern).expand(match) == "room-42Berlin"
    assert parse_template(r"r\3-\2", pattern).expand(match) == "r-42"  # a group that took no part: empty
    for bad in (r"room-\q", "room-\\", r"room-\g<1", r"\g<>", r"\0", r"\n", r"\4", r"\10", r"\g<nope>", "\\\u0661"):
        with pytest.raises(PatternError):
            parse_template(bad, pattern)


def test_routing_is_case_insensitive_whole_alias_and_bounded() -> None:
    directory = Directory(GatewayConfig(rooms=[RoomConfig(id="room-7"), RoomConfig(id="lobby-room")]))
    directory.set_rules(
        [
            RoutingRuleConfig(id="digits", pattern=r"7+", room="room-7"),
            RoutingRuleConfig(id="named", pattern=r"(?P<n>[a-z]+)\.Hall", room=r"\g<n>-room"),
        ]
    )
    assert directory.route("LOBBY.hall").room.id == "lobby-room"  # type: ignore[union-attr]
    assert directory.route("  777 ").room.id == "room-7"  # type: ignore[union-attr]
    assert directory.route("7778") is None  # the whole alias must match
    assert directory.route("7" * MAX_ALIAS).room.id == "room-7"  # type: ignore[union-attr]
    assert directory.route("7" * (MAX_ALIAS + 1)) is None  # longer than any alias: no rule looks at it
    assert directory.route("7\udcff") is None  # not UTF-8 encodable: no match rather than an error
    with pytest.raises(PatternError, match="Unicode"):  # pydantic refuses it first; RE2 would raise
        compile_rule("7\ud800")


def test_a_pathological_pattern_on_a_huge_alias_is_linear() -> None:
    """`(a+)+$` is exponential for a backtracking engine; RE2 takes it and runs it in linear time.
    Beyond the alias bound, which `full_match` lifts here (no timed assertion: the test timeout
    would catch a regression to backtracking, which would not finish)."""
    rule = RoutingRuleConfig(id="evil", pattern=r"(a+)+$", room="demo")
    pattern = compile_rule(rule.pattern, ignore_case=True)
    assert full_match(pattern, "a" * 100_000 + "!", max_length=1_000_000) is None
    assert full_match(pattern, "a" * 100_000, max_length=1_000_000) is not None
    directory = Directory(GatewayConfig(rooms=[RoomConfig(id="demo")]))
    directory.set_rules([rule])
    assert directory.route("a" * 100_000 + "!") is None


def test_dial_out_allow_is_checked_by_re2_with_the_setting_named() -> None:
    with pytest.raises(ConfigInvalid) as invalid:
        parse_config("sip:\n  dial_out_allow:\n    - 'sip:(\\d+)@pbx\\1'\n", "gw.yaml")
    [error] = invalid.value.errors
    assert error.path == "sip.dial_out_allow" and error.line == 2  # the list is located, not its item
    assert "RE2" in error.message and "invalid escape sequence" in error.message
    config = GatewayConfig.model_validate({"sip": {"dial_out_allow": [r"sip:\+49\d+@pbx\.example\.org"]}})
    allowed = compile_rule(config.sip.dial_out_allow[0])
    assert full_match(allowed, "sip:+4930123@pbx.example.org", max_length=256) is not None
    assert full_match(allowed, "SIP:+4930123@pbx.example.org", max_length=256) is None  # case kept, as with re


# -- room systems by address ---------------------------------------------------------------------------


class FakeResolver:
    def __init__(self, answers: dict[str, set[str] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.asked_thrice = asyncio.Event()

    async def __call__(self, host: str) -> frozenset[str]:
        self.asked.append(host)
        if len(self.asked) >= 3:
            self.asked_thrice.set()
        answer = self.answers.get(host, OSError(f"unknown host {host}"))
        if isinstance(answer, Exception):
            raise answer
        return frozenset(answer)


def system(uri: str, id: str = "board") -> RoomSystemConfig:
    return RoomSystemConfig(id=id, name=id.title(), uri=uri, trusted=True)


async def test_a_host_name_is_resolved_once_when_the_system_is_saved() -> None:
    resolver = FakeResolver({"board.example.org": {"192.0.2.10", "2001:db8::10"}})
    directory = Directory(GatewayConfig(), resolver=resolver, identify=sip_identity)
    board = system("sip:board@Board.Example.org:5061;transport=tls")
    directory.set_systems([board])
    assert directory.system_addresses(board) == frozenset()  # not yet: the lookup runs off the call path
    await directory.lookups_done()
    assert directory.system_addresses(board) == {"192.0.2.10", "2001:db8::10"}
    directory.set_systems([board, system("sip:other@10.0.0.9", id="other")])  # unchanged entries: no lookup
    await directory.lookups_done()
    assert resolver.asked == ["board.example.org"]
    assert directory.system_addresses(directory.systems["other"]) == {"10.0.0.9"}  # a literal is no lookup
    ipv6 = system("sip:board@[2001:DB8::0:5]:5060")
    assert directory.system_addresses(ipv6) == {str(ipaddress.ip_address("2001:db8::5"))}
    # Deleted: its addresses are forgotten (a later entry of the same host is looked up afresh).
    directory.set_systems([])
    assert directory.system_addresses(board) == frozenset()


async def test_failures_keep_the_old_addresses_and_are_logged_once_per_change() -> None:
    resolver = FakeResolver({"board.example.org": {"192.0.2.10"}})
    directory = Directory(GatewayConfig(), resolver=resolver, identify=sip_identity)
    board = system("sip:board@board.example.org")
    directory.set_systems([board])
    await directory.lookups_done()
    resolver.answers["board.example.org"] = OSError("Temporary failure in name resolution")
    with capture_logs() as logs:
        for _ in range(3):
            await directory.refresh()
    assert directory.system_addresses(board) == {"192.0.2.10"}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["addresses"] == ["192.0.2.10"]
    resolver.answers["board.example.org"] = TimeoutError()
    with capture_logs() as logs:
        await directory.refresh()
        await directory.refresh()
    assert [e["reason"] for e in logs if e["log_level"] == "warning"] == ["TimeoutError"]  # a new reason
    resolver.answers["board.example.org"] = {"192.0.2.11"}
    with capture_logs() as logs:
        await directory.refresh()
    assert directory.system_addresses(board) == {"192.0.2.11"}
    assert [e["event"] for e in logs] == ["room system host name resolves again", "room system host name resolved"]
    resolver.answers["board.example.org"] = set()  # an empty answer is a failure too
    await directory.refresh()
    assert directory.system_addresses(board) == {"192.0.2.11"}


async def test_run_refresh_looks_up_at_once_and_then_periodically() -> None:
    resolver = FakeResolver({"board.example.org": {"192.0.2.10"}})
    directory = Directory(GatewayConfig(), resolver=resolver, identify=sip_identity)
    board = system("sip:board@board.example.org")
    directory.systems = {board.id: board}  # as at start-up, before a loop ran: nothing looked up yet
    task = asyncio.create_task(directory.run_refresh(interval_s=0.01))
    try:
        await asyncio.wait_for(resolver.asked_thrice.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert directory.system_addresses(board) == {"192.0.2.10"}


async def test_systems_added_through_the_administration_are_resolved() -> None:
    resolver = FakeResolver({"codec.example.org": {"198.51.100.7"}})
    config = GatewayConfig(rooms=[RoomConfig(id="boardroom")])
    directory = Directory(config, resolver=resolver, identify=sip_identity)
    admin = Administration(config, directory, Store(None))
    saved = admin.save_system(system("sip:codec@codec.example.org", id="codec"), "test", create=True)
    await directory.lookups_done()
    assert directory.system_addresses(saved) == {"198.51.100.7"}
    resolver.answers["moved.example.org"] = {"198.51.100.8"}
    moved = admin.save_system(system("sip:codec@moved.example.org", id="codec"), "test", create=False)
    await directory.lookups_done()
    assert directory.system_addresses(moved) == {"198.51.100.8"}
    assert resolver.asked == ["codec.example.org", "moved.example.org"]


async def test_localhost_resolves_to_the_loopback_address(tmp_path: Path) -> None:
    assert "127.0.0.1" in await resolve_host("localhost")
    directory = Directory(GatewayConfig(), identify=sip_identity)
    local = system("sip:board@localhost")
    directory.set_systems([local])
    await directory.lookups_done()
    assert "127.0.0.1" in directory.system_addresses(local)


# -- through the API (a real gateway process) ------------------------------------------------------
