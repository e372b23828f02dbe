// Before joining: the camera's preview, a live microphone level, a speaker test sound, the choice
// of camera, microphone and speaker (remembered on this device), and joining with the microphone or
// the camera off. The stream checked here is the one the meeting then uses (no second prompt).

import { t } from '/static/i18n.js';
import { $, setText } from '/static/ui.js';
import { stopStream } from '/static/media.js';
import { remember, fillDeviceLists, applySpeaker } from '/static/devices.js';

let preview = null; // {stream, micTrack, cameraTrack, issue}
let meter = null; // {context, timer}
let starting = null;
let acquireWith = null; // media.js's acquireMedia with the chosen devices

/** Whether the person asked to join with the microphone / the camera off. */
export function joinMuted() { return $('precheck-mic-off').checked; }
export function joinCameraOff() { return $('precheck-cam-off').checked; }

export function initPrecheck() {
  $('camera-select').addEventListener('change', (e) => { remember('camera', e.target.value); restart(); });
  $('microphone-select').addEventListener('change', (e) => { remember('microphone', e.target.value); restart(); });
  $('speaker-select').addEventListener('change', (e) => remember('speaker', e.target.value));
  $('speaker-test').addEventListener('click', testSpeaker);
}

/** Starts the preview (once the form shows); `acquire` is media.js's acquireMedia. */
export function startPreview(acquire) {
  acquireWith = acquire;
  if (preview || starting) return starting;
  starting = acquire().then((media) => {
    starting = null;
    preview = media;
    show(media);
    return media;
  });
  return starting;
}

async function restart() {
  const old = preview;
  preview = null;
  stopMeter();
  if (old) stopStream(old.stream);
  if (acquireWith) await startPreview(acquireWith);
}

function show(media) {
  const video = $('preview-video');
  video.srcObject = media.cameraTrack ? new MediaStream([media.cameraTrack]) : null;
  $('preview-video').hidden = !media.cameraTrack;
  setText($('precheck-status'), media.issue ? t(`precheck_${media.issue}`) : '');
  if (media.micTrack) startMeter(media.micTrack);
  fillDevices().catch(() => {}); // (the lists stay empty and hidden)
}

function startMeter(track) {
  const context = new AudioContext();
  if (context.state === 'suspended') {
    // (made before any click: browsers hold it until the person touches the page)
    const wake = () => context.resume().catch(() => {});
    for (const kind of ['pointerdown', 'keydown']) document.addEventListener(kind, wake, { once: true });
  }
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const bar = $('mic-level');
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    const level = Math.min(1, peak * 1.5);
    bar.value = level;
    bar.setAttribute('aria-valuenow', level.toFixed(2));
  }, 100);
  meter = { context, timer };
}

function stopMeter() {
  if (!meter) return;
  clearInterval(meter.timer);
  meter.context.close().catch(() => {});
  meter = null;
}

function fillDevices() {
  const ids = { camera: 'camera-select', microphone: 'microphone-select', speaker: 'speaker-select' };
  return fillDeviceLists(ids, preview && preview.micTrack, preview && preview.cameraTrack);
}

/** A short two-tone chime on the chosen speaker. */
async function testSpeaker() {
  const rate = 16000;
  const samples = new Int16Array(rate * 0.6);
  for (let i = 0; i < samples.length; i += 1) {
    const hz = i < samples.length / 2 ? 660 : 880;
    const fade = Math.min(1, (samples.length - i) / 800, i / 800);
    samples[i] = Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 9000 * fade);
  }
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, k) => header.setUint8(at + k, c.charCodeAt(0)));
  text(0, 'RIFF'); header.setUint32(4, 36 + samples.byteLength, true); text(8, 'WAVEfmt ');
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); text(36, 'data'); header.setUint32(40, samples.byteLength, true);
  const audio = new Audio(URL.createObjectURL(new Blob([header, samples], { type: 'audio/wav' })));
  await applySpeaker(audio);
  $('speaker-test').dataset.played = String(Number($('speaker-test').dataset.played || 0) + 1);
  await audio.play().catch(() => {});
}

/** Joining: the checked stream goes to the meeting (null when there was none); the meter stops. */
export async function takePreview() {
  if (starting) await starting;
  stopMeter();
  const media = preview;
  preview = null;
  $('preview-video').srcObject = null;
  return media;
}
