"""Real headless Chromium in tests: its flags, and what a meeting page hears, sees and shows
(measured in the page with an AnalyserNode on the audio it receives, and getStats for video)."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import RunningGateway

CHROMIUM = "/usr/bin/chromium"


def chromium_args(tone_wav: Path | None, allow_media: bool = True) -> list[str]:
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--use-fake-device-for-media-stream",
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
    return args



HEARD_DB = -75.0  # analyser level at a tone's frequency above which the tone counts as heard

# Installed once per page: every 20 ms, the level at each watched frequency of the meeting audio the
# page receives; remembers when each tone was last above the threshold (Date.now(), so times from
# different pages on this machine compare).
MONITOR_JS = """
([freqs, threshold]) => {
  if (window.__monitor) return;
  const m = window.__monitor = {lastHeard: {}, level: {}, stream: null, ctx: null, analyser: null};
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


def in_meeting(page) -> bool:  # type: ignore[no-untyped-def]
    return page.evaluate("() => window.gatewayClient && window.gatewayClient.phase") == "meeting"


def join(open_participant, gateway: RunningGateway, room: str, name: str, tone: float | None, pin: str = ""):  # type: ignore[no-untyped-def]
    query = f"name={name}" + (f"&pin={pin}" if pin else "")
    return open_participant(f"{gateway.base_url}/r/{room}?{query}", tone)
