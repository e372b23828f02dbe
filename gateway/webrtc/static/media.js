// Local camera and microphone. Failing to get them never stops a join: people can still
// listen and watch, so we fall back from audio+video to audio only to nothing.

/**
 * Returns {stream, micTrack, cameraTrack, issue}; issue is null when both devices work, else
 * 'noCamera' (audio only), 'blocked', 'notFound', 'failed' or 'insecure' (no media at all).
 */
export async function acquireMedia(audio = true, video = true) {
  const md = navigator.mediaDevices;
  if (!md || typeof md.getUserMedia !== 'function') {
    // Only secure contexts (https, localhost) expose getUserMedia.
    return { stream: null, micTrack: null, cameraTrack: null, issue: 'insecure' };
  }
  let firstError = null;
  for (const constraints of [{ audio, video }, { audio }]) {
    try {
      const stream = await md.getUserMedia(constraints);
      const micTrack = stream.getAudioTracks()[0] || null;
      const cameraTrack = stream.getVideoTracks()[0] || null;
      return { stream, micTrack, cameraTrack, issue: cameraTrack ? null : 'noCamera' };
    } catch (err) {
      firstError = firstError || err;
    }
  }
  return { stream: null, micTrack: null, cameraTrack: null, issue: classify(firstError) };
}

function classify(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'blocked';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'notFound';
  return 'failed';
}

/** Ends all tracks, so the camera light goes off. */
export function stopStream(stream) {
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
}

/** Waits until ICE gathering is complete (we do not trickle), at most `timeoutMs`. */
export function iceGatheringDone(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, timeoutMs);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') finish();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}
