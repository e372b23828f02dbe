// Renders the meeting screen from the client state: tiles, toolbar, participant list,
// host controls and the waiting-room list. Everything is idempotent and keyed, so it can run
// on every `state` message (speaking changes arrive often) without losing keyboard focus.

import { t } from '/static/i18n.js';
import { $, el, setText, setHidden, setIcon, reconcile, initials } from '/static/ui.js';

/** `actions` holds the host callbacks: toggleMute, toggleForbid, lowerHand, toggleSpotlight, stopPresenting, remove, admit, deny. */
export function renderMeeting(state, actions) {
  const room = state.room || { participants: [], lobby: [] };
  const you = state.you;
  const isHost = !!you && you.role === 'host';
  const others = (room.participants || []).filter((p) => !you || p.id !== you.id);

  setText($('meeting-title'), room.name || room.id || '');
  const lockBadge = $('lock-badge');
  lockBadge.hidden = !room.locked;
  if (room.locked) {
    setText(lockBadge, t('meetingLocked'));
    setIcon(lockBadge, 'lock');
  }

  renderBroadcastBadges(room);

  const presenting = room.presentation && you && room.presentation.presenter === you.id;
  const presentingBadge = $('presenting-badge');
  presentingBadge.hidden = !presenting;
  if (presenting) {
    // One's own shared screen is not shown back (a picture of the page inside the page): this says it.
    setText(presentingBadge, t('sharingBadge'));
    setIcon(presentingBadge, 'screen');
  }

  // One's own connection, when poor: what it means and what helps.
  $('quality-hint').hidden = !you || you.quality !== 'poor';
  renderToolbar(state, room, isHost);
  renderTiles(state, you, others, room);
  renderParticipants(room, you, isHost, actions);
  renderHostSection(room, isHost, you);
  renderLobby(room, isHost, actions);
}

function renderToolbar(state, room, isHost) {
  const you = state.you || {};
  const toggle = (id, pressed, iconOn, iconOff, labelOn, labelOff) => {
    const btn = $(id);
    btn.setAttribute('aria-pressed', String(pressed));
    setIcon(btn, pressed ? iconOn : iconOff);
    setText(btn.querySelector('.label'), pressed ? labelOn : labelOff);
  };
  // "Pressed" means the restricting state is active: muted, camera off, hand raised.
  toggle('btn-mic', !!you.muted, 'micOff', 'mic', t('micUnmute'), t('micMute'));
  toggle('btn-cam', !!you.video_off || !state.cameraTrack, 'camOff', 'cam', t('camOn'), t('camOff'));
  toggle('btn-hand', !!you.hand_raised, 'hand', 'hand', t('handLower'), t('handRaise'));
  renderShareButton(state, room, isHost);
  setIcon($('btn-leave'), 'leave');
  setText($('btn-leave').querySelector('.label'), t('leave'));

  const panelBtn = $('btn-panel');
  setIcon(panelBtn, 'people');
  const count = (room.participants || []).length;
  let label = t('participantsCount', { count });
  if (isHost && room.lobby_waiting) label += `, ${t('waitingCount', { count: room.lobby_waiting })}`;
  setText(panelBtn.querySelector('.label'), label);
  setText($('participants-title'), t('participantsCount', { count }));
}

/** Share screen: shown where the browser can capture a screen; while the room lets only hosts
 * present, a guest's button says why it does nothing (aria-disabled keeps it focusable). */
function renderShareButton(state, room, isHost) {
  const btn = $('btn-share');
  const md = navigator.mediaDevices;
  btn.hidden = !(md && typeof md.getDisplayMedia === 'function');
  if (btn.hidden) return;
  const sharing = !!state.share;
  const blocked = !sharing && room.presenters === 'hosts' && !isHost;
  btn.setAttribute('aria-pressed', String(sharing));
  setIcon(btn, 'screen');
  setText(btn.querySelector('.label'), sharing ? t('shareStop') : t('shareScreen'));
  if (blocked) btn.setAttribute('aria-disabled', 'true');
  else btn.removeAttribute('aria-disabled');
  btn.title = blocked ? t('shareHostsOnly') : '';
  const reason = $('share-reason');
  reason.hidden = !blocked;
  setText(reason, blocked ? t('shareHostsOnly') : '');
}

// -- video tiles -------------------------------------------------------------------------------

function renderTiles(state, you, others, room) {
  const spotlight = room.spotlight || null;
  const presentation = room.presentation || null;
  const items = [];
  if (you) items.push({ key: 'self', self: true, p: you });
  for (const p of others) items.push({ key: p.id, self: false, p });
  // A host's spotlight comes first and large, for everyone (oneself included).
  const spot = items.findIndex((i) => i.p.id === spotlight);
  if (spot >= 0) items.unshift(...items.splice(spot, 1));
  for (const item of items) {
    item.spot = item.p.id === spotlight;
    item.presenting = !!presentation && item.p.id === presentation.presenter;
  }
  // Someone else's presentation has a tile of its own, before all and large (the spotlight then
  // leads the strip). One's own is not shown back: the toolbar and a badge say one presents.
  const content = presentation && (!you || presentation.presenter !== you.id);
  if (content) {
    const p = (room.participants || []).find((x) => x.id === presentation.presenter) || { id: presentation.presenter, name: '' };
    items.unshift({ key: `${p.id}#content`, content: presentation.content || 'screen', p });
  }
  const tiles = $('tiles');
  const stage = (content || spot >= 0) && items.length > 1; // the first across the top, the others in a strip below
  items.forEach((item, i) => { item.main = stage && i === 0; });
  const n = Math.max(stage ? items.length - 1 : items.length, 1);
  const cols = stage ? Math.min(n, 4) : n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  tiles.classList.toggle('has-stage', stage);
  tiles.style.setProperty('--cols', cols);
  tiles.style.setProperty('--cols-narrow', stage ? Math.min(n, 2) : n <= 3 ? 1 : 2); // phones: stacked, larger tiles
  tiles.style.setProperty('--rows', Math.ceil(n / cols));
  tiles.dataset.count = String(items.length);
  reconcile(tiles, items, (i) => i.key, createTile, (node, item) => updateTile(node, item, state));
}

function createTile() {
  const video = el('video', { autoplay: true, playsinline: true, 'aria-hidden': 'true' });
  video.muted = true; // sound comes from the single mixed audio stream, never from tiles
  return el('li', { class: 'tile' },
    video,
    el('div', { class: 'tile-initials', 'aria-hidden': 'true' }, el('span', { class: 'avatar avatar-large' })),
    el('p', { class: 'tile-waiting', hidden: true }),
    el('div', { class: 'tile-caption' }, el('span', { class: 'tile-name' }), el('span', { class: 'badges' })));
}

/** The live stream of a slot carrying `value` (a participant id: its camera; "<id>#content": its
 * content), or null while there is none or no frame came yet. */
function slotStream(value, state) {
  for (const [mid, carried] of Object.entries(state.videoSlots || {})) {
    if (carried !== value) continue;
    const stream = state.videoStreams[mid];
    const track = stream && stream.getVideoTracks()[0];
    // A remote track stays "muted" until frames arrive: show initials rather than black.
    if (track && track.readyState === 'live' && !track.muted) return stream;
  }
  return null;
}

/** The stream to show in a tile, or null when the participant has no (live) video. */
function tileStream(item, state) {
  const p = item.p;
  if (item.content) return slotStream(`${p.id}#content`, state);
  if (p.video_off) return null;
  if (item.self) return state.cameraTrack && state.cameraTrack.readyState === 'live' ? state.localStream : null;
  return slotStream(p.id, state);
}

function updateTile(node, item, state) {
  const p = item.p;
  const video = node.querySelector('video');
  const stream = tileStream(item, state);
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    if (stream) video.play().catch(() => {});
  }
  video.hidden = !stream;
  node.classList.toggle('self', !!item.self);
  node.classList.toggle('content', !!item.content);
  node.classList.toggle('stage-main', !!item.main);
  node.classList.toggle('speaking', !item.content && !!p.speaking);
  node.classList.toggle('spotlight', !!item.spot);
  node.querySelector('.tile-initials').hidden = !!stream;
  setText(node.querySelector('.avatar'), initials(p.name));
  const waiting = node.querySelector('.tile-waiting');
  waiting.hidden = !item.content || !!stream;
  setText(waiting, item.content && !stream ? t('contentWaiting') : '');
  if (item.content) {
    setText(node.querySelector('.tile-name'), t('presentingCaption', { name: p.name }));
    const kind = item.content === 'slides' ? 'contentSlides' : 'contentScreen';
    renderBadges(node.querySelector('.badges'), [['screen', t(kind), 'badge-presenting']]);
    return;
  }
  setText(node.querySelector('.tile-name'), item.self ? t('you') : p.name);
  renderBadges(node.querySelector('.badges'), statusBadges(p, false, item.spot, item.presenting));
}

/** Status shown as icon + text (never colour alone). */
function statusBadges(p, detailed, spotlight = false, presenting = false) {
  const list = [];
  if (presenting) list.push(['screen', t('statusPresenting'), 'badge-presenting']);
  if (spotlight) list.push(['star', t('statusSpotlight'), 'badge-spotlight']);
  if (p.connected === false) list.push(['leave', t('statusReconnecting'), 'badge-muted']);
  // The connection (rooms/quality.py): poor everywhere, fair in the participant list only.
  if (p.connected !== false && p.quality === 'poor') list.push(['signal', t('statusQualityPoor'), 'badge-quality-poor']);
  else if (detailed && p.connected !== false && p.quality === 'fair') list.push(['signal', t('statusQualityFair'), 'badge-quality-fair']);
  if (p.speaking) list.push(['speaking', t('statusSpeaking'), 'badge-speaking']);
  if (p.muted) list.push(['micOff', detailed && p.host_muted ? t('statusHostMuted') : t('statusMuted'), 'badge-muted']);
  if (detailed && p.self_unmute_forbidden) list.push(['lock', t('statusUnmuteForbidden'), 'badge-muted']);
  if (p.hand_raised) list.push(['hand', t('statusHand'), 'badge-hand']);
  if (detailed && p.video_off) list.push(['camOff', t('statusVideoOff'), '']);
  return list;
}

function renderBadges(container, list) {
  const signature = list.map((b) => b.join('|')).join(';');
  if (container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.replaceChildren(...list.map(([name, text, cls]) => {
    const badge = el('span', { class: `badge ${cls}` }, el('span', { text }));
    setIcon(badge, name);
    return badge;
  }));
}

// -- participant list ----------------------------------------------------------------------------

function renderParticipants(room, you, isHost, actions) {
  const list = $('participant-list');
  const participants = room.participants || [];
  reconcile(list, participants, (p) => p.id, (p) => createParticipant(p, actions),
    (node, p) => updateParticipant(node, p, you, isHost, room.spotlight === p.id, !!room.presentation && room.presentation.presenter === p.id));
  if (!participants.some((p) => !you || p.id !== you.id)) {
    list.append(el('li', { class: 'muted-text', text: t('noOthers') }));
  }
}

function createParticipant(p, actions) {
  // Buttons read the current participant from node.participant, so handlers never go stale.
  const node = el('li', { class: 'participant' });
  const act = (name) => () => actions[name](node.participant);
  node.append(
    el('div', { class: 'p-head' },
      el('span', { class: 'avatar', 'aria-hidden': 'true' }),
      el('div', { class: 'p-ident' }, el('span', { class: 'p-name' }), el('span', { class: 'p-meta' }))),
    el('div', { class: 'badges' }),
    el('div', { class: 'p-actions', role: 'group' },
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'mute', onclick: act('toggleMute') }),
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'forbid', onclick: act('toggleForbid') }),
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'hand', onclick: act('lowerHand') }),
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'spotlight', onclick: act('toggleSpotlight') }),
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'present', onclick: act('stopPresenting') }),
      el('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-act': 'remove', onclick: act('remove') })));
  return node;
}

function updateParticipant(node, p, you, isHost, spotlit, presenting) {
  node.participant = p;
  const isYou = !!you && p.id === you.id;
  node.classList.toggle('spotlight', spotlit);
  setText(node.querySelector('.avatar'), initials(p.name));
  setText(node.querySelector('.p-name'), isYou ? `${p.name} ${t('youSuffix')}` : p.name);
  // (a phone caller's whole number comes to hosts only: others see the name or a masked number)
  const number = p.number ? ` · ${p.number}` : '';
  setText(node.querySelector('.p-meta'), `${t(`role_${p.role}`)} · ${t(`kind_${p.kind}`)}${number}`);
  renderBadges(node.querySelector('.badges'), statusBadges(p, true, spotlit, presenting));

  const group = node.querySelector('.p-actions');
  group.hidden = !isHost;
  if (!isHost) return;
  group.setAttribute('aria-label', t('actionsFor', { name: p.name }));
  const btn = (name) => group.querySelector(`[data-act="${name}"]`);
  // A host may put anyone in the spotlight, themselves included (the chair of a session).
  const spot = btn('spotlight');
  setText(spot, t(spotlit ? 'hostEndSpotlight' : 'hostSpotlight', { name: p.name }));
  // A host stops anyone's presentation (a room system's slides too); one's own from the toolbar.
  const present = btn('present');
  setText(present, t('hostStopPresenting', { name: p.name }));
  present.hidden = !presenting || isYou;
  for (const name of ['mute', 'forbid', 'hand', 'remove']) btn(name).hidden = isYou;
  if (isYou) return;
  const mute = btn('mute');
  // A host lifts only a host's mute; a participant's own mute stays theirs.
  setText(mute, t(p.host_muted ? 'hostUnmute' : 'hostMute', { name: p.name }));
  const forbid = btn('forbid');
  setText(forbid, t(p.self_unmute_forbidden ? 'hostAllow' : 'hostForbid', { name: p.name }));
  setHidden(forbid, p.role === 'host' && !p.self_unmute_forbidden, mute);
  const hand = btn('hand');
  setText(hand, t('hostLowerHand', { name: p.name }));
  setHidden(hand, !p.hand_raised, mute);
  setText(btn('remove'), t('hostRemove', { name: p.name }));
}

// -- host controls and waiting room --------------------------------------------------------------

/** Recorded or streamed now: a badge on every page, for everyone (recording policy, GDPR); the
 * live stream's says when it lost its server and reconnects. */
function renderBroadcastBadges(room) {
  const running = room.broadcasting || {};
  const live = room.streaming_interrupted ? 'streamingBadgeDown' : 'streamingBadge';
  for (const [what, key] of [['recording', 'recordingBadge'], ['streaming', live]]) {
    const badge = $(`${what}-badge`);
    badge.hidden = !running[what];
    if (running[what]) {
      setText(badge, t(key));
      setIcon(badge, 'record');
    }
  }
}

function renderHostSection(room, isHost, you) {
  $('host-section').hidden = !isHost;
  if (!isHost) return;
  const running = room.broadcasting || {};
  const may = room.may_broadcast || {};
  $('broadcast-block').hidden = !may.recording && !may.streaming && !running.recording && !running.streaming;
  const record = $('btn-record');
  record.hidden = !may.recording && !running.recording;
  setText(record, running.recording ? t('stopRecording') : t('startRecording'));
  const stream = $('btn-stream');
  stream.hidden = !may.streaming && !running.streaming;
  setText(stream, running.streaming ? t('stopStreaming') : t('startStreaming'));
  for (const radio of document.querySelectorAll('input[name="layout"]')) radio.checked = radio.value === room.layout;
  const spotlit = (room.participants || []).find((p) => p.id === room.spotlight);
  const hint = !spotlit ? t('spotlightNone')
    : you && spotlit.id === you.id ? t('spotlightHintYou') : t('spotlightHint', { name: spotlit.name });
  setText($('spotlight-hint'), hint);
  setHidden($('btn-end-spotlight'), !spotlit, $('btn-lock'));
  const lockBtn = $('btn-lock');
  setText(lockBtn, room.locked ? t('unlock') : t('lock'));
  setText($('lock-hint'), room.locked ? t('lockedHint') : t('unlockedHint'));
  // "Mute all guests" stays in force for guests who join later, until a host allows unmuting.
  const policy = !!room.guests_muted_on_entry;
  $('mute-policy-hint').hidden = !policy;
  $('btn-allow-all').hidden = !policy;
  if (policy) {
    setText($('mute-policy-hint'), room.guests_may_unmute ? t('mutePolicyHint') : t('mutePolicyForbidHint'));
  }
}

function renderLobby(room, isHost, actions) {
  const lobby = room.lobby || [];
  const section = $('lobby-section');
  section.hidden = !isHost || (!room.lobby_enabled && lobby.length === 0);
  if (section.hidden) return;
  setText($('lobby-panel-title'), `${t('lobbyPanel')} (${lobby.length})`);
  $('lobby-empty').hidden = lobby.length > 0;
  reconcile($('lobby-list'), lobby, (e) => e.id, (e) => {
    const node = el('li', { class: 'participant lobby-entry' });
    node.append(
      el('div', { class: 'p-head' },
        el('span', { class: 'avatar', 'aria-hidden': 'true' }),
        el('div', { class: 'p-ident' }, el('span', { class: 'p-name' }), el('span', { class: 'p-meta' }))),
      el('div', { class: 'p-actions' },
        el('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-act': 'admit', onclick: () => actions.admit(node.entry) }),
        el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'deny', onclick: () => actions.deny(node.entry) })));
    return node;
  }, (node, e) => {
    node.entry = e;
    setText(node.querySelector('.avatar'), initials(e.name));
    setText(node.querySelector('.p-name'), e.name);
    const number = e.number ? ` · ${e.number}` : '';
    setText(node.querySelector('.p-meta'), t('lobbyEntryMeta', { kind: t(`kind_${e.kind}`), position: e.position }) + number);
    setText(node.querySelector('[data-act="admit"]'), t('lobbyAdmit', { name: e.name }));
    setText(node.querySelector('[data-act="deny"]'), t('lobbyDeny', { name: e.name }));
  });
}
