"""Switching camera, microphone and speaker in the meeting without rejoining (the page's "Your
devices"), in headless Chromium: the fake browser lists three microphones and speakers and, here,
three cameras (the second is a depth camera, the third an ordinary one). Its fake microphones all play the same file, so the test gives the second one a
voice of its own (a 1000 Hz oscillator returned by getUserMedia for that device, installed in the
page; the switching itself is the page's code): the other participant then hears 1000 Hz instead
of 440 Hz, the participant stays the same one in the room, a muted participant stays muted on the
new microphone, the other camera's frames keep arriving, and the speaker and the choices are kept."""

from __future__ import annotations

import json

from tests.support.browser import (
    assert_silent_but_alive,
    hears,
    in_meeting,
    join,
    participant_id,
    video_frames_by_sender,
)
from tests.support.gateway import TEST_CONFIG, RunningGateway, gateway_per_module, participant, wait_until

shared_gateway, demo = gateway_per_module("demo", TEST_CONFIG)

# The named fake microphone, once chosen, plays 1000 Hz (another person's voice, as it were).
SECOND_MICROPHONE_JS = """
(label) => {
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = async (constraints) => {
    const wanted = constraints && constraints.audio && constraints.audio.deviceId;
    const id = wanted && (wanted.exact || wanted.ideal);
    const device = id && (await md.enumerateDevices()).find((d) => d.deviceId === id);
    if (!device || device.label !== label) return real(constraints);
    const context = new AudioContext();
    const tone = context.createOscillator();
    tone.frequency.value = 1000;
    const level = context.createGain();
    level.gain.value = 0.3;
    const out = context.createMediaStreamDestination();
    tone.connect(level).connect(out);
    tone.start();
    return out.stream;
  };
}
"""

SENDING_JS = """(kind) => {
  const c = window.gatewayClient;
  const track = kind === 'audio' ? c.micTrack : c.cameraTrack;
  const sender = c.pc.getSenders().find((s) => s.track && s.track.kind === kind && s.track === track);
  return {id: track.id, sent: !!sender, enabled: track.enabled, device: track.getSettings().deviceId || ''};
}"""


def option(page, select: str, label: str) -> str:  # type: ignore[no-untyped-def]
    return str(page.locator(f"#{select} option", has_text=label).first.get_attribute("value"))


def sending(page, kind: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return dict(page.evaluate(SENDING_JS, kind))


def test_switching_microphone_camera_and_speaker_in_the_meeting(demo: RunningGateway, open_participant) -> None:  # type: ignore[no-untyped-def]
    anna = open_participant(f"{demo.base_url}/r/demo?name=Anna", 440.0, cameras=3)
    bert = join(open_participant, demo, "demo", "Bert", 1700.0)
    wait_until(lambda: in_meeting(anna) and in_meeting(bert), 40, what="both in the meeting")
    anna_id = participant_id(anna)
    wait_until(lambda: hears(bert, 440.0), 20, what="Anna's first microphone heard")
    for select in ("meeting-camera-select", "meeting-microphone-select", "meeting-speaker-select"):
        wait_until(lambda select=select: anna.locator(f"#{select}").is_visible(), 10, what=f"{select} shown")
    assert anna.locator("#meeting-camera-select option").count() == 3

    # Muted, then another microphone: it stays muted, and nothing of either is heard.
    anna.evaluate(SECOND_MICROPHONE_JS, "Fake Audio Input 2")
    first_mic = sending(anna, "audio")
    anna.click("#btn-mic")
    wait_until(lambda: (participant(demo, "demo", "Anna") or {}).get("muted") is True, 10, what="Anna muted")
    anna.select_option("#meeting-microphone-select", option(anna, "meeting-microphone-select", "Fake Audio Input 2"))
    wait_until(lambda: sending(anna, "audio")["id"] != first_mic["id"], 10, what="the new microphone on the sender")
    assert sending(anna, "audio") == {**sending(anna, "audio"), "sent": True, "enabled": False}
    assert_silent_but_alive(bert, 1000.0, what="the new microphone while muted")

    # Unmuted: the new microphone is heard, the old one no more; still the same participant.
    anna.click("#btn-mic")
    wait_until(lambda: (participant(demo, "demo", "Anna") or {}).get("muted") is False, 10, what="Anna unmuted")
    wait_until(lambda: hears(bert, 1000.0), 15, what="the new microphone heard")
    assert_silent_but_alive(bert, 440.0, what="the old microphone, released")
    assert anna.evaluate("() => window.gatewayClient.localStream.getAudioTracks().length") == 1
    assert (participant(demo, "demo", "Anna") or {}).get("id") == anna_id

    # The other camera: its frames reach Bert on the same slot; the first camera is released.
    first_camera = sending(anna, "video")
    other_camera = option(anna, "meeting-camera-select", "fake_device_2")
    assert first_camera["device"] != other_camera and first_camera["sent"] is True
    anna.select_option("#meeting-camera-select", other_camera)
    wait_until(lambda: sending(anna, "video")["device"] == other_camera, 10, what="the other camera on the sender")
    assert sending(anna, "video")["sent"] is True
    frames = video_frames_by_sender(bert).get(anna_id, 0)
    wait_until(lambda: video_frames_by_sender(bert).get(anna_id, 0) > frames + 30, 20, what="the other camera's frames at Bert")
    assert anna.evaluate("() => window.gatewayClient.localStream.getVideoTracks().map((t) => t.readyState)") == ["live"]

    # Another speaker for the meeting's sound.
    speaker = option(anna, "meeting-speaker-select", "Fake Audio Output 1")
    anna.select_option("#meeting-speaker-select", speaker)
    wait_until(lambda: anna.evaluate("() => document.getElementById('remote-audio').sinkId") == speaker, 10, what="the meeting on the other speaker")

    # Remembered on this device for the next meeting.
    chosen = json.loads(anna.evaluate("() => localStorage.getItem('gateway.devices')"))
    assert chosen == {"microphone": option(anna, "meeting-microphone-select", "Fake Audio Input 2"), "camera": other_camera, "speaker": speaker}
    assert (participant(demo, "demo", "Anna") or {}).get("id") == anna_id
    for page in (anna, bert):
        page.click("#btn-leave")
    wait_until(lambda: participant(demo, "demo", "Anna") is None and participant(demo, "demo", "Bert") is None, 15, what="both left")
