// The camera, microphone and speaker chosen on this device (localStorage), and the lists to choose
// them from: the join form's device check and the meeting's "Your devices" use the same ones.

import { t } from '/static/i18n.js';
import { $, el } from '/static/ui.js';

const KEY = 'gateway.devices';

/** The devices chosen on this device before: {camera, microphone, speaker} (ids, or absent). */
export function chosenDevices() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || '{}') || {};
  } catch {
    return {};
  }
}

/** Remembers the choice of `kind` ('camera', 'microphone', 'speaker') on this device. */
export function remember(kind, id) {
  const devices = { ...chosenDevices(), [kind]: id };
  try { localStorage.setItem(KEY, JSON.stringify(devices)); } catch { /* private mode */ }
}

/** getUserMedia constraints for the chosen device of 'audio' or 'video' (whatever works when none is chosen). */
export function constraintsFor(kind) {
  const id = chosenDevices()[kind === 'audio' ? 'microphone' : 'camera'];
  return id ? { deviceId: { ideal: id } } : true;
}

/** Fills the three <select>s named in `ids` ({camera, microphone, speaker}: element ids) with the
 * browser's devices, the ones in use (the tracks') selected; a list with nothing in it is hidden
 * with its label (its .field). */
export async function fillDeviceLists(ids, micTrack, cameraTrack) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const inUse = {
    videoinput: cameraTrack && cameraTrack.getSettings().deviceId,
    audioinput: micTrack && micTrack.getSettings().deviceId,
    audiooutput: chosenDevices().speaker,
  };
  for (const [kind, id] of [['videoinput', ids.camera], ['audioinput', ids.microphone], ['audiooutput', ids.speaker]]) {
    const select = $(id);
    const options = devices.filter((d) => d.kind === kind && d.deviceId);
    const value = select.value;
    select.replaceChildren(...options.map((d, i) => el('option', { value: d.deviceId, text: d.label || t('precheckDevice', { n: i + 1 }) })));
    if (inUse[kind] && options.some((d) => d.deviceId === inUse[kind])) select.value = inUse[kind];
    else if (value && options.some((d) => d.deviceId === value)) select.value = value;
    select.closest('.field').hidden = options.length === 0;
  }
}

/** Plays the meeting's (or the test sound's) audio on the chosen speaker, where the browser can (setSinkId). */
export async function applySpeaker(audioElement) {
  const speaker = chosenDevices().speaker;
  if (speaker && audioElement.setSinkId) await audioElement.setSinkId(speaker).catch(() => {});
}
