"""Content sharing between SIP room systems through the gateway's presentation floor, with real
peers on the wire: each "room system" here is the test's SIP signalling (RawCaller), the test's
BFCP floor participant (tests/support/bfcp_peer.py, written from RFC 8855, not from the gateway's
modules), an H.264 RTP sender for its slides and an H.264 receiver that decodes what the gateway
sends on its slides line (tests/support/rtp_video.py). An MCU the gateway dials is the test's BFCP
floor control server behind a sipp UAS.

What is checked: a room system asks for the floor over TCP and gets it (the room's presentation,
in the API); its slides reach a second room system's slides line, decoded there; the second one
takes over over UDP and the first hears Revoked; a host (the API) stops the presentation and the
presenter hears Revoked; slides reach a browser (headless Chromium) as its large first tile, and
the browser's shared screen reaches the room system's slides line, decoded there; a room system that listens (setup:passive) is connected to; a legacy video
room system (baresip, no BFCP) sees the slides large in its composed picture; BFCP from an address
the signalling did not name is refused, garbage gets a BFCP Error and a message too long closes the
connection, while the call goes on; and toward an MCU the gateway is the floor participant. Every
BFCP message over TCP is also read by tshark's BFCP dissector with nothing malformed.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import bfcp_peer, scenarios
from tests.support.baresip import Baresip
from tests.support.bfcp_peer import (
    DENIED,
    GRANTED,
    REVOKED,
    BfcpClient,
    BfcpServerPeer,
    FloorRequestRecord,
    assert_tshark_reads,
)
from tests.support.browser import in_meeting, join, tiles, video_frames_by_sender
from tests.support.gateway import (
    TEST_CONFIG,
    RunningGateway,
    participant,
    participants,
    room_kept_clean,
    start_gateway,
    stop_and_check,
    wait_until,
)
from tests.support.rtp_video import H264RtpReceiver, H264RtpSender
from tests.support.sdp_answers import MediaLine, media_lines
from tests.support.sip_client import Dialog, RawCaller, sdp_offer
from tests.support.sipp import free_udp_port, sipp_uas, stop_uas, uas_errors
from tests.support.video import load_rgb, looks_like_testsrc2, region

pytestmark = pytest.mark.browser  # (baresip and video decoding: the heavy peers' group)

H264_PT = 96
H264 = f"a=rtpmap:{H264_PT} H264/90000\r\na=fmtp:{H264_PT} profile-level-id=42e01f;packetization-mode=1\r\n"
FEEDBACK = f"a=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\n"
CONFIG = TEST_CONFIG.replace(
    "sip: {host: 127.0.0.1, port: 0,", "sip: {host: 127.0.0.1, port: 0, dial_out_allow: ['sip:mcu@127\\.0\\.0\\.1:\\d+'],"
) + '  - {id: chamber, name: Chamber, host_pin: "1234", presenters: hosts}\n'  # (only hosts and trusted systems present)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = start_gateway(tmp_path_factory.mktemp("gateway"), CONFIG)
    for system in ("board", "annex"):  # the town hall's own room systems: trusted, straight into demo
        made = running.api("POST", "/api/systems", json={
            "id": system, "name": system.title(), "uri": f"sip:{system}@127.0.0.1", "trusted": True, "default_room": "demo",
        })  # fmt: skip
        assert made.status_code == 201, made.text
    yield running
    stop_and_check(running)


@pytest.fixture
def demo(gateway: RunningGateway) -> Iterator[RunningGateway]:
    with room_kept_clean(gateway) as kept:
        yield kept


# -- a room system with content, as the test drives it -------------------------------------------------


@dataclass
class RoomSystem:
    """SIP signalling, a slides line (a receiver, and a sender when it presents) and a BFCP line."""

    gateway: RunningGateway
    user: str  # its directory entry (trusted) or anything (a guest)
    bfcp_proto: str = "TCP/BFCP"
    bfcp_attributes: str = "a=floorctrl:c-s\r\na=setup:actpass\r\na=connection:new\r\na=floorid:1 mstrm:12\r\n"
    caller: RawCaller = field(init=False)
    video_port: int = field(init=False)  # main video; the slides on video_port + 2
    slides: H264RtpReceiver = field(init=False)
    bfcp_port: int = 5070  # what the offer names (the gateway takes BFCP from the signalled address, any port)
    dialog: Dialog | None = None
    answer: list[MediaLine] = field(default_factory=list)
    sender: H264RtpSender | None = None

    def __post_init__(self) -> None:
        self.caller = RawCaller(self.gateway.sip_port, display=self.user.title())
        self.video_port = free_udp_port(span=4, even=True)
        self.slides = H264RtpReceiver(self.video_port + 2, H264_PT).start()

    def offer(self) -> str:
        extra = (
            f"m=video {self.video_port} RTP/AVP {H264_PT}\r\n{H264}{FEEDBACK}a=content:main\r\na=label:11\r\n"
            f"m=video {self.video_port + 2} RTP/AVP {H264_PT}\r\n{H264}{FEEDBACK}a=content:slides\r\na=label:12\r\n"
            f"m=application {self.bfcp_port} {self.bfcp_proto} *\r\n{self.bfcp_attributes}"
        )
        return sdp_offer("127.0.0.1", self.caller.rtp_port, "0 101", extra)

    def call(self, room: str = "demo") -> str:
        """Calls `room` from its directory URI (a user the directory does not know is a guest and
        presses # at the PIN prompt); its participant id once it is in the room."""
        self.dialog, response = self.caller.call(room, self.offer(), from_uri=f"sip:{self.user}@127.0.0.1")
        assert response.status == 200, response
        self.answer = media_lines(response.body.decode())
        assert [m.kind for m in self.answer] == ["audio", "video", "video", "application"], self.answer
        if self.user not in ("board", "annex"):
            self.caller.info(self.dialog, "Signal=#\r\nDuration=160\r\n")
        found = wait_until(lambda: participant(self.gateway, room, self.user.title()), 20, what=f"{self.user} in {room}")
        assert isinstance(found, dict)
        return str(found["id"])

    @property
    def bfcp_line(self) -> MediaLine:
        return self.answer[3]

    def ids(self) -> tuple[int, int, int]:
        """The conference, user and floor ids the gateway's answer gave."""
        line = self.bfcp_line
        (conference,), (user,), (floor,) = line.attribute("confid"), line.attribute("userid"), line.attribute("floorid")
        return int(conference), int(user), int(floor.split()[0])

    def bfcp(self) -> BfcpClient:
        conference, user, _floor = self.ids()
        if self.bfcp_proto == "UDP/BFCP":
            return BfcpClient.udp("127.0.0.1", self.bfcp_line.port, conference, user)
        return BfcpClient.tcp("127.0.0.1", self.bfcp_line.port, conference, user)

    def present(self) -> H264RtpSender:
        """Sends its slides (the test clip) from its slides port to the gateway's slides line."""
        gateway_slides = self.answer[2].port
        self.sender = H264RtpSender(("127.0.0.1", gateway_slides), H264_PT, source=self.slides.socket, rtcp=True).start()
        return self.sender

    def hang_up(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        if self.dialog is not None:
            self.caller.bye(self.dialog)
        self.slides.stop()
        self.caller.close()


def presentation(gateway: RunningGateway) -> dict[str, object] | None:
    room = gateway.api("GET", "/api/rooms/demo").json()
    return room.get("presentation")  # type: ignore[no-any-return]


def content_in(gateway: RunningGateway, name: str) -> int:
    """RTP packets the gateway took on a participant's slides line."""
    found = participant(gateway, "demo", name)
    media = found.get("media", {}) if found else {}
    return int(media.get("video_content", {}).get("rtp_packets_in", 0)) if isinstance(media, dict) else 0


# -- the tests ---------------------------------------------------------------------------------------


def test_a_room_system_presents_a_second_one_sees_it_takes_over_and_a_host_stops_it(demo: RunningGateway) -> None:
    board = RoomSystem(demo, "board")
    annex = RoomSystem(demo, "annex", "UDP/BFCP", "a=floorctrl:c-only\r\na=bfcpver:2\r\n")
    try:
        board_id = board.call()
        annex_id = annex.call()
        _, _, floor = board.ids()
        with board.bfcp() as board_floor, annex.bfcp() as annex_floor:
            assert board_floor.hello().primitive == bfcp_peer.Primitive.HELLO_ACK
            assert bfcp_peer.beneficiary_name(annex_floor.floor_query(floor)) is None  # (nobody presents; it listens)
            first = board_floor.floor_request(floor)
            board_floor.wait_status(first, GRANTED)
            # The annex asked for the floor's status: it hears that the board presents, by name
            annex_floor.wait_for(bfcp_peer.Primitive.FLOOR_STATUS, where=lambda m: bfcp_peer.beneficiary_name(m) == "Board")
            assert presentation(demo) == {**presentation(demo), "presenter": board_id, "content": "slides"}  # type: ignore[dict-item]

            # Its slides: taken from it, decoded on the other room system's slides line
            board.present()
            wait_until(lambda: content_in(demo, "Board") > 0, 10, what="the board's slides at the gateway")
            annex.slides.wait_frames(15)
            assert looks_like_testsrc2(annex.slides.last_picture), "the annex's slides line shows something else"
            assert annex.slides.sources == {("127.0.0.1", annex.answer[2].port)}

            # Forged BFCP over UDP from an address the signalling did not name: dropped unanswered
            forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            forger.bind(("127.0.0.2", 0))
            forger.settimeout(1.0)
            conference, user, _ = annex.ids()
            forger.sendto(bfcp_peer.encode(bfcp_peer.Primitive.FLOOR_REQUEST, conference, 9, user, [bfcp_peer.floor_id(floor)], 2), ("127.0.0.1", annex.bfcp_line.port))
            with pytest.raises(TimeoutError):
                forger.recvfrom(1500)
            forger.close()
            assert (presentation(demo) or {}).get("presenter") == board_id

            # The annex takes over (over UDP): the board hears Revoked, the room's presenter changes
            taken = annex_floor.floor_request(floor)
            annex_floor.wait_status(taken, GRANTED)
            revoked = board_floor.wait_status(first, REVOKED)
            assert bfcp_peer.status_text(revoked) == "taken_over"
            wait_until(lambda: (presentation(demo) or {}).get("presenter") == annex_id, 5, what="the annex presenting")

            # A host stops it (the API): the annex hears Revoked, nobody presents
            assert demo.api("POST", "/api/rooms/demo/presentation/stop").status_code == 200
            annex_floor.wait_status(taken, REVOKED)
            wait_until(lambda: presentation(demo) is None, 5, what="no presentation")
            assert annex_floor.problems == [] and board_floor.problems == []
            wire, udp_wire = board_floor.wire, annex_floor.wire
        assert_tshark_reads(wire, board.bfcp_line.port)
        # (tshark 4.0 reads version 1 only: the UDP messages, re-headed, for their attributes)
        assert_tshark_reads([(side, bfcp_peer.as_version_1(raw)) for side, raw in udp_wire], annex.bfcp_line.port)
    finally:
        board.hang_up()
        annex.hang_up()


def test_slides_reach_a_browser_as_its_large_tile_and_its_shared_screen_reaches_the_room_system(
    demo: RunningGateway, open_participant
) -> None:
    """A room system's slides (H.264) become a browser's first, large tile with frames decoded; the
    browser then shares its screen (Chromium's fake capture): the room system hears Revoked and
    decodes the browser's screen on its slides line (transcoded once, to H.264 for it)."""
    anna = join(open_participant, demo, "demo", "Anna", None, pin="1234")
    wait_until(lambda: in_meeting(anna), 40, what="Anna in the meeting")
    board = RoomSystem(demo, "board")
    try:
        board_id = board.call()
        with board.bfcp() as floor_client:
            slides = floor_client.floor_request(board.ids()[2])
            floor_client.wait_status(slides, GRANTED)
            board.present()
            content = f"{board_id}#content"
            wait_until(lambda: video_frames_by_sender(anna).get(content, 0) > 10, 30, what="Anna decodes the board's slides")
            first = tiles(anna)[0]
            assert first["key"] == content and first["caption"] == "Board is presenting" and first["main"], tiles(anna)

            anna.get_by_role("button", name="Share screen", exact=True).click()
            floor_client.wait_status(slides, REVOKED)
            assert board.sender is not None
            board.sender.stop()  # (a room system stops sending when its floor is revoked)
            wait_until(lambda: (presentation(demo) or {}).get("content") == "screen", 10, what="Anna presenting")
            board.slides.wait_frames(board.slides.frames_decoded + 10, 30)
            picture = board.slides.last_picture
            assert picture is not None and picture.shape[1] <= 1920 and picture.shape[0] <= 1080  # type: ignore[attr-defined]
            assert board.slides.sources == {("127.0.0.1", board.answer[2].port)}
    finally:
        board.hang_up()
        anna.close()


def test_where_only_hosts_present_a_guest_room_systems_request_is_denied(demo: RunningGateway) -> None:
    guest = RoomSystem(demo, "guest")
    try:
        guest.call("chamber")
        with guest.bfcp() as floor_client:
            denied = floor_client.wait_status(floor_client.floor_request(guest.ids()[2]), DENIED)
            assert bfcp_peer.status_text(denied) == "only hosts present in this meeting"
        assert demo.api("GET", "/api/rooms/chamber").json()["presentation"] is None
    finally:
        guest.hang_up()
        wait_until(lambda: not participants(demo, "chamber"), 15, what="chamber empty")


def test_a_room_system_that_listens_is_connected_to(demo: RunningGateway) -> None:
    listener = BfcpClient.accept_tcp("127.0.0.1", 0, 0)  # (ids known once the answer came: set below)
    board = RoomSystem(demo, "board", bfcp_attributes="a=floorctrl:c-only\r\na=setup:passive\r\na=connection:new\r\n", bfcp_port=listener.port)
    try:
        board.call()
        assert board.bfcp_line.port == 9 and board.bfcp_line.attribute("setup") == ["active"]
        listener.conference_id, listener.user_id, floor = board.ids()
        listener.wait_connected(10)
        listener.hello()
        request = listener.floor_request(floor)
        listener.wait_status(request, GRANTED)
        assert_tshark_reads(listener.wire, listener.port)
    finally:
        listener.close()
        board.hang_up()


def test_a_legacy_video_system_sees_the_slides_large_in_its_composed_picture(demo: RunningGateway, tmp_path: Path) -> None:
    legacy = Baresip(tmp_path / "legacy", tone_hz=600, name="Old room", video="none", video_codecs=("H264",))
    board = RoomSystem(demo, "board")
    legacy.start(dial=f"sip:demo@127.0.0.1:{demo.sip_port}")
    try:
        wait_until(legacy.established, 20, what="the legacy system's call")
        legacy.send_keys("#")
        wait_until(lambda: participant(demo, "demo", "Old room"), 20, what="the legacy system in demo")
        board.call()
        with board.bfcp() as floor_client:
            floor_client.floor_request(board.ids()[2])
            board.present()
            # content large (the spotlight's place, the upper part), the people in the strip below
            wait_until(
                lambda: looks_like_testsrc2(region(load_rgb(legacy.snapshot()), 0.25, 0.05, 0.75, 0.6)),
                30,
                what="the board's slides large in the legacy system's picture",
            )
    finally:
        board.hang_up()
        legacy.stop()


def closed_without_answer(sock: socket.socket) -> bool:
    """Whether the gateway closed the connection (a FIN, or a reset: it had unread data) without a word."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_bfcp_from_elsewhere_garbage_and_overlong_messages_cost_the_call_nothing(demo: RunningGateway) -> None:
    board = RoomSystem(demo, "board")
    try:
        board_id = board.call()
        port = board.bfcp_line.port
        conference, user, floor = board.ids()
        # From an address the signalling did not name (127.0.0.2): closed without a word
        stranger = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(5)
        stranger.connect(("127.0.0.1", port))
        stranger.sendall(bfcp_peer.encode(bfcp_peer.Primitive.HELLO, conference, 1, user))
        assert closed_without_answer(stranger)
        stranger.close()
        # Garbage with a readable header: a BFCP Error (Parse Error) for its transaction
        with BfcpClient.tcp("127.0.0.1", port, conference, user) as floor_client:
            hello = bfcp_peer.encode(bfcp_peer.Primitive.HELLO, conference, 77, user)
            floor_client.send_raw(hello[:3] + b"\x02" + hello[4:] + b"\x7f\x09garbag")  # (two words: an attribute longer than they)
            error = floor_client.wait_for(bfcp_peer.Primitive.ERROR)
            assert error.transaction_id == 77 and error.error() is not None and error.error()[0] == bfcp_peer.ErrorCode.PARSE_ERROR  # type: ignore[index]
            floor_client.wait_status(floor_client.floor_request(floor), GRANTED)  # (the same connection works on)
        wait_until(lambda: presentation(demo) is None, 5, what="the floor given back with the connection")
        # A message announcing 256 KiB: the connection is closed, the call stays
        with socket.create_connection(("127.0.0.1", port), timeout=5) as long:
            long.sendall(b"\x20\x01\xff\xff" + bytes(8))
            assert closed_without_answer(long)
        assert participant(demo, "demo", "Board") is not None and participant(demo, "demo", "Board")["id"] == board_id  # type: ignore[index]
        refused = [line for line in demo.log_lines() if line.get("event") == "BFCP connection refused"]
        assert refused and refused[-1].get("source") == "127.0.0.2"
    finally:
        board.hang_up()


def test_an_mcu_calling_in_that_serves_the_floor_over_udp_has_the_gateway_as_its_participant(demo: RunningGateway) -> None:
    """An MCU calls in offering BFCP over UDP as server only (s-only, its ids): the gateway answers
    c-only and speaks to it as floor participant, version 2 with acknowledgements; when the MCU's
    own participant holds the floor, the MCU presents in the room."""
    mcu_floor = BfcpServerPeer.udp("127.0.0.1", conference_id=5151)
    mcu = RoomSystem(
        demo, "mcu", "UDP/BFCP",
        "a=floorctrl:s-only\r\na=confid:5151\r\na=userid:6\r\na=floorid:4 mstrm:12\r\na=bfcpver:2\r\n",
        bfcp_port=mcu_floor.port,
    )  # fmt: skip
    try:
        mcu_id = mcu.call()
        line = mcu.bfcp_line
        assert (line.proto, line.attribute("floorctrl"), line.attribute("confid")) == ("UDP/BFCP", ["c-only"], [])
        hello = mcu_floor.wait_for(bfcp_peer.Primitive.HELLO, 10)
        assert (hello.version, hello.conference_id, hello.user_id) == (2, 5151, 6)
        mcu_floor.wait_for(bfcp_peer.Primitive.FLOOR_QUERY)
        mcu_floor.requests[77] = FloorRequestRecord(77, [4], 5151, 1, GRANTED)  # (its chair presents)
        mcu_floor.wait_acked(mcu_floor.send_floor_status(4))
        wait_until(lambda: (presentation(demo) or {}).get("presenter") == mcu_id, 10, what="the MCU presenting in demo")
        assert mcu_floor.problems == []
        udp_wire = mcu_floor.wire
    finally:
        mcu.hang_up()
        mcu_floor.close()
    assert_tshark_reads([(side, bfcp_peer.as_version_1(raw)) for side, raw in udp_wire], 5070)


def mcu_scenario(path: Path, bfcp_port: int, conference: int, user: int, floor: int) -> Path:
    """A sipp UAS that answers like an MCU: slides and BFCP as floor control server (s-only) that
    listens (setup:passive) on the test's BFCP server, then waits for the gateway's BYE. Its video
    takes RTCP feedback (keyframes are asked for by PLI, not SIP INFO, which it would not expect)."""
    feedback = "a=rtcp-fb:97 nack pli\r\na=rtcp-fb:97 ccm fir\r\n"
    sdp = (
        "v=0\r\no=mcu 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio [media_port] RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        f"m=video [media_port+2] RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n{feedback}a=content:main\r\n"
        f"m=video [media_port+4] RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n{feedback}a=content:slides\r\na=label:2\r\n"
        f"m=application {bfcp_port} TCP/BFCP *\r\na=floorctrl:s-only\r\na=setup:passive\r\na=connection:new\r\n"
        f"a=confid:{conference}\r\na=userid:{user}\r\na=floorid:{floor} mstrm:2\r\na=bfcpver:1\r\n"
    )
    path.write_text(scenarios.scenario("MCU with BFCP as server", scenarios.answered_invite(sdp, "mcu"), scenarios.their_bye(60_000)))
    return path


def test_toward_an_mcu_that_serves_the_floor_the_gateway_is_its_participant(demo: RunningGateway, tmp_path: Path) -> None:
    mcu_floor = BfcpServerPeer.tcp("127.0.0.1", conference_id=4242)
    port = free_udp_port()
    uas = sipp_uas(tmp_path / "mcu", port, str(mcu_scenario(tmp_path / "mcu.xml", mcu_floor.port, 4242, 9, 3)))
    board = RoomSystem(demo, "board")
    try:
        placed = demo.api("POST", "/api/rooms/demo/dial", json={"uri": f"sip:mcu@127.0.0.1:{port}"})
        assert placed.status_code == 202, placed.text
        mcu_floor.wait_connected(15)
        assert mcu_floor.wait_for(bfcp_peer.Primitive.HELLO).user_id == 9
        mcu_floor.wait_for(bfcp_peer.Primitive.FLOOR_QUERY)
        mcu = wait_until(lambda: next(iter(participants(demo, "demo")), None), 10, what="the MCU in demo")
        assert isinstance(mcu, dict)
        # Our room presents (the board): the gateway asks the MCU for the floor, and gets it
        board.call()
        with board.bfcp() as floor_client:
            floor_client.wait_status(floor_client.floor_request(board.ids()[2]), GRANTED)
            asked = mcu_floor.wait_for(bfcp_peer.Primitive.FLOOR_REQUEST)
            assert (asked.conference_id, asked.user_id) == (4242, 9)
            # The MCU's own chair presents: the MCU revokes ours and says who holds the floor now;
            # the MCU's leg presents in our room, the board hears Revoked
            (ours,) = mcu_floor.requests
            mcu_floor.revoke(ours)
            mcu_floor.requests[99] = FloorRequestRecord(99, [3], 4242, 1, GRANTED)  # the chair's (user 1)
            mcu_floor.send_floor_status(3)
            wait_until(lambda: (presentation(demo) or {}).get("presenter") == mcu["id"], 10, what="the MCU presenting in demo")
        assert_tshark_reads(mcu_floor.wire, mcu_floor.port)
    finally:
        board.hang_up()
        mcu_floor.close()
        for member in participants(demo, "demo"):
            demo.api("DELETE", f"/api/rooms/demo/participants/{member['id']}")
        try:
            uas.wait(20)
        except subprocess.TimeoutExpired:
            pass
        errors = uas_errors(tmp_path / "mcu")
        stop_uas(uas)
    assert "Aborting" not in errors, errors

