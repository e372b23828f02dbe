"""The admin client: `gateway rooms list`, `gateway mute ROOM ID`, ... administer a running gateway
through its REST API.

It speaks HTTP with the standard library only (no client dependency for a CLI), takes the API token
from --token or GATEWAY_TOKEN (never printed) and the address from --url or GATEWAY_URL, prints
tables (or the API's JSON with --json), and exits 1 with the API's own reason when it refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


# -- talking to the API ---------------------------------------------------------------------------


class CliError(Exception):
    """Something to tell the user on stderr before exiting with 1."""


class Api:
    def __init__(self, url: str, token: str | None, cacert: Path | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(cacert)) if cacert else None

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None, raw: bool = False) -> Any:
        """The answer's JSON (or text with `raw`); CliError with the API's reason when it refuses."""
        if not self._token:
            raise CliError("no API token: give --token or set GATEWAY_TOKEN")
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = self.url + "/api" + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                payload = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            raise CliError(_refusal(exc.code, exc.read().decode("utf-8", errors="replace"))) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach the gateway at {self.url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:  # timeouts, a malformed --url
            raise CliError(f"cannot reach the gateway at {self.url}: {exc}") from None
        if raw or not payload:
            return payload
        try:
            return json.loads(payload)
        except ValueError:
            raise CliError(f"the gateway at {self.url} did not answer with JSON (is it the gateway's address?)") from None


def _refusal(status: int, text: str) -> str:
    try:
        body = json.loads(text)
        return f"{body['reason']} ({body['error']}, HTTP {status})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {text.strip()[:200] or 'no reason given'}"


# -- printing -------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], empty: str) -> None:
    if not rows:
        print(empty)
        return
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(r[i]) for r in cells)) for i, (_, title) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _show(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _say(text: str) -> None:
    """Prints a line; returns None so a command can `return data if args.json else _say(...)`."""
    print(text)


# -- the admin commands ---------------------------------------------------------------------------


def _room_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for field in ("name", "host_pin", "guest_pin", "max_participants", "language"):
        value = getattr(args, field)
        if value is not None:
            changes[field] = None if value == "" else value
    if args.alias is not None:
        changes["aliases"] = [a for a in args.alias if a]
    for field in ("lobby", "locked"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if args.settings is not None:
        changes.update(_json_argument(args.settings))
    return changes


def _json_argument(text: str) -> dict[str, Any]:
    """JSON given inline, or `@file` (or `@-` for standard input)."""
    try:
        if text.startswith("@"):
            text = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text(encoding="utf-8")
        value = json.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read {text[1:]}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError("the settings must be a JSON object")
    return value


def _room_path(room: str) -> str:
    return "/rooms/" + urllib.parse.quote(room, safe="")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def cmd_status(api: Api, args: argparse.Namespace) -> Any:
    status = api.call("GET", "/status")
    if args.json:
        return status
    print(f"gateway at {api.url}: {status['rooms']} room(s), {status['participants']} participant(s), up {status['uptime_s']} s")
    print(f"you: {status['you']['name']} ({status['you']['role']})")
    print(f"database: {status['database'] or 'none (memory only)'}")
    for conflict in status["conflicts"]:
        print(f"conflict: room {conflict['room']!r} in the database: {'; '.join(conflict['problems'])}")
    return None


def _node(api: Api, args: argparse.Namespace, node: dict[str, Any]) -> Any:
    """The node's state: its JSON with --json, else a line."""
    if args.json:
        return node
    deadline = f", deadline in {node['deadline_in_s']} s" if node.get("deadline_in_s") is not None else ""
    print(f"node at {api.url}: {node['state']}{deadline}; {node['meetings']} meeting(s), {node['participants']} participant(s)")
    return None


def cmd_node(api: Api, args: argparse.Namespace) -> Any:
    return _node(api, args, api.call("GET", "/node"))


def cmd_drain(api: Api, args: argparse.Namespace) -> Any:
    """Drains the node (or ends a drain with --cancel); with --wait, returns once no meeting is left
    (a rolling restart's script then restarts the node)."""
    if args.cancel:
        node = api.call("DELETE", "/node/drain")
    else:
        node = api.call("POST", "/node/drain", {"deadline_s": args.deadline} if args.deadline is not None else {})
        while args.wait and node["state"] == "draining":
            time.sleep(1.0)
            node = api.call("GET", "/node")
    return _node(api, args, node)


def cmd_rooms(api: Api, args: argparse.Namespace) -> Any:
    action = args.action
    if action == "list":
        rooms = api.call("GET", "/rooms")
        if args.json:
            return rooms
        for room in rooms:
            room["participants"] = room["live"]["participants"]
            room["waiting"] = room["live"]["lobby_waiting"]
            room["locked_now"] = room["live"]["locked"]
            room["pins"] = "/".join(k for k in ("host", "guest") if room.get(f"{k}_pin_set")) or "none"
        columns = [("id", "ID"), ("name", "NAME"), ("origin", "ORIGIN"), ("aliases", "ALIASES"), ("pins", "PINS"),
                   ("lobby", "LOBBY"), ("locked_now", "LOCKED"), ("participants", "IN"), ("waiting", "WAITING")]
        _table(rooms, columns, "no rooms")
        return None
    if action == "show":
        return api.call("GET", _room_path(args.room))
    if action == "create":
        room = api.call("POST", "/rooms", {"id": args.room, **_room_changes(args)})
        return room if args.json else _say(f"room {room['id']!r} created")
    if action == "update":
        # PATCH: the gateway keeps what is not named (and refuses config rooms and operators itself).
        room = api.call("PATCH", _room_path(args.room), _room_changes(args))
        return room if args.json else _say(f"room {room['id']!r} changed")
    assert action == "delete"
    api.call("DELETE", _room_path(args.room))
    print(f"room {args.room!r} deleted")
    return None


def cmd_systems(api: Api, args: argparse.Namespace) -> Any:
    if args.action == "list":
        systems = api.call("GET", "/systems")
        if args.json:
            return systems
        columns = [("id", "ID"), ("name", "NAME"), ("uri", "URI"), ("default_room", "ROOM"), ("trusted", "TRUSTED")]
        _table(systems, columns, "no room systems")
        return None
    if args.action == "show":
        return api.call("GET", "/systems/" + _q(args.system))
    if args.action == "add":
        body = {"id": args.system, "name": args.name or args.system, "uri": args.uri, "trusted": args.trusted}
        if args.default_room:
            body["default_room"] = args.default_room
        system = api.call("POST", "/systems", body)
        return system if args.json else _say(f"room system {system['id']!r} added")
    api.call("DELETE", "/systems/" + _q(args.system))
    print(f"room system {args.system!r} deleted")
    return None


def cmd_rules(api: Api, args: argparse.Namespace) -> Any:
    if args.action == "list":
        rules = api.call("GET", "/rules")
        if args.json:
            return rules
        for position, rule in enumerate(rules):
            rule["position"] = position
        _table(rules, [("position", "#"), ("id", "ID"), ("pattern", "PATTERN"), ("room", "ROOM")], "no routing rules")
        return None
    if args.action == "add":
        body = {"id": args.rule, "pattern": args.pattern, "room": args.room}
        if args.position is not None:
            body["position"] = args.position
        rules = api.call("POST", "/rules", body)
        return rules if args.json else _say(f"rule {args.rule!r} added ({len(rules)} rule(s))")
    api.call("DELETE", "/rules/" + _q(args.rule))
    print(f"rule {args.rule!r} deleted")
    return None


def cmd_route(api: Api, args: argparse.Namespace) -> Any:
    found = api.call("GET", "/route", query={"called": args.called})
    if args.json:
        return found
    print(f"{args.called} -> {found['room']}" if found["room"] else f"{args.called} -> no room")
    return None


def cmd_participants(api: Api, args: argparse.Namespace) -> Any:
    people = api.call("GET", _room_path(args.room) + "/participants")
    waiting = api.call("GET", _room_path(args.room) + "/lobby")
    if args.json:
        return {"participants": people, "lobby": waiting}
    for p in people:
        p["packets"] = (p.get("media") or {}).get("audio_packets_in")
        p["mute"] = "host" if p["host_muted"] else ("self" if p["self_muted"] else "no")
    columns = [("id", "ID"), ("name", "NAME"), ("role", "ROLE"), ("kind", "KIND"), ("mute", "MUTED"),
               ("self_unmute_forbidden", "NO SELF-UNMUTE"), ("spotlight", "SPOTLIGHT"), ("packets", "AUDIO IN")]
    _table(people, columns, "nobody in the meeting")
    if waiting:
        print()
        _table(waiting, [("id", "WAITING ID"), ("name", "NAME"), ("kind", "KIND"), ("position", "POSITION")], "")
    return None


def cmd_participant_action(api: Api, args: argparse.Namespace) -> Any:
    base = f"{_room_path(args.room)}/participants/{_q(args.participant)}"
    if args.command == "remove":
        api.call("DELETE", base)
        print(f"{args.participant} removed")
        return None
    path = {"mute": "/mute", "unmute": "/unmute", "forbid-unmute": "/forbid-unmute", "allow-unmute": "/allow-unmute"}
    body = {"forbid_self_unmute": True} if getattr(args, "forbid_unmute", False) else None
    participant = api.call("POST", base + path[args.command], body)
    if args.json:
        return participant
    state = "muted" if participant["muted"] else "not muted"
    if participant["self_unmute_forbidden"]:
        state += ", may not unmute"
    print(f"{participant['name']} ({participant['id']}): {state}")
    return None


def cmd_room_action(api: Api, args: argparse.Namespace) -> Any:
    base = _room_path(args.room)
    if args.command == "mute-all":
        body = {"forbid_self_unmute": True} if args.forbid_unmute else None
        muted = api.call("POST", base + "/mute-all", body)["muted"]
        return {"muted": muted} if args.json else _say(f"{len(muted)} guest(s) muted")
    if args.command == "allow-unmute-all":
        answer = api.call("POST", base + "/allow-unmute-all")
        return answer if args.json else _say(f"{args.room}: guests may unmute again")
    if args.command in ("lock", "unlock"):
        locked = api.call("POST", f"{base}/{args.command}")["locked"]
        return {"locked": locked} if args.json else _say(f"{args.room}: {'locked' if locked else 'unlocked'}")
    ended = api.call("POST", base + "/end")["ended"]
    return {"ended": ended} if args.json else _say(f"meeting in {args.room} ended ({len(ended)} participant(s))")


def cmd_layout(api: Api, args: argparse.Namespace) -> Any:
    picture = api.call("PUT", _room_path(args.room) + "/layout", {"layout": args.layout})
    return picture if args.json else _say(f"{args.room}: room systems see the {picture['layout']} layout")


def cmd_spotlight(api: Api, args: argparse.Namespace) -> Any:
    if (args.participant is None) == (not args.off):
        raise CliError("name either a participant or --off")
    picture = api.call("PUT", _room_path(args.room) + "/spotlight", {"participant": args.participant})
    if args.json:
        return picture
    spotlight = picture["spotlight"]
    return _say(f"{args.room}: spotlight on {spotlight}" if spotlight else f"{args.room}: no spotlight")


def cmd_lobby_action(api: Api, args: argparse.Namespace) -> Any:
    answer = api.call("POST", f"{_room_path(args.room)}/lobby/{_q(args.entry)}/{args.command}")
    if args.json and answer:
        return answer
    print(f"{args.entry} {'admitted' if args.command == 'admit' else 'turned away'}")
    return None


def cmd_dial(api: Api, args: argparse.Namespace) -> Any:
    if (args.uri is None) == (args.system is None):
        raise CliError("name either an address (sip:, tel:, h323:) or --system ID")
    body = {"uri": args.uri} if args.uri is not None else {"system": args.system}
    placed = api.call("POST", _room_path(args.room) + "/dial", body)
    return placed if args.json else _say(f"calling {placed['uri']} into {placed['room']} (call {placed['call']})")


def cmd_records(api: Api, args: argparse.Namespace) -> Any:
    query = {"room": args.room, "since": args.since, "until": args.until, "limit": args.limit}
    if args.csv:
        sys.stdout.write(api.call("GET", "/call-records", query={**query, "format": "csv"}, raw=True))
        return None
    records = api.call("GET", "/call-records", query=query)
    if args.json:
        return records
    for record in records:
        record["joined"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["joined_at"]))
    columns = [("joined", "JOINED"), ("room", "ROOM"), ("name", "NAME"), ("kind", "KIND"), ("role", "ROLE"),
               ("duration_s", "SECONDS"), ("end_reason", "END"), ("audio_codec", "CODEC"), ("loss_percent", "LOSS %")]
    _table(records, columns, "no call records")
    return None


def cmd_host_link(api: Api, args: argparse.Namespace) -> Any:
    link = api.call("POST", _room_path(args.room) + "/host-link", {"valid_hours": args.hours} if args.hours else None)
    if args.json:
        return link
    print(link["url"])  # the link itself is the point of this command (the API token never is)
    print(f"valid until {time.strftime('%Y-%m-%d %H:%M', time.localtime(link['expires_at']))}", file=sys.stderr)
    return None


def add_parsers(sub: Any) -> None:
    """Adds the admin commands to the `gateway` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL), help="the gateway (default: %(default)s, or GATEWAY_URL)")
    common.add_argument("--token", default=None, help="API token (default: GATEWAY_TOKEN); prefer the variable, which no process list shows")
    common.add_argument("--cacert", type=Path, default=None, help="CA certificate to trust for https")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    def command(name: str, handler: Callable[[Api, argparse.Namespace], Any], help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    def group(name: str, handler: Callable[[Api, argparse.Namespace], Any], help: str) -> Callable[..., Any]:
        """A command with actions (`rooms list`); the common options go after the action."""
        parser = sub.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(action_name: str, help: str | None = None) -> argparse.ArgumentParser:
            made: argparse.ArgumentParser = actions.add_parser(action_name, parents=[common], help=help, description=help)
            return made

        return action

    command("status", cmd_status, "the gateway at a glance, and database rooms that clash with the file")
    command("node", cmd_node, "this node: serving, draining or drained, and what still runs on it")
    p = command("drain", cmd_drain, "drain the node for a restart: no new calls, meetings carry on until they end or the deadline")
    p.add_argument("--deadline", type=float, help="end the meetings still running after this many seconds (default: admission.drain_deadline_s)")
    p.add_argument("--wait", action="store_true", help="return once no meeting is left")
    p.add_argument("--cancel", action="store_true", help="end the drain: take new calls again")

    action = group("rooms", cmd_rooms, "list, show, create, update or delete rooms")
    action("list", "every room with its live state")
    action("show", "one room (JSON)").add_argument("room")
    for name in ("create", "update"):
        p = action(name, f"{name} a room made through the API" + (" (what is not given stays)" if name == "update" else ""))
        p.add_argument("room", help="its id: a-z, 0-9, - and _")
        p.add_argument("--name")
        p.add_argument("--host-pin", help="4-12 digits ('' for none)")
        p.add_argument("--guest-pin", help="4-12 digits ('' for none)")
        p.add_argument("--alias", action="append", help="a number or SIP user part that dials it (repeatable; '' for none)")
        p.add_argument("--lobby", action=argparse.BooleanOptionalAction, default=None, help="waiting room")
        p.add_argument("--locked", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--max-participants", type=int)
        p.add_argument("--language", choices=["de", "en"])
        p.add_argument("--settings", metavar="JSON", help="further settings as JSON, or @file (e.g. opening_hours)")
    action("delete", "delete a room (a meeting in it is ended)").add_argument("room")

    action = group("systems", cmd_systems, "the directory of room systems")
    action("list", "every room system")
    action("show", "one room system (JSON)").add_argument("system")
    add = action("add", "add a room system")
    add.add_argument("system", help="its id")
    add.add_argument("uri", help="sip:user@host[:port], or h323:alias@host[:port]")
    add.add_argument("--name")
    add.add_argument("--default-room", help="its own room")
    add.add_argument("--trusted", action="store_true", help="no PIN and no lobby when it calls its own room")
    action("delete", "delete a room system").add_argument("system")

    action = group("rules", cmd_rules, "routing rules: called aliases matched by regular expressions, in order")
    action("list", "the rules in their order")
    add = action("add", r"add a rule, e.g. by-number '8(\d{3})' 'room-\1'")
    add.add_argument("rule", help="its id")
    add.add_argument("pattern", help="regular expression the whole called alias must match")
    add.add_argument("room", help=r"the room; \1 or \g<name> take the pattern's groups")
    add.add_argument("--position", type=int, help="place in the order (default: last)")
    action("delete", "delete a rule").add_argument("rule")

    command("route", cmd_route, "where a call to an alias would go").add_argument("called")
    command("participants", cmd_participants, "who is in a room's meeting and its lobby").add_argument("room")
    for name, what in [
        ("mute", "mute a participant"),
        ("unmute", "lift a host's mute"),
        ("forbid-unmute", "forbid a participant to unmute"),
        ("allow-unmute", "allow a participant to unmute again"),
        ("remove", "remove a participant from the meeting"),
    ]:
        p = command(name, cmd_participant_action, what)
        p.add_argument("room")
        p.add_argument("participant", help="its id (see `gateway participants ROOM`)")
        if name == "mute":
            p.add_argument("--forbid-unmute", action="store_true", help="and forbid unmuting")
    p = command("mute-all", cmd_room_action, "mute every guest (and guests who join later)")
    p.add_argument("room")
    p.add_argument("--forbid-unmute", action="store_true")
    command("allow-unmute-all", cmd_room_action, "end mute-all: every guest may unmute again").add_argument("room")
    for name, what in [("lock", "let nobody new in"), ("unlock", "let people in again"), ("end", "end the meeting for everyone")]:
        command(name, cmd_room_action, what).add_argument("room")
    p = command("layout", cmd_layout, "how room systems see a meeting: the speaker large, or a grid (until it ends)")
    p.add_argument("room")
    p.add_argument("layout", choices=["speaker", "grid"])
    p = command("spotlight", cmd_spotlight, "show a participant large for everyone, or end the spotlight with --off")
    p.add_argument("room")
    p.add_argument("participant", nargs="?", help="its id (see `gateway participants ROOM`)")
    p.add_argument("--off", action="store_true", help="end the spotlight")
    for name, what in [("admit", "let someone in from the lobby"), ("deny", "turn someone away from the lobby")]:
        p = command(name, cmd_lobby_action, what)
        p.add_argument("room")
        p.add_argument("entry", help="the waiting participant's id")
    p = command("dial", cmd_dial, "call a room system or SIP URI into a room")
    p.add_argument("room")
    p.add_argument("uri", nargs="?", help="sip:user@host or h323:alias@host (allowed by sip/h323.dial_out_allow)")
    p.add_argument("--system", help="a room system of the directory")
    p = command("records", cmd_records, "call records, newest first")
    p.add_argument("--room")
    p.add_argument("--since", type=float, help="Unix time")
    p.add_argument("--until", type=float, help="Unix time")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--csv", action="store_true", help="as CSV with a header")
    p = command("host-link", cmd_host_link, "a link that lets a host in without the PIN")
    p.add_argument("room")
    p.add_argument("--hours", type=float, help="how long it is valid (default: admin.host_link_valid_h)")


def run(args: argparse.Namespace) -> int:
    """Runs the admin command `args` names; 0, or 1 after telling why on stderr."""
    token = args.token or os.environ.get("GATEWAY_TOKEN")
    api = Api(args.url, token, args.cacert)
    try:
        result = args.handler(api, args)
    except CliError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        _show(result)
    return 0
