// Main module of the browser client: join form, WebSocket signalling, the single
// RTCPeerConnection of a session, reconnects, and the wiring of all controls.
// The protocol is defined in gateway/webrtc/signalling.py: the gateway always sends the offer,
// we answer with a complete (non-trickled) description.

import { t, detectLang, setLang, getLang, applyStatic, has } from '/static/i18n.js';
import { acquireMedia, stopStream, iceGatheringDone } from '/static/media.js';
import { $, el, setText, toast, clearToasts, confirmDialog, showScreen } from '/static/ui.js';
import { renderMeeting } from '/static/views.js';
import { initChat, addMessages, removeMessage, renderChat, clearChat } from '/static/chat.js';
import { initPrecheck, startPreview, takePreview, joinMuted, joinCameraOff } from '/static/precheck.js';
import { constraintsFor, applySpeaker, remember, fillDeviceLists } from '/static/devices.js';

const acquireChosen = () => acquireMedia(constraintsFor('audio'), constraintsFor('video'));

const PING_INTERVAL_MS = 20000;
const BACKOFF_S = [1, 2, 4, 8, 15];

const state = {
  phase: 'form', // form | connecting | lobby | meeting | ended | reconnecting
  roomId: '',
  roomFromPath: '',
  name: '',
  pin: '',
  hostLink: '', // a signed host link's token (?host=...): joins as host without the PIN
  signIn: '', // a sign-in with the identity provider (its session token, kept in this tab): a host where the room allows
  endedHours: null, // opening hours sent with an "ended: closed"
  formErrors: { room: null, name: null, pin: null }, // i18n keys, so a language switch re-renders them
  ws: null,
  pc: null,
  session: 0, // bumped whenever a connection is torn down; stale async work checks it
  offers: Promise.resolve(), // offers are handled one at a time, in arrival order
  you: null,
  room: null,
  resume: null,
  lobby: null,
  iceServers: [],
  localStream: null,
  micTrack: null,
  cameraTrack: null,
  mediaIssue: null,
  mediaBannerHidden: false,
  remoteAudioStream: null,
  audioMid: null,
  videoMid: null,
  screenMid: null, // the offer's line for our shared screen (answered sendonly; a track only while sharing)
  share: null, // while sharing: {stream, track, confirmed (the room shows us presenting)}
  videoSlots: {},
  videoStreams: {},
  lastError: null,
  lastNotice: null,
  ended: null,
  pingTimer: null,
  lastPong: 0,
  reconnectAttempt: 0,
  reconnectTimer: null,
  countdownTimer: null,
  reconnectDeadline: 0,
  knownHands: null, // whose raised hand a host has already been told about
  knownSpotlight: undefined, // who was in the spotlight when we last told (undefined: not yet known)
  knownBroadcasting: undefined, // what recorded or streamed the meeting when we last told
  knownPresenter: undefined, // who presented when we last told (undefined: not yet known)
};

// Test hook (Playwright): live views of the client state.
window.gatewayClient = {
  get ws() { return state.ws; },
  get pc() { return state.pc; },
  get you() { return state.you; },
  get room() { return state.room; },
  get resume() { return state.resume; },
  get localStream() { return state.localStream; },
  get micTrack() { return state.micTrack; },
  get cameraTrack() { return state.cameraTrack; },
  get remoteAudioStream() { return state.remoteAudioStream; },
  get videoSlots() { return state.videoSlots; },
  get videoStreams() { return state.videoStreams; },
  get lastError() { return state.lastError; },
  get lastNotice() { return state.lastNotice; },
  get ended() { return state.ended; },
  get phase() { return state.phase; },
  get screenMid() { return state.screenMid; },
  get share() { return state.share; },
  send,
};

function send(obj) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(obj));
  return true;
}

// -- rendering ---------------------------------------------------------------------------------

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  try {
    renderForm();
    if (state.phase === 'lobby') renderLobbyScreen();
    else if (state.phase === 'meeting') {
      renderMeeting(state, hostActions);
      renderChat(state);
      renderMediaBanner();
    } else if (state.phase !== 'form') renderStatus();
    const roomName = state.room && state.room.name;
    document.title = roomName && state.phase === 'meeting' ? `${roomName} – ${t('appName')}` : t('appName');
  } catch (err) {
    console.error('gateway client: render failed', err);
  }
}

function setPhase(phase, { focus = true } = {}) {
  const changed = state.phase !== phase;
  state.phase = phase;
  if (changed) {
    const screen = { form: 'screen-form', lobby: 'screen-lobby', meeting: 'screen-meeting' }[phase] || 'screen-status';
    showScreen(screen, focus);
    if (phase !== 'meeting') document.body.classList.remove('panel-open');
  }
  render();
}

function renderForm() {
  const title = $('form-title');
  setText(title, state.roomFromPath ? t('formTitleRoom', { room: state.roomFromPath }) : t('formTitle'));
  for (const field of ['room', 'name', 'pin']) {
    const key = state.formErrors[field];
    const input = $(`${field}-input`);
    const error = $(`${field}-error`);
    if (key) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    error.hidden = !key;
    setText(error, key ? t(key) : '');
  }
}

function renderLobbyScreen() {
  const lobby = state.lobby || {};
  setText($('lobby-intro'), t('lobbyIntro', { room: lobby.room_name || state.roomId }));
  const seconds = Number(lobby.estimated_wait_s) || 0;
  const minutes = Math.round(seconds / 60);
  const wait = seconds < 45 ? t('lobbyWaitUnderMinute')
    : minutes <= 1 ? t('lobbyWaitOneMinute') : t('lobbyWaitMinutes', { minutes });
  const noHost = lobby.host_present === false ? ` ${t('lobbyNoHost')}` : '';
  setText($('lobby-position'), `${t('lobbyPosition', { position: lobby.position ?? '–' })} ${wait}${noHost}`);
}

const ENDED_WITH_RETRY = new Set(['left', 'locked', 'full', 'denied', 'meeting_ended', 'shutdown', 'overloaded', 'rate_limited', 'sign_in_ended']);

/** The shared status screen: connecting, connection lost (with countdown), ended. */
function renderStatus() {
  const spinner = $('status-spinner');
  let title;
  let text;
  let actions = [];
  if (state.phase === 'connecting') {
    title = t('connectingTitle');
    text = t('connectingText');
  } else if (state.phase === 'reconnecting') {
    title = t('lostTitle');
    const seconds = Math.ceil((state.reconnectDeadline - Date.now()) / 1000);
    text = state.reconnectDeadline && seconds > 0 ? t('lostCountdown', { seconds }) : t('lostTrying');
    actions = [['reconnectNow', 'btn-primary', reconnectNow], ['leave', '', leave]];
  } else {
    const reason = state.ended || 'unknown';
    const known = has(`ended_${reason}`);
    title = known ? t(`ended_${reason}`) : t('ended_generic');
    text = known ? t(`ended_${reason}_text`) : t('ended_generic_text', { reason });
    if (ENDED_WITH_RETRY.has(reason) || !known) actions = [['joinAgain', 'btn-primary', join]];
    if (reason === 'unknown_room') actions = [['changeRoom', 'btn-primary', changeRoom]];
  }
  renderHours(state.phase === 'ended' && state.ended === 'closed' ? state.endedHours : null);
  spinner.hidden = !(state.phase === 'connecting' || (state.phase === 'reconnecting' && !state.reconnectDeadline));
  setText($('status-title'), title);
  setText($('status-text'), text);
  // Rebuild the buttons only when they change, so the countdown does not steal the focus.
  const box = $('status-actions');
  const signature = `${getLang()}:${actions.map((a) => a[0]).join(',')}`;
  if (box.dataset.signature !== signature) {
    box.dataset.signature = signature;
    box.replaceChildren(...actions.map(([key, cls, fn]) =>
      el('button', { type: 'button', class: `btn ${cls}`, text: t(key), onclick: fn })));
  }
}

/** The opening hours of a closed room: the next opening, then the week and the closed days. */
function renderHours(hours) {
  const box = $('status-hours');
  box.hidden = !hours;
  if (!hours) return;
  const parts = [];
  if (hours.next_opening) {
    const when = new Date(hours.next_opening);
    const text = when.toLocaleString(getLang(), { weekday: 'long', day: 'numeric', month: 'long', hour: '2-digit', minute: '2-digit', timeZone: hours.timezone });
    parts.push(el('p', { class: 'hours-next', text: t('hoursNext', { when: text }) }));
  }
  parts.push(el('h2', { text: t('hoursTitle') }));
  const rows = Object.entries(hours.weekly || {}).map(([day, spans]) =>
    el('tr', {}, el('th', { scope: 'row', text: t(`day_${day}`) }),
      el('td', { text: spans && spans.length ? spans.join(', ').replace(/-/g, '–') : t('hoursNone') })));
  parts.push(el('table', { class: 'hours-table' }, el('tbody', {}, ...rows)));
  if (hours.closed && hours.closed.length) {
    const days = hours.closed.slice(0, 10).map((d) => new Date(`${d}T12:00:00`).toLocaleDateString(getLang()));
    parts.push(el('p', { class: 'muted-text', text: t('hoursClosedDays', { days: days.join(', ') }) }));
  }
  box.replaceChildren(...parts);
}

async function openInvite() {
  send({ type: 'list_systems' });
  const dialog = $('invite-dialog');
  const opener = document.activeElement;
  $('invite-uri').value = '';
  dialog.returnValue = '';
  dialog.addEventListener('close', () => {
    if (opener && opener.isConnected) opener.focus();
    if (dialog.returnValue !== 'invite') return;
    const uri = $('invite-uri').value.trim();
    const system = $('invite-system').value;
    if (uri) send({ type: 'dial', uri });
    else if (system) send({ type: 'dial', system });
  }, { once: true });
  dialog.showModal();
  $('invite-system').focus();
}

function renderMediaBanner() {
  const banner = $('media-banner');
  const issue = state.mediaIssue;
  banner.hidden = !issue || state.mediaBannerHidden;
  if (banner.hidden) return;
  const prefix = { noCamera: 'mediaNoCamera', blocked: 'mediaBlocked', notFound: 'mediaNotFound', insecure: 'mediaInsecure' }[issue] || 'mediaFailed';
  setText($('media-banner-title'), t(`${prefix}Title`));
  setText($('media-banner-text'), t(`${prefix}Text`));
  $('media-retry').hidden = issue === 'insecure';
}

// -- joining, connection and reconnects -----------------------------------------------------------

async function join() {
  closeSession();
  Object.assign(state, { ended: null, resume: null, you: null, room: null, lobby: null, reconnectAttempt: 0 });
  Object.assign(state, { lastError: null, lastNotice: null });
  clearToasts();
  state.knownHands = null;
  state.knownSpotlight = undefined;
  state.knownBroadcasting = undefined;
  state.knownPresenter = undefined;
  setPhase('connecting');
  if (!state.localStream) {
    const session = state.session;
    applyMedia((await takePreview()) || (await acquireChosen()));
    if (session !== state.session || state.phase !== 'connecting') return; // left meanwhile
  }
  connect();
}

function applyMedia(media) {
  state.localStream = media.stream;
  state.micTrack = media.micTrack;
  state.cameraTrack = media.cameraTrack;
  state.mediaIssue = media.issue;
  state.mediaBannerHidden = false;
  if (state.cameraTrack) state.cameraTrack.addEventListener('ended', scheduleRender);
}

function connect() {
  // (the room in the address lets a front in front of several nodes send the socket to the room's node)
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?room=${encodeURIComponent(state.roomId)}`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    connectionLost();
    return;
  }
  state.ws = ws;
  ws.addEventListener('open', () => {
    if (ws !== state.ws) return;
    const msg = { type: 'join', room: state.roomId, name: state.name, pin: state.pin };
    if (state.hostLink) msg.host = state.hostLink;
    if (state.signIn) msg.signin = state.signIn;
    if (state.resume) msg.resume = state.resume;
    send(msg);
    state.lastPong = 0;
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => {
      // A silently dropped network can leave a socket "open" for minutes; missing pongs tell sooner.
      if (state.lastPong && Date.now() - state.lastPong > 2.5 * PING_INTERVAL_MS) {
        state.ws = null;
        try { ws.close(); } catch { /* ignore */ }
        connectionLost();
        return;
      }
      send({ type: 'ping' });
    }, PING_INTERVAL_MS);
  });
  ws.addEventListener('message', (ev) => {
    if (ws === state.ws) onMessage(ev.data);
  });
  ws.addEventListener('close', () => {
    if (ws !== state.ws) return; // we closed it on purpose
    state.ws = null;
    connectionLost();
  });
}

/** Closes socket and peer connection (local media stays, for a reconnect). */
function closeSession() {
  state.session += 1;
  clearInterval(state.pingTimer);
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdownTimer);
  const ws = state.ws;
  state.ws = null;
  if (ws) {
    try { ws.close(1000); } catch { /* already closed */ }
  }
  if (state.pc) {
    try { state.pc.close(); } catch { /* ignore */ }
  }
  state.pc = null;
  state.offers = Promise.resolve();
  state.videoStreams = {};
  state.videoSlots = {};
  state.remoteAudioStream = null;
  $('remote-audio').srcObject = null;
  $('audio-banner').hidden = true;
}

function connectionLost() {
  if (state.phase === 'form' || state.phase === 'ended') return;
  closeSession();
  setPhase('reconnecting');
  const delay = BACKOFF_S[Math.min(state.reconnectAttempt, BACKOFF_S.length - 1)];
  state.reconnectAttempt += 1;
  state.reconnectDeadline = Date.now() + delay * 1000;
  state.reconnectTimer = setTimeout(reconnectNow, delay * 1000);
  state.countdownTimer = setInterval(renderStatus, 1000);
  renderStatus();
}

function reconnectNow() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdownTimer);
  const pending = state.ws; // "Reconnect now" pressed while an attempt is still under way
  state.ws = null;
  if (pending) {
    try { pending.close(); } catch { /* ignore */ }
  }
  state.reconnectDeadline = 0;
  renderStatus();
  connect(); // joins again with the resume token, if we had one
}

/** The session is over for good: show why (or the form again for a wrong PIN). */
function endSession(reason) {
  if (reason === 'sign_in_ended') forgetSignIn();
  stopShare();
  closeSession();
  stopStream(state.localStream);
  Object.assign(state, { localStream: null, micTrack: null, cameraTrack: null, mediaIssue: null });
  Object.assign(state, { ended: reason, resume: null, you: null, room: null, lobby: null });
  clearToasts(); // messages about the meeting are stale now; the screen says what happened
  if (reason === 'wrong_pin') {
    state.formErrors = { room: null, name: null, pin: state.pin ? 'formPinWrong' : 'formPinRequired' };
    setPhase('form', { focus: false });
    $('pin-input').value = state.pin;
    $('pin-input').focus();
    $('pin-input').select();
    return;
  }
  setPhase('ended');
}

function leave() {
  send({ type: 'leave' });
  endSession('left');
}

function changeRoom() {
  state.roomFromPath = '';
  state.ended = null;
  $('room-field').hidden = false;
  setPhase('form', { focus: false });
  $('room-input').focus();
}

// -- messages from the gateway ------------------------------------------------------------------

function onMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return;
  }
  if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
  const handler = HANDLERS[msg.type];
  if (!handler) return; // unknown types are ignored (newer gateway)
  try {
    handler(msg);
  } catch (err) {
    console.error(`gateway client: handling "${msg.type}" failed`, err);
  }
}

const HANDLERS = {
  pong(msg) {
    state.lastPong = Date.now();
    if (msg.resume) state.resume = msg.resume; // (kept fresh: another node takes only a recent one)
  },

  resume(msg) {
    if (msg.resume) state.resume = msg.resume; // our mute state changed: what another node would take back
  },

  chat(msg) {
    if (Array.isArray(msg.messages)) addMessages(msg.messages, state);
  },

  chat_removed(msg) {
    removeMessage(msg.id);
  },

  lobby(msg) {
    state.lobby = msg;
    if (msg.resume) state.resume = msg.resume; // a lost connection keeps the place in the queue too
    state.reconnectAttempt = 0;
    setPhase('lobby', { focus: state.phase !== 'lobby' });
  },

  joined(msg) {
    const wasReconnect = state.phase === 'reconnecting';
    if (!wasReconnect) clearChat(); // (a new meeting: the last one's chat is gone; a reconnect gets it again)
    state.you = msg.you || null;
    state.room = msg.room || null;
    state.resume = msg.resume || state.resume;
    state.reconnectAttempt = 0;
    if (Array.isArray(msg.ice_servers)) state.iceServers = normalizeIceServers(msg.ice_servers);
    if (state.you && !wasReconnect) {
      // Asked before joining: in with the microphone or the camera off (off here before anything is sent).
      if (state.startMuted && !state.you.muted) { state.you.muted = true; send({ type: 'mute_self', muted: true }); }
      if (state.startCameraOff && !state.you.video_off) { state.you.video_off = true; send({ type: 'video_self', off: true }); }
    }
    setPhase('meeting');
    applyYouToTracks();
    fillMeetingDevices();
    announceChanges();
    announceSpotlight();
    announceBroadcasting();
    followPresentation();
    if (wasReconnect) toast('notice', t('reconnected'));
    // Without a device, tell the others honestly that we are muted / have no video.
    if (state.you && !state.micTrack && !state.you.muted) send({ type: 'mute_self', muted: true });
    if (state.you && !state.cameraTrack && !state.you.video_off) send({ type: 'video_self', off: true });
  },

  offer(msg) {
    if (typeof msg.sdp !== 'string') return;
    if (msg.video_slots && typeof msg.video_slots === 'object') state.videoSlots = { ...msg.video_slots };
    const session = state.session;
    state.offers = state.offers
      .then(() => handleOffer(msg, session))
      .catch((err) => {
        if (session !== state.session) return;
        state.lastError = { code: 'webrtc', message: String((err && err.message) || err) };
        toast('error', t('error_webrtc'));
      });
    scheduleRender();
  },

  video_slots(msg) {
    if (msg.video_slots && typeof msg.video_slots === 'object') state.videoSlots = { ...msg.video_slots };
    scheduleRender();
  },

  state(msg) {
    if (msg.room && typeof msg.room === 'object') state.room = msg.room;
    state.you = msg.you && typeof msg.you === 'object' ? msg.you : null;
    applyYouToTracks();
    announceChanges();
    announceSpotlight();
    announceBroadcasting();
    followPresentation();
    scheduleRender();
  },

  notice(msg) {
    state.lastNotice = msg;
    const code = String(msg.code || '');
    if (code === 'presentation_stopped') {
      // Our presentation ended, not by us (taken over, stopped by a host): stop capturing, say why.
      stopShare();
      const reason = String(msg.reason || '');
      const key = msg.by && has(`notice_presentation_${reason}_by`) ? `notice_presentation_${reason}_by` : `notice_presentation_${reason}`;
      clearToasts('presentation');
      toast('notice', has(key) ? t(key, msg) : t('presentationOffNotice'), { code: 'presentation' });
      scheduleRender();
      return;
    }
    // Prefer the variant naming who did it ("Anna has muted you"), when the gateway says.
    const key = msg.by && has(`notice_${code}_by`) ? `notice_${code}_by` : `notice_${code}`;
    const text = has(key) ? t(key, msg) : msg.message || t('notice_generic', { text: code.replace(/_/g, ' ') });
    // Once a host lifts the ban, an earlier "you may not unmute" message is no longer true.
    if (code === 'self_unmute_allowed' || code === 'host_unmuted') clearToasts('self_unmute_forbidden');
    toast('notice', text, { code });
  },

  error(msg) {
    state.lastError = msg;
    const code = String(msg.code || '');
    const message = msg.message || code;
    const key = `error_${code}`;
    if (code === 'self_unmute_forbidden') {
      if (state.micTrack) state.micTrack.enabled = false; // stays muted, as the gateway insists
      clearToasts(code); // the notice said the same already
    }
    if (msg.request === 'present') {
      // The room did not let us present (only hosts may): stop the capture we started.
      stopShare();
      const text = code === 'not_allowed' ? t('shareHostsOnly') : has(key) ? t(key, { message }) : t('error_generic', { message });
      toast('error', text, { code });
      scheduleRender();
      return;
    }
    toast('error', has(key) ? t(key, { message }) : t('error_generic', { message }), { code });
    // A refused join (e.g. a name the gateway rejects) leaves us nowhere: back to the form.
    if (msg.request === 'join' && (state.phase === 'connecting' || state.phase === 'reconnecting')) {
      closeSession();
      setPhase('form', { focus: false });
      $('name-input').focus();
    }
    scheduleRender();
  },

  ended(msg) {
    state.endedHours = msg.hours && typeof msg.hours === 'object' ? msg.hours : null;
    endSession(String(msg.reason || 'unknown'));
  },

  systems(msg) {
    const select = $('invite-system');
    const systems = Array.isArray(msg.systems) ? msg.systems : [];
    select.replaceChildren(
      el('option', { value: '', text: t('inviteSystemNone') }),
      ...systems.map((s) => el('option', { value: String(s.id), text: String(s.name) })),
    );
    if (systems.length) select.value = String(systems[0].id);
  },
};

function normalizeIceServers(list) {
  return list.map((s) => (typeof s === 'string' ? { urls: s } : s)).filter((s) => s && s.urls);
}

/** The gateway decides the mute; we mirror it on the track (it enforces it on the media anyway). */
function applyYouToTracks() {
  const you = state.you;
  if (!you) return;
  if (state.micTrack) state.micTrack.enabled = !you.muted;
  if (state.cameraTrack) state.cameraTrack.enabled = !you.video_off;
}

/** Hosts are told when someone raises a hand (the gateway itself announces new waiting people). */
function announceChanges() {
  const { you, room } = state;
  if (!you || !room || you.role !== 'host') {
    state.knownHands = null;
    return;
  }
  const raised = (room.participants || []).filter((p) => p.hand_raised && p.id !== you.id);
  if (state.knownHands) {
    for (const p of raised) if (!state.knownHands.has(p.id)) toast('notice', t('handRaisedNotice', { name: p.name }));
  }
  state.knownHands = new Set(raised.map((p) => p.id));
}

/** Everyone is told when the spotlight moves (the picture changes; a screen reader hears it). */
function announceSpotlight() {
  const { you, room } = state;
  if (!room) return;
  const spotlight = room.spotlight || null;
  const known = state.knownSpotlight;
  state.knownSpotlight = spotlight;
  if (known === undefined || known === spotlight) return; // (on joining, the tiles show it already)
  clearToasts('spotlight');
  const p = (room.participants || []).find((x) => x.id === spotlight);
  if (!spotlight) toast('notice', t('spotlightOffNotice'), { code: 'spotlight' });
  else if (you && spotlight === you.id) toast('notice', t('spotlightYouNotice'), { code: 'spotlight' });
  else if (p) toast('notice', t('spotlightOnNotice', { name: p.name }), { code: 'spotlight' });
}

/** Everyone is told when the meeting starts or stops being recorded or streamed, and on joining
 * one that is (the badges stay while it runs; a screen reader hears this). */
function announceBroadcasting() {
  const { room } = state;
  if (!room) return;
  const running = room.broadcasting || {};
  const known = state.knownBroadcasting;
  state.knownBroadcasting = { recording: !!running.recording, streaming: !!running.streaming };
  for (const what of ['recording', 'streaming']) {
    const now = !!running[what];
    const before = known ? known[what] : false;
    if (now === before) continue;
    clearToasts(what);
    const key = `${what}${now ? 'On' : 'Off'}Notice`;
    toast('notice', t(key), { code: what });
  }
}

/** Who presents: everyone is told when it starts and ends (the big tile comes and goes; a screen
 * reader hears it). Our own share follows the room: confirmed once the room shows us presenting,
 * stopped when the room no longer does (the gateway's notice says why, when it was not us). */
function followPresentation() {
  const { you, room } = state;
  if (!room || !you) return;
  const presentation = room.presentation || null;
  const presenter = presentation ? presentation.presenter : null;
  const share = state.share;
  if (share && presenter === you.id && !share.confirmed) {
    share.confirmed = true;
    clearToasts('presentation');
    toast('notice', t('sharingNotice'), { code: 'presentation' });
  } else if (share && share.confirmed && presenter !== you.id) {
    stopShare();
  } else if (!share && presenter === you.id && presentation.content === 'screen') {
    // (we came back after a lost connection, and the shared screen did not survive it)
    send({ type: 'present', on: false });
  }
  const known = state.knownPresenter;
  state.knownPresenter = presenter;
  if (known === undefined || known === presenter) return; // (on joining, the tiles show it already)
  if (known === you.id) return; // (ours ended: we stopped it, or the gateway's notice says why)
  if (presenter && presenter !== you.id) {
    const p = (room.participants || []).find((x) => x.id === presenter);
    clearToasts('presentation');
    if (p) toast('notice', t('presentationOnNotice', { name: p.name }), { code: 'presentation' });
  } else if (!presenter) {
    clearToasts('presentation');
    toast('notice', t('presentationOffNotice'), { code: 'presentation' });
  }
}

// -- WebRTC ---------------------------------------------------------------------------------------

function createPeerConnection() {
  const pc = new RTCPeerConnection({ iceServers: state.iceServers });
  pc.addEventListener('track', (ev) => {
    if (pc === state.pc) onTrack(ev);
  });
  pc.addEventListener('connectionstatechange', () => {
    if (pc !== state.pc || pc.connectionState !== 'failed') return;
    // Media is gone: start over with a fresh connection (the resume token keeps our place).
    state.lastError = { code: 'webrtc', message: 'ICE/DTLS connection failed' };
    toast('error', t('error_webrtc'));
    connectionLost();
  });
  state.pc = pc;
  return pc;
}

async function handleOffer(msg, session) {
  if (session !== state.session) return;
  const pc = state.pc || createPeerConnection();
  const audioMid = String(msg.audio_mid);
  const videoMid = String(msg.video_mid);
  const screenMid = msg.screen_mid ? String(msg.screen_mid) : null; // (an older gateway has none)
  state.audioMid = audioMid;
  state.videoMid = videoMid;
  state.screenMid = screenMid;
  await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
  for (const tr of pc.getTransceivers()) {
    if (tr.mid == null || tr.currentDirection === 'stopped' || tr.stopped) continue;
    if (tr.mid === audioMid) {
      await tr.sender.replaceTrack(state.micTrack || null);
      tr.direction = 'sendrecv';
    } else if (tr.mid === videoMid) {
      await tr.sender.replaceTrack(state.cameraTrack || null);
      tr.direction = 'sendonly';
    } else if (tr.mid === screenMid) {
      // Sendonly from the start: sharing is then replaceTrack alone (a sender without a track sends nothing).
      await tr.sender.replaceTrack(state.share ? state.share.track : null);
      tr.direction = 'sendonly';
    } else {
      tr.direction = 'recvonly'; // a video slot: another participant's camera
    }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await iceGatheringDone(pc, 3000);
  if (session !== state.session || pc !== state.pc) return;
  send({ type: 'answer', sdp: pc.localDescription.sdp });
  if (state.share) await tuneScreenSender(screenSender(), state.share.track); // (a share that survived a reconnect)
}

function onTrack(ev) {
  const track = ev.track;
  if (track.kind === 'audio') {
    // The one mixed meeting audio (transceiver audio_mid).
    state.remoteAudioStream = new MediaStream([track]);
    playRemoteAudio();
    return;
  }
  const mid = ev.transceiver ? ev.transceiver.mid : null;
  if (mid == null) return;
  state.videoStreams[mid] = new MediaStream([track]);
  // Remote tracks are "muted" until frames flow; re-render when that changes.
  for (const type of ['mute', 'unmute', 'ended']) track.addEventListener(type, scheduleRender);
  scheduleRender();
}

function playRemoteAudio() {
  const audio = $('remote-audio');
  applySpeaker(audio);
  audio.srcObject = state.remoteAudioStream;
  audio.play().then(
    () => { $('audio-banner').hidden = true; },
    // Autoplay policy: ask for one click instead of staying silent.
    () => { $('audio-banner').hidden = !state.remoteAudioStream; },
  );
}

async function retryMedia() {
  const media = await acquireChosen();
  if (!media.stream) {
    state.mediaIssue = media.issue;
    toast('error', t(`${{ blocked: 'mediaBlocked', notFound: 'mediaNotFound', insecure: 'mediaInsecure' }[media.issue] || 'mediaFailed'}Title`));
    scheduleRender();
    return;
  }
  stopStream(state.localStream);
  applyMedia(media);
  applyYouToTracks();
  fillMeetingDevices();
  // The senders exist already with the right directions: swapping tracks needs no renegotiation.
  for (const [mid, track] of [[state.audioMid, state.micTrack], [state.videoMid, state.cameraTrack]]) {
    const sender = senderOf(mid);
    if (sender) await sender.replaceTrack(track).catch(() => {});
  }
  scheduleRender();
}

// -- switching camera, microphone and speaker in the meeting ------------------------------------

const MEETING_DEVICES = { camera: 'meeting-camera-select', microphone: 'meeting-microphone-select', speaker: 'meeting-speaker-select' };

function fillMeetingDevices() {
  fillDeviceLists(MEETING_DEVICES, state.micTrack, state.cameraTrack).catch(() => {}); // (the lists stay hidden)
}

function senderOf(mid) {
  if (!state.pc || mid == null) return null;
  const tr = state.pc.getTransceivers().find((x) => x.mid === mid);
  return tr ? tr.sender : null;
}

/** Another camera or microphone (`kind`: 'camera' | 'microphone') without rejoining: the new track
 * replaces the old one on its sender (no renegotiation), keeps the mute and camera-off state, and
 * the old device is released. A camera is released first (phones cannot open two at once); a
 * microphone only once the new one works, so a failed switch leaves the person heard. */
async function switchDevice(kind, deviceId) {
  const audio = kind === 'microphone';
  const old = audio ? state.micTrack : state.cameraTrack;
  if (old && old.getSettings().deviceId === deviceId) return;
  remember(kind, deviceId);
  if (!audio && old) old.stop();
  let track = null;
  try {
    const stream = await navigator.mediaDevices.getUserMedia(audio ? { audio: { deviceId: { exact: deviceId } } } : { video: { deviceId: { exact: deviceId } } });
    track = (audio ? stream.getAudioTracks() : stream.getVideoTracks())[0] || null;
  } catch (err) {
    console.warn(`gateway client: switching the ${kind} failed`, err);
  }
  if (!track) {
    toast('error', t(audio ? 'deviceMicrophoneFailed' : 'deviceCameraFailed'), { code: 'device' });
    if (!audio) await retryMedia(); // (the old camera is released: take whichever works)
    fillMeetingDevices();
    return;
  }
  if (state.phase !== 'meeting' && state.phase !== 'reconnecting') {
    track.stop();
    return;
  }
  const you = state.you || {};
  track.enabled = audio ? !you.muted : !you.video_off;
  const stream = new MediaStream([...(state.localStream ? state.localStream.getTracks() : []).filter((x) => x !== old), track]);
  if (audio) state.micTrack = track;
  else {
    state.cameraTrack = track;
    track.addEventListener('ended', scheduleRender);
  }
  state.localStream = stream;
  const sender = senderOf(audio ? state.audioMid : state.videoMid);
  if (sender) await sender.replaceTrack(track).catch((err) => console.warn('gateway client: new track not sent', err));
  if (old) old.stop();
  clearToasts('device');
  fillMeetingDevices();
  scheduleRender();
}

function switchSpeaker(deviceId) {
  remember('speaker', deviceId);
  applySpeaker($('remote-audio'));
}

// -- sharing the screen ---------------------------------------------------------------------------

const SCREEN_MAX = { width: 1920, height: 1080, fps: 15, bitrate: 1_500_000 };

function screenSender() {
  return senderOf(state.screenMid);
}

/** Encodes a screen for reading, not for motion: at most 1080p, 15 frames a second, ~1.5 Mbit/s
 * (where the browser lets us set it; the contentHint 'detail' keeps the resolution when it must cut). */
async function tuneScreenSender(sender, track) {
  if (!sender || !track || typeof sender.getParameters !== 'function') return;
  try {
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) return; // not negotiated yet: done after the answer
    const { width = 0, height = 0 } = track.getSettings();
    const scale = Math.max(1, width / SCREEN_MAX.width, height / SCREEN_MAX.height);
    for (const encoding of params.encodings) {
      encoding.maxFramerate = SCREEN_MAX.fps;
      encoding.maxBitrate = SCREEN_MAX.bitrate;
      encoding.scaleResolutionDownBy = scale;
    }
    await sender.setParameters(params);
  } catch (err) {
    console.warn('gateway client: screen sender parameters not applied', err);
  }
}

async function startShare() {
  if (state.share || !state.you) return;
  const room = state.room || {};
  if (room.presenters === 'hosts' && state.you.role !== 'host') {
    toast('notice', t('shareHostsOnly'), { code: 'share' });
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({
      video: { width: { max: SCREEN_MAX.width }, height: { max: SCREEN_MAX.height }, frameRate: { max: SCREEN_MAX.fps } },
      audio: false,
    });
  } catch (err) {
    // Cancelling the browser's picker is no error worth a message.
    if (!err || err.name !== 'NotAllowedError') toast('error', t('shareFailed'), { code: 'share' });
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || state.phase !== 'meeting' || state.share) {
    stopStream(stream);
    return;
  }
  try { track.contentHint = 'detail'; } catch { /* older browsers */ }
  // Stopped from the browser's own "Stop sharing" bar: the presentation ends too.
  track.addEventListener('ended', () => {
    if (state.share && state.share.track === track) stopShare({ tell: true });
  });
  state.share = { stream, track, confirmed: false };
  send({ type: 'present', on: true });
  const sender = screenSender();
  if (sender) {
    await sender.replaceTrack(track).catch((err) => console.warn('gateway client: screen track not sent', err));
    await tuneScreenSender(sender, track);
  }
  scheduleRender();
}

/** Stops capturing the screen; `tell`: the gateway is asked to end our presentation as well (not
 * needed when it ended it, or refused it). */
function stopShare({ tell = false } = {}) {
  const share = state.share;
  if (!share) return;
  state.share = null;
  stopStream(share.stream);
  const sender = screenSender();
  if (sender) sender.replaceTrack(null).catch(() => {});
  if (tell) send({ type: 'present', on: false });
  scheduleRender();
}

function toggleShare() {
  if (state.share) stopShare({ tell: true });
  else startShare();
}

// -- own controls and host actions --------------------------------------------------------------

function toggleMic() {
  const you = state.you;
  if (!you) return;
  if (!you.muted) {
    // Muting is immediate and local first (privacy); the gateway confirms with `state`.
    if (state.micTrack) state.micTrack.enabled = false;
    state.you = { ...you, muted: true, self_muted: true };
    send({ type: 'mute_self', muted: true });
  } else if (!state.micTrack) {
    toast('notice', t('noMicrophone'));
  } else {
    // Unmuting waits for the gateway: a host may have forbidden it.
    send({ type: 'mute_self', muted: false });
  }
  scheduleRender();
}

function toggleCamera() {
  const you = state.you;
  if (!you) return;
  const off = !you.video_off;
  if (!off && !state.cameraTrack) {
    toast('notice', t('noCamera'));
    return;
  }
  if (state.cameraTrack) state.cameraTrack.enabled = !off;
  state.you = { ...you, video_off: off };
  send({ type: 'video_self', off });
  scheduleRender();
}

function toggleHand() {
  const you = state.you;
  if (!you) return;
  state.you = { ...you, hand_raised: !you.hand_raised };
  send({ type: 'hand', raised: state.you.hand_raised });
  scheduleRender();
}

const hostActions = {
  toggleMute(p) {
    send(p.host_muted ? { type: 'unmute', participant: p.id } : { type: 'mute', participant: p.id });
  },
  toggleForbid(p) {
    send({ type: 'forbid_self_unmute', participant: p.id, forbidden: !p.self_unmute_forbidden });
  },
  lowerHand(p) {
    send({ type: 'hand', raised: false, participant: p.id });
  },
  toggleSpotlight(p) {
    send({ type: 'spotlight', participant: state.room && state.room.spotlight === p.id ? null : p.id });
  },
  stopPresenting(p) {
    send({ type: 'stop_presentation', participant: p.id });
  },
  async remove(p) {
    const ok = await confirmDialog({
      title: t('confirmRemoveTitle', { name: p.name }),
      text: t('confirmRemoveText', { name: p.name }),
      confirmLabel: t('confirmRemove'),
    });
    if (ok) send({ type: 'remove', participant: p.id });
  },
  admit(entry) {
    send({ type: 'admit', participant: entry.id });
  },
  deny(entry) {
    send({ type: 'deny', participant: entry.id });
  },
};

async function endMeetingForAll() {
  const ok = await confirmDialog({ title: t('confirmEndTitle'), text: t('confirmEndText'), confirmLabel: t('confirmEnd') });
  if (ok) send({ type: 'end_meeting' });
}

function togglePanel(open = !document.body.classList.contains('panel-open')) {
  document.body.classList.toggle('panel-open', open);
  $('btn-panel').setAttribute('aria-expanded', String(open));
}

// -- signing in with the organisation's account (OpenID Connect, gateway/control/oidc.py) --------

const SIGNIN_KEY = 'gateway.signin';

/** The redirect back from the identity provider brings the sign-in (or why it failed) in the
 * fragment: into this tab's storage, out of the address bar and the history. */
function takeSignInFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has('signin') && !fragment.has('signin_error')) return null;
  const token = fragment.get('signin');
  if (token) {
    try { sessionStorage.setItem(SIGNIN_KEY, token); } catch { state.signIn = token; }
  }
  history.replaceState(null, '', location.pathname + location.search);
  return fragment.get('signin_error');
}

function forgetSignIn() {
  state.signIn = '';
  try { sessionStorage.removeItem(SIGNIN_KEY); } catch { /* ignore */ }
}

async function setUpSignIn(error) {
  let enabled = false;
  try { enabled = (await (await fetch('/auth/config')).json()).enabled === true; } catch { /* no sign-in offered */ }
  if (!enabled || !state.roomFromPath) return;
  const box = $('signin-box');
  const status = $('signin-status');
  box.hidden = false;
  $('signin-link').href = `/auth/login?next=${encodeURIComponent(`/r/${state.roomFromPath}`)}`;
  if (error) setText(status, t('signInFailed', { code: error }));
  let who = null;
  if (state.signIn) {
    const response = await fetch('/auth/me', { headers: { Authorization: `Bearer ${state.signIn}` } }).catch(() => null);
    if (response && response.ok) who = await response.json();
    else {
      forgetSignIn();
      setText(status, t('signInEnded'));
    }
  }
  $('signin-link').hidden = !!who;
  $('signout-button').hidden = !who;
  if (who) {
    setText(status, t('signedInAs', { name: who.name }));
    if (!$('name-input').value) $('name-input').value = who.name;
  }
}

async function signOut() {
  const token = state.signIn;
  forgetSignIn();
  if (token) await fetch('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  await setUpSignIn(null);
  setText($('signin-status'), '');
}

// -- start-up -----------------------------------------------------------------------------------

function roomFromPath() {
  const match = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (!match) return '';
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

function onSubmit(ev) {
  ev.preventDefault();
  const room = state.roomFromPath || $('room-input').value.trim();
  const name = $('name-input').value.trim();
  state.formErrors = { room: room ? null : 'formRoomRequired', name: name ? null : 'formNameRequired', pin: null };
  renderForm();
  const firstInvalid = ['room', 'name'].find((f) => state.formErrors[f]);
  if (firstInvalid) {
    $(`${firstInvalid}-input`).focus();
    return;
  }
  state.roomId = room;
  state.name = name;
  state.pin = $('pin-input').value.trim();
  state.startMuted = joinMuted();
  state.startCameraOff = joinCameraOff();
  try { localStorage.setItem('gateway.name', name); } catch { /* ignore */ }
  join();
}

function wireUp() {
  $('join-form').addEventListener('submit', onSubmit);
  $('lang-select').addEventListener('change', (ev) => {
    setLang(ev.target.value, true);
    applyStatic();
    render();
  });
  $('btn-mic').addEventListener('click', toggleMic);
  $('btn-cam').addEventListener('click', toggleCamera);
  $('btn-hand').addEventListener('click', toggleHand);
  $('btn-share').addEventListener('click', toggleShare);
  $('btn-leave').addEventListener('click', leave);
  $('lobby-leave').addEventListener('click', leave);
  $('btn-panel').addEventListener('click', () => togglePanel());
  $('btn-mute-all').addEventListener('click', () => send({ type: 'mute_all', forbid_self_unmute: $('mute-all-forbid').checked }));
  $('btn-allow-all').addEventListener('click', () => send({ type: 'allow_all_unmute' }));
  $('btn-lock').addEventListener('click', () => send({ type: 'lock', locked: !(state.room && state.room.locked) }));
  for (const [button, what] of [['btn-record', 'recording'], ['btn-stream', 'streaming']]) {
    $(button).addEventListener('click', () => {
      const running = (state.room && state.room.broadcasting) || {};
      send({ type: 'broadcast', what, on: !running[what] });
    });
  }
  $('btn-end').addEventListener('click', endMeetingForAll);
  for (const radio of document.querySelectorAll('input[name="layout"]')) {
    radio.addEventListener('change', () => {
      if (radio.checked) send({ type: 'set_layout', layout: radio.value });
    });
  }
  $('btn-end-spotlight').addEventListener('click', () => send({ type: 'spotlight', participant: null }));
  $('btn-invite').addEventListener('click', openInvite);
  $('media-retry').addEventListener('click', retryMedia);
  $('media-dismiss').addEventListener('click', () => {
    state.mediaBannerHidden = true;
    renderMediaBanner();
    $('btn-mic').focus();
  });
  $('audio-play').addEventListener('click', playRemoteAudio);
  $('signout-button').addEventListener('click', signOut);
  $(MEETING_DEVICES.camera).addEventListener('change', (ev) => switchDevice('camera', ev.target.value));
  $(MEETING_DEVICES.microphone).addEventListener('change', (ev) => switchDevice('microphone', ev.target.value));
  $(MEETING_DEVICES.speaker).addEventListener('change', (ev) => switchSpeaker(ev.target.value));
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    // (a headset plugged in or out while in the meeting)
    navigator.mediaDevices.addEventListener('devicechange', () => { if (state.phase === 'meeting') fillMeetingDevices(); });
  }
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && document.body.classList.contains('panel-open') && !$('confirm-dialog').open) {
      togglePanel(false);
      $('btn-panel').focus();
    }
  });
  // Closing the tab is leaving: free our place at once instead of waiting for a timeout.
  window.addEventListener('pagehide', () => send({ type: 'leave' }));
}

function init() {
  setLang(detectLang());
  $('lang-select').value = getLang();
  applyStatic();
  wireUp();
  initChat(send);
  initPrecheck();

  const params = new URLSearchParams(location.search);
  const signInError = takeSignInFromFragment();
  try { state.signIn = sessionStorage.getItem(SIGNIN_KEY) || state.signIn; } catch { /* ignore */ }
  state.roomFromPath = roomFromPath();
  state.roomId = state.roomFromPath || params.get('room') || '';
  let storedName = '';
  try { storedName = localStorage.getItem('gateway.name') || ''; } catch { /* ignore */ }
  state.name = (params.get('name') || storedName).trim().slice(0, 64);
  state.pin = (params.get('pin') || '').trim();
  const hostKey = `gateway.host.${state.roomId}`;
  try { state.hostLink = params.get('host') || sessionStorage.getItem(hostKey) || ''; } catch { state.hostLink = params.get('host') || ''; }
  if (state.hostLink) {
    try { sessionStorage.setItem(hostKey, state.hostLink); } catch { /* ignore */ }
  }
  $('pin-field').hidden = !!state.hostLink;
  $('host-link-hint').hidden = !state.hostLink;
  if (params.has('pin') || params.has('host')) {
    // Keep the PIN and the host link out of the address bar and the history once read: a guest
    // given this page's address must not become a host.
    params.delete('pin');
    params.delete('host');
    const query = params.toString();
    history.replaceState(null, '', location.pathname + (query ? `?${query}` : '') + location.hash);
  }
  $('room-field').hidden = !!state.roomFromPath;
  $('room-input').value = state.roomId;
  $('name-input').value = state.name;
  $('pin-input').value = state.pin;

  // A join link with a name joins in one click.
  if (params.get('name') && state.name && state.roomId) join();
  else {
    setPhase('form', { focus: false });
    startPreview(acquireChosen); // (the camera and microphone checked before joining)
    setUpSignIn(signInError);
  }
  render();
}

init();
