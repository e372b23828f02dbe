"""Real headless Chromium in tests: its flags, and what a meeting page hears, sees and shows
(measured in the page with an AnalyserNode on the audio it receives, and getStats for video)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.gateway import RunningGateway

CHROMIUM = "/usr/bin/chromium"


def chromium_args(
    tone_wav: Path | None, allow_media: bool = True, video_file: Path | None = None, cameras: int = 1
) -> list[str]:
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        # (three fake microphones and speakers; `cameras` fake cameras)
        "--use-fake-device-for-media-stream" + (f"=device-count={cameras}" if cameras != 1 else ""),
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
    ]
    if allow_media:  # answers the camera/microphone prompt with "allow"; without it, headless denies
        args.append("--use-fake-ui-for-media-stream")
    if tone_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={tone_wav}")
    if video_file is not None:  # a Y4M or MJPEG file the fake camera plays (in a loop) instead of its test pattern
        args.append(f"--use-file-for-fake-video-capture={video_file}")
    return args


HEARD_DB = -75.0  # analyser level at a tone's frequency above which the tone counts as heard

# Installed once per page: every 20 ms, the level at each watched frequency of the meeting audio the
# page receives; remembers when each tone was last above the threshold (Date.now(), so times from
# different pages on this machine compare).
MONITOR_JS = """
([freqs, threshold]) => {
  if (window.__monitor) return;
  const m = window.__monitor = {lastHeard: {}, level: {}, stream: null, ctx: null, analyser: null, ticks: 0};
  const data = new Float32Array(1024);
  setInterval(() => {
    const c = window.gatewayClient;
    const stream = c && c.remoteAudioStream;
    if (!stream || stream.getAudioTracks().length === 0) return;
    if (m.stream !== stream) {
      if (m.ctx) m.ctx.close();
      m.ctx = new AudioContext();
      m.analyser = m.ctx.createAnalyser();
      m.analyser.fftSize = 2048;  // a 43 ms window: short, so a tone's end is seen at once
      m.analyser.smoothingTimeConstant = 0;
      m.ctx.createMediaStreamSource(stream).connect(m.analyser);
      m.stream = stream;
    }
    if (m.ctx.state !== 'running') { m.ctx.resume(); return; }
    m.analyser.getFloatFrequencyData(data);
    const hzPerBin = m.ctx.sampleRate / m.analyser.fftSize;
    for (const f of freqs) {
      const bin = Math.round(f / hzPerBin);
      let best = -200;
      for (let b = bin - 1; b <= bin + 1; b++) best = Math.max(best, data[b]);
      // A tone is narrow: it must also stand well above the spectrum 190 Hz either side, so a
      // broadband click (a stream starting) does not count as hearing it.
      const floor = Math.max(data[bin - 8], data[bin + 8]);
      m.level[f] = best;
      if (best > threshold && best - floor > 15) m.lastHeard[f] = Date.now();
    }
    m.ticks++;  // analysed windows of the received stream: a probe that stopped hears nothing
  }, 20);
}
"""

WATCHED = [440.0, 1000.0, 1300.0, 1700.0]


def watch(page) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(MONITOR_JS, [WATCHED, HEARD_DB])


def last_heard(page, freq: float) -> float:  # type: ignore[no-untyped-def]
    """Date.now() (ms) when the page last heard the tone, 0 if never."""
    watch(page)
    return float(page.evaluate("(f) => window.__monitor.lastHeard[f] || 0", freq))


def hears(page, freq: float) -> bool:  # type: ignore[no-untyped-def]
    """Heard within the last 300 ms."""
    heard = last_heard(page, freq)
    return heard > 0 and page.evaluate("() => Date.now()") - heard < 300


# The meeting audio the page receives, as the browser sees it: the track's state and the inbound-rtp
# audio counters (getStats), with the page's clock.
AUDIO_IN_JS = """
async () => {
  const c = window.gatewayClient;
  const stream = c && c.remoteAudioStream;
  const track = stream && stream.getAudioTracks()[0];
  const out = {track: track ? track.readyState : null, packets: 0, samples: 0,
               ticks: window.__monitor ? window.__monitor.ticks : 0, now: Date.now()};
  if (c && c.pc) {
    (await c.pc.getStats()).forEach(s => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.packets += s.packetsReceived || 0;
        out.samples += s.totalSamplesReceived || 0;
      }
    });
  }
  return out;
}
"""


def audio_in(page) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The page's received meeting audio now: track state, inbound-rtp packets and samples, analyser ticks."""
    watch(page)
    return dict(page.evaluate(AUDIO_IN_JS))


def assert_silent_but_alive(page, freq: float, seconds: float = 1.5, since: float | None = None, what: str = "") -> None:  # type: ignore[no-untyped-def]
    """The page does not hear the tone at `freq`, and not because nothing arrives: over `seconds` its
    meeting audio track stays live, inbound-rtp audio packets keep coming at the pace of 20 ms
    frames, and the page's analyser keeps analysing them. `since` (the page's Date.now(), ms): the
    tone must not have been heard after it either (default: the start of the window)."""
    assert_all_silent_but_alive([(page, freq)], seconds, since, what)


def assert_all_silent_but_alive(checks, seconds: float = 1.5, since: float | None = None, what: str = "") -> None:  # type: ignore[no-untyped-def]
    """assert_silent_but_alive for several (page, freq) pairs over one common window."""
    before = [audio_in(page) for page, _ in checks]
    time.sleep(seconds)  # deliberate: the silence is proven over this much time
    for (page, freq), first in zip(checks, before, strict=True):
        last = audio_in(page)
        label = f"{what} ({freq:g} Hz)" if what else f"{freq:g} Hz"
        assert first["track"] == "live" and last["track"] == "live", (
            f"no live meeting audio track while checking that {label} is silent ({first['track']}, {last['track']})"
        )
        packets = int(last["packets"]) - int(first["packets"])  # type: ignore[call-overload]
        ticks = int(last["ticks"]) - int(first["ticks"])  # type: ignore[call-overload]
        # (50 packets a second is the pace; a fifth of it leaves room for a loaded machine, and is
        # still far from the nothing of a stream that stopped)
        assert packets >= 10 * seconds, f"the page's meeting audio is not alive: {packets} packets in {seconds} s"
        assert ticks >= 5 * seconds, f"the page's analyser did not run: {ticks} windows in {seconds} s"
        start = float(first["now"]) if since is None else since  # type: ignore[arg-type]
        heard = last_heard(page, freq)
        assert heard < start, f"{label} still heard {(heard - start) / 1000:.2f} s into the time it must be silent"


VIDEO_FRAMES_JS = """
async () => {
  const pc = window.gatewayClient && window.gatewayClient.pc;
  if (!pc) return [];
  const stats = await pc.getStats();
  const out = [];
  stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') out.push(s.framesDecoded || 0); });
  return out;
}
"""

# Frames decoded per sender: the page's video slots (mid -> participant id, as the gateway told the
# page) joined with the inbound-rtp video stats of each mid; a stream of no slot counts under "mid:<mid>".
VIDEO_BY_SENDER_JS = """
async () => {
  const c = window.gatewayClient;
  if (!c || !c.pc) return {};
  const slots = c.videoSlots || {};
  const out = {};
  (await c.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      const key = slots[s.mid] || ('mid:' + s.mid);
      out[key] = (out[key] || 0) + (s.framesDecoded || 0);
    }
  });
  return out;
}
"""


# Every video the page receives, by mid: whom the gateway says its slot shows (null: nobody, or no
# slot), frames decoded, the picture's size and the codec decoding it (inbound-rtp stats).
INBOUND_VIDEO_JS = """
async () => {
  const c = window.gatewayClient;
  if (!c || !c.pc) return {};
  const slots = c.videoSlots || {};
  const stats = await c.pc.getStats();
  const out = {};
  stats.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      const codec = stats.get(s.codecId);
      out[s.mid] = {
        who: slots[s.mid] === undefined ? null : slots[s.mid], frames: s.framesDecoded || 0,
        width: s.frameWidth || 0, height: s.frameHeight || 0, mime: codec ? codec.mimeType : null,
      };
    }
  });
  return out;
}
"""


def inbound_video(page) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    """The page's received videos by mid: {"who", "frames", "width", "height", "mime"}."""
    return dict(page.evaluate(INBOUND_VIDEO_JS))


def video_frames_by_sender(page) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Frames the page decoded so far from each participant (by id) whose video it receives."""
    return {str(k): int(v) for k, v in page.evaluate(VIDEO_BY_SENDER_JS).items()}


def participant_id(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.evaluate("() => window.gatewayClient.you.id"))


def in_meeting(page) -> bool:  # type: ignore[no-untyped-def]
    return page.evaluate("() => window.gatewayClient && window.gatewayClient.phase") == "meeting"


def join(  # type: ignore[no-untyped-def]
    open_participant, gateway: RunningGateway, room: str, name: str, tone: float | None, pin: str = "", video_file: Path | None = None
):
    query = f"name={name}" + (f"&pin={pin}" if pin else "")
    if video_file is None:
        return open_participant(f"{gateway.base_url}/r/{room}?{query}", tone)
    return open_participant(f"{gateway.base_url}/r/{room}?{query}", tone, video_file=video_file)


def write_solid_y4m(path: Path, rgb: tuple[int, int, int], width: int = 320, height: int = 240, frames: int = 5) -> Path:
    """A Y4M clip (4:2:0) of one solid colour, for Chromium's fake camera (--use-file-for-fake-video-capture):
    a picture that tells which participant sent it."""
    import numpy as np

    r, g, b = rgb
    # BT.601 limited range, what Chromium assumes for I420 camera frames
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    u = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    v = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    frame = b"FRAME\n" + np.concatenate(
        [
            np.full(width * height, y, np.uint8),
            np.full((width // 2) * (height // 2), u, np.uint8),
            np.full((width // 2) * (height // 2), v, np.uint8),
        ]
    ).tobytes()
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


# What each video tile of the page shows, by the name on the tile: the mean colour of the middle of
# its <video> (drawn into a canvas), or null while the tile shows initials (no live video yet).
TILE_COLOURS_JS = """
() => {
  const out = {};
  for (const tile of document.querySelectorAll('#tiles .tile')) {
    const name = tile.querySelector('.tile-name').textContent;
    const video = tile.querySelector('video');
    if (!video || video.hidden || !video.srcObject || video.readyState < 2 || !video.videoWidth) {
      out[name] = null;
      continue;
    }
    const w = video.videoWidth, h = video.videoHeight;
    const canvas = document.createElement('canvas');
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(video, 0, 0, w, h);
    // the middle half: away from edges an encoder may blur
    const data = ctx.getImageData(Math.floor(w / 4), Math.floor(h / 4), Math.floor(w / 2), Math.floor(h / 2)).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
    const n = data.length / 4;
    out[name] = {rgb: sum.map(x => Math.round(x / n)), width: w, height: h, key: tile.dataset.key};
  }
  return out;
}
"""


def tile_colours(page) -> dict[str, dict[str, object] | None]:  # type: ignore[no-untyped-def]
    """Each video tile of the page by its caption (the participant's name, "You" for one's own):
    {"rgb": [r, g, b] mean of the middle of the picture, "width", "height", "key": participant id}, or
    None while the tile shows no live video."""
    return dict(page.evaluate(TILE_COLOURS_JS))


# The page's video tiles in order, as a person sees them: key (participant id, "self", or
# "<id>#content" for someone's presentation), caption, classes that matter, badges, size, and
# whether live video plays in it (a <video> with a picture) or initials stand in.
TILES_JS = """
() => [...document.querySelectorAll('#tiles .tile')].map((tile) => {
  const video = tile.querySelector('video');
  const box = tile.getBoundingClientRect();
  return {
    key: tile.dataset.key,
    caption: tile.querySelector('.tile-name').textContent,
    content: tile.classList.contains('content'),
    main: tile.classList.contains('stage-main'),
    spotlight: tile.classList.contains('spotlight'),
    badges: [...tile.querySelectorAll('.badges .badge')].map((b) => b.textContent.trim()),
    width: box.width,
    height: box.height,
    playing: !!(video && !video.hidden && video.srcObject && video.readyState >= 2 && video.videoWidth),
    videoWidth: video ? video.videoWidth : 0,
    videoHeight: video ? video.videoHeight : 0,
  };
})
"""


def tiles(page) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The page's video tiles in order (see TILES_JS)."""
    return list(page.evaluate(TILES_JS))


# What the page's own screen sharing is doing: whether it shares (and the room confirmed it), the
# captured track's state, and what its sender for the screen line sends.
SHARE_JS = """
() => {
  const c = window.gatewayClient;
  const share = c && c.share;
  const out = {sharing: !!share, confirmed: !!(share && share.confirmed), track: share ? share.track.readyState : null,
               hint: share ? share.track.contentHint : null, sender_track: null, screen_mid: c ? c.screenMid : null};
  if (c && c.pc && c.screenMid) {
    const tr = c.pc.getTransceivers().find((t) => t.mid === c.screenMid);
    if (tr) {
      out.direction = tr.currentDirection;
      out.sender_track = tr.sender.track ? tr.sender.track.readyState : null;
      const params = tr.sender.getParameters();
      out.encodings = (params.encodings || []).map((e) => ({maxFramerate: e.maxFramerate, maxBitrate: e.maxBitrate, scale: e.scaleResolutionDownBy}));
    }
  }
  return out;
}
"""


def share_state(page) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The page's screen sharing now (see SHARE_JS)."""
    return dict(page.evaluate(SHARE_JS))


NEGLIGIBLE_LOSS = 0.001  # percent: emulation on, with (next to) nothing lost


def emulate_network(cdp, loss_percent: float, bytes_per_s: float = -1) -> None:  # type: ignore[no-untyped-def]
    """DevTools' network emulation of a page's WebRTC traffic, both ways: `loss_percent` of the
    packets dropped, at most `bytes_per_s` received (-1: no limit). Chromium 156 applies it to WebRTC
    through the rule-based command only (the older emulateNetworkConditions no longer), and only to
    sockets made while emulation is on: turn it on (NEGLIGIBLE_LOSS) before the page joins."""
    rule = {"urlPattern": "", "latency": 0, "downloadThroughput": bytes_per_s, "uploadThroughput": -1, "packetLoss": loss_percent}
    cdp.send("Network.emulateNetworkConditionsByRule", {"matchedNetworkConditions": [rule]})


def content_tile(page, presenter: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    return next((t for t in tiles(page) if t["key"] == f"{presenter}#content"), None)


def shows_content_first_and_large(page, presenter: str, name: str) -> bool:  # type: ignore[no-untyped-def]
    """The presenter's content is the page's first tile, large (the others in a strip below),
    captioned and badged, with live video playing in it."""
    shown = tiles(page)
    if not shown or shown[0]["key"] != f"{presenter}#content":
        return False
    first = shown[0]
    return bool(
        first["content"]
        and first["main"]
        and first["caption"] == f"{name} is presenting"
        and "Shared screen" in first["badges"]
        and first["playing"]
        and all(float(first["width"]) > 1.5 * float(t["width"]) for t in shown[1:])
    )


def content_frames(page, presenter: str) -> int:  # type: ignore[no-untyped-def]
    """Frames the page decoded on the slot that carries the presenter's content."""
    return video_frames_by_sender(page).get(f"{presenter}#content", 0)
