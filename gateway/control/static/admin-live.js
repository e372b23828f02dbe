// The live section: every room with its participants (kind, role, state, media counters), its
// waiting room and the controls of a meeting (mute, lock, end, admit, invite a room system, host
// link, the layout room systems see; who is in the spotlight is shown), refreshed every 2 s by
// polling the API. Keyed updates keep keyboard focus on a button while the rows around it change.

import { t, getLang, formatNumber, formatTime, formatDateTime, formatDuration } from '/static/admin-i18n.js';
import { api } from '/static/admin-api.js';
import { $, el, setText, reconcile, notify, report, confirmAction, restoreFocus, badge, clearMessages } from '/static/admin-ui.js';

const POLL_MS = 2000;
const COLUMNS = [
  ['name', ''], ['status', ''],
  ['audio', 'num'], ['lost', 'num'], ['jitter', 'num'], ['video', 'num'], ['actions', 'actions-col'],
];

let ctx = null;
let visible = false;
let timer = null;
let generation = 0;
let failing = null; // the shown message while refreshing fails
let data = null; // {status, rooms, participants: {room: [...]}, lobby: {room: [...]}, updatedAt}

export function init(context) {
  ctx = context;
  $('live-filter').addEventListener('input', render);
  $('live-only-active').addEventListener('change', render);
  initDialDialog();
  initLinkDialog();
}

export function show() {
  visible = true;
  failing = null; // messages were cleared when the section was left
  poll();
}

export function hide() {
  visible = false;
  clearTimeout(timer);
  generation += 1;
}

/** Refreshes now, then every POLL_MS while the section is shown (one request chain at a time). */
export async function poll() {
  clearTimeout(timer);
  const mine = ++generation;
  try {
    const snapshot = await fetchSnapshot();
    if (mine !== generation) return;
    data = snapshot;
    if (failing) failing.remove();
    failing = null;
    render();
  } catch (error) {
    if (mine !== generation) return;
    if (!failing && error.status !== 401) failing = report(error, 'liveFailed');
  }
  if (visible && mine === generation) timer = setTimeout(poll, POLL_MS);
}

const roomPath = (room) => `/api/rooms/${encodeURIComponent(room.id)}`;
const isActive = (room) => room.live.participants > 0 || room.live.lobby_waiting > 0;

async function fetchSnapshot() {
  const [status, rooms] = await Promise.all([api('GET', '/api/status'), api('GET', '/api/rooms')]);
  const participants = {};
  const lobby = {};
  await Promise.all(rooms.map(async (room) => {
    try {
      [participants[room.id], lobby[room.id]] = await Promise.all([
        room.live.participants ? api('GET', `${roomPath(room)}/participants`) : [],
        room.live.lobby_waiting ? api('GET', `${roomPath(room)}/lobby`) : [],
      ]);
    } catch (error) {
      if (error.status !== 404) throw error; // 404: the room was deleted in between
      participants[room.id] = [];
      lobby[room.id] = [];
    }
  }));
  return { status, rooms, participants, lobby, updatedAt: Date.now() };
}

// -- rendering ------------------------------------------------------------------------------------

export function render() {
  if (!data) return;
  renderSummary(data.status);
  setText($('live-updated'), t('liveUpdated', { time: formatTime(data.updatedAt) }));
  const filter = $('live-filter').value.trim().toLowerCase();
  const onlyActive = $('live-only-active').checked;
  const rooms = data.rooms
    .filter((r) => (!onlyActive || isActive(r)) && (!filter || `${r.id} ${r.name}`.toLowerCase().includes(filter)))
    .sort((a, b) => Number(isActive(b)) - Number(isActive(a)) || a.name.localeCompare(b.name, getLang()));
  const container = $('live-rooms');
  const focused = container.contains(document.activeElement) ? document.activeElement : null;
  reconcile(container, rooms, (r) => r.id, createRoom, updateRoom);
  // A card that moved (someone joined a room further down) loses the focus: give it back.
  if (focused && focused.isConnected && document.activeElement !== focused) focused.focus({ preventScroll: true });
  if (!rooms.length) container.append(el('p', { class: 'empty-note', text: t(data.rooms.length ? 'liveNoMatch' : 'liveNoRooms') }));
}

function trunkText(trunk) {
  if (trunk.status === 'registered') return t('trunkRegistered');
  if (trunk.status === 'failing') return t('trunkFailing', { status: trunk.last_status || '–', reason: trunk.reason || '' });
  return t('trunkRegistering');
}

function renderSummary(status) {
  const waiting = data.rooms.reduce((sum, r) => sum + r.live.lobby_waiting, 0);
  const mqtt = status.mqtt || {};
  const mqttText = !mqtt.enabled ? t('off') : mqtt.connected === false ? t('mqttDown') : mqtt.connected ? t('mqttUp') : t('on');
  const items = [
    [t('sumRooms'), formatNumber(status.rooms)],
    [t('sumParticipants'), formatNumber(status.participants)],
    [t('sumWaiting'), formatNumber(waiting)],
    [t('sumSip'), status.sip_enabled ? t('on') : t('off')],
    [t('sumMqtt'), mqttText],
    ...(status.trunks || []).map((trunk) => [t('sumTrunk', { id: trunk.id }), trunkText(trunk)]),
    [t('sumUptime'), formatDuration(status.uptime_s)],
  ];
  const summary = $('live-summary');
  const signature = JSON.stringify(items);
  if (summary.dataset.signature === signature) return;
  summary.dataset.signature = signature;
  summary.replaceChildren(...items.map(([term, value]) => el('div', { class: 'summary-item' }, el('dt', { text: term }), el('dd', { text: value }))));
}

function createRoom(room) {
  const node = el('article', { class: 'live-room', 'aria-labelledby': `live-${room.id}-title` });
  const on = (fn) => (event) => fn(node.room, event.currentTarget);
  const action = (act, fn, cls = '') => el('button', { type: 'button', class: `btn btn-small ${cls}`, 'data-act': act, onclick: on(fn) });
  const head = el('tr', {}, ...COLUMNS.map(([key, cls]) => el('th', { scope: 'col', class: cls || null, 'data-col': key })));
  node.append(
    el('div', { class: 'live-room-head' },
      el('h2', { id: `live-${room.id}-title`, class: 'live-room-title' },
        el('span', { class: 'room-name' }), ' ', el('span', { class: 'room-id' })),
      el('div', { class: 'badges room-badges' }),
      el('div', { class: 'room-actions', role: 'group' },
        el('div', { class: 'layout-choice' },
          el('label', { for: `live-${room.id}-layout` }),
          el('select', { id: `live-${room.id}-layout`, onchange: (event) => changeLayout(node.room, event.currentTarget) },
            el('option', { value: 'speaker' }), el('option', { value: 'grid' }))),
        action('mute-all', muteAll),
        action('lock', toggleLock),
        action('dial', openDial),
        action('link', openLink),
        action('stop-presentation', stopPresentation),
        action('end', endMeeting, 'btn-danger-quiet'))),
    el('div', { class: 'table-wrap participants-wrap' },
      el('table', { class: 'data-table participants' }, el('caption', { class: 'sr-only' }), el('thead', {}, head), el('tbody'))),
    el('section', { class: 'live-lobby', 'aria-labelledby': `live-${room.id}-lobby` },
      el('h3', { id: `live-${room.id}-lobby` }),
      el('p', { class: 'muted-text lobby-empty' }),
      el('ul', { class: 'plain-list lobby-list' })));
  return node;
}

function updateRoom(node, room) {
  node.room = room;
  const participants = data.participants[room.id] || [];
  const lobby = data.lobby[room.id] || [];
  node.classList.toggle('active', isActive(room));
  setText(node.querySelector('.room-name'), room.name);
  setText(node.querySelector('.room-id'), room.id);
  renderBadges(node.querySelector('.room-badges'), roomBadges(room));

  const button = (act) => node.querySelector(`[data-act="${act}"]`);
  node.querySelector('.room-actions').setAttribute('aria-label', t('roomControlsFor', { room: room.name }));
  setText(button('mute-all'), t('muteAll'));
  button('mute-all').disabled = participants.length === 0;
  setText(button('lock'), room.live.locked ? t('unlock') : t('lock'));
  setText(button('dial'), t('dialOpen'));
  setText(button('link'), t('linkOpen'));
  button('link').hidden = !ctx.isAdmin; // the API issues host links to administrators only
  setText(button('end'), t('endMeeting'));
  setText(button('stop-presentation'), t('stopPresentation'));
  button('stop-presentation').hidden = !room.presentation;
  const layout = node.querySelector('.layout-choice select');
  setText(node.querySelector('.layout-choice label'), t('layoutLabel'));
  for (const option of layout.options) setText(option, t(`layout_${option.value}`));
  if (!layout.dataset.sent) layout.value = room.picture.layout;
  button('end').disabled = !isActive(room);
  for (const act of ['mute-all', 'lock', 'dial', 'link', 'stop-presentation', 'end']) {
    button(act).setAttribute('aria-label', `${button(act).textContent}: ${room.name}`);
  }

  const table = node.querySelector('table');
  node.querySelector('.participants-wrap').hidden = participants.length === 0;
  setText(table.querySelector('caption'), t('participantsOf', { room: room.name }));
  for (const th of table.querySelectorAll('thead th')) setText(th, t(`col_${th.dataset.col}`));
  reconcile(table.querySelector('tbody'), participants, (p) => p.id, createParticipant, (row, p) => updateParticipant(row, p, room));

  // An empty room is one line (its badge says "0 participants"); a waiting room shows once it matters.
  const lobbySection = node.querySelector('.live-lobby');
  lobbySection.hidden = lobby.length === 0 && !(room.lobby && participants.length > 0);
  setText(lobbySection.querySelector('h3'), t('lobbyTitle', { count: lobby.length }));
  const lobbyEmpty = lobbySection.querySelector('.lobby-empty');
  lobbyEmpty.hidden = lobby.length > 0;
  setText(lobbyEmpty, t('lobbyEmpty'));
  reconcile(lobbySection.querySelector('ul'), lobby, (e) => e.id, createLobbyEntry, (item, e) => updateLobbyEntry(item, e, room));
}

function roomBadges(room) {
  const list = [['people', t('badgeParticipants', { count: room.live.participants }), room.live.participants ? 'badge-speaking' : '']];
  if (room.live.locked) list.push(['lock', t('badgeLocked'), 'badge-hand']);
  if (room.live.lobby_waiting) list.push(['hand', t('badgeWaiting', { count: room.live.lobby_waiting }), 'badge-hand']);
  if (!room.live.open_now) list.push(['lock', t('badgeClosedNow'), 'badge-muted']);
  const spotlit = (data.participants[room.id] || []).find((p) => p.id === room.picture.spotlight);
  if (spotlit) list.push(['star', t('badgeSpotlight', { name: spotlit.name }), '']);
  const presenter = room.presentation && (data.participants[room.id] || []).find((p) => p.id === room.presentation.presenter);
  if (presenter) list.push(['star', t('badgePresenting', { name: presenter.name }), 'badge-speaking']);
  return list;
}

function participantBadges(p) {
  const list = [];
  if (p.connected === false) list.push(['leave', t('stateReconnecting'), 'badge-muted']);
  if (p.host_muted) list.push(['micOff', t('stateHostMuted'), 'badge-muted']);
  else if (p.muted) list.push(['micOff', t('stateSelfMuted'), 'badge-muted']);
  else list.push(['mic', t('stateOpen'), '']);
  if (p.self_unmute_forbidden) list.push(['lock', t('stateForbidden'), 'badge-muted']);
  if (p.hand_raised) list.push(['hand', t('stateHand'), 'badge-hand']);
  if (p.speaking) list.push(['speaking', t('stateSpeaking'), 'badge-speaking']);
  if (p.spotlight) list.push(['star', t('stateSpotlight'), '']);
  return list;
}

function renderBadges(container, list) {
  const signature = JSON.stringify(list);
  if (container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.replaceChildren(...list.map(([name, text, cls]) => badge(text, cls, name)));
}

function createParticipant() {
  const row = el('tr');
  const on = (fn) => (event) => fn(row.room, row.participant, event.currentTarget);
  const action = (act, fn, cls = '') => el('button', { type: 'button', class: `btn btn-small ${cls}`, 'data-act': act, onclick: on(fn) });
  row.append(
    el('th', { scope: 'row' }, el('div', { class: 'cell-lines' }, el('span', { class: 'cell-main p-name' }), el('span', { class: 'cell-sub p-meta' }))),
    el('td', { 'data-col': 'status' }, el('div', { class: 'badges' })),
    el('td', { class: 'num', 'data-col': 'audio' }),
    el('td', { class: 'num', 'data-col': 'lost' }),
    el('td', { class: 'num', 'data-col': 'jitter' }),
    el('td', { class: 'num', 'data-col': 'video' }),
    el('td', { class: 'actions-col' }, el('div', { class: 'row-actions', role: 'group' },
      action('mute', toggleMute),
      action('forbid', toggleForbid),
      action('remove', removeParticipant, 'btn-danger-quiet'))));
  return row;
}

function updateParticipant(row, p, room) {
  row.room = room;
  row.participant = p;
  const media = p.media || {};
  const cell = (col) => row.querySelector(`[data-col="${col}"]`);
  setText(row.querySelector('.p-name'), p.name);
  setText(row.querySelector('.p-meta'), [t(`role_${p.role}`), t(`kind_${p.kind}`), media.codec].filter(Boolean).join(' · '));
  renderBadges(cell('status').firstElementChild, participantBadges(p));
  setText(cell('audio'), formatNumber(media.audio_packets_in ?? media.rtp_packets_in ?? 0));
  setText(cell('lost'), formatNumber(media.audio_frames_lost ?? 0));
  const jitter = media.jitter_ms ?? media.rtp_jitter_ms;
  setText(cell('jitter'), jitter == null ? '–' : formatNumber(jitter, 1));
  setText(cell('video'), `${formatNumber(media.video_frames_in ?? 0)} / ${formatNumber(media.video_frames_out ?? 0)}`);

  const group = row.querySelector('.row-actions');
  group.setAttribute('aria-label', t('actionsFor', { name: p.name }));
  const mute = group.querySelector('[data-act="mute"]');
  setText(mute, p.host_muted ? t('unmute') : t('mute'));
  mute.setAttribute('aria-label', t(p.host_muted ? 'unmuteName' : 'muteName', { name: p.name }));
  const forbid = group.querySelector('[data-act="forbid"]');
  forbid.hidden = p.role === 'host' && !p.self_unmute_forbidden; // hosts may always unmute themselves
  setText(forbid, p.self_unmute_forbidden ? t('allowUnmute') : t('forbidUnmute'));
  forbid.setAttribute('aria-label', t(p.self_unmute_forbidden ? 'allowUnmuteName' : 'forbidUnmuteName', { name: p.name }));
  const remove = group.querySelector('[data-act="remove"]');
  setText(remove, t('remove'));
  remove.setAttribute('aria-label', t('removeName', { name: p.name }));
}

function createLobbyEntry() {
  const item = el('li', { class: 'lobby-entry' });
  const on = (fn) => (event) => fn(item.room, item.entry, event.currentTarget);
  item.append(
    el('div', { class: 'lobby-ident' }, el('span', { class: 'p-name' }), el('span', { class: 'p-meta' })),
    el('div', { class: 'row-actions' },
      el('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-act': 'admit', onclick: on(admit) }),
      el('button', { type: 'button', class: 'btn btn-small', 'data-act': 'deny', onclick: on(deny) })));
  return item;
}

function updateLobbyEntry(item, entry, room) {
  item.room = room;
  item.entry = entry;
  setText(item.querySelector('.p-name'), entry.name);
  const seconds = entry.estimated_wait_s;
  const wait = !seconds ? '' : seconds < 60 ? t('lobbyWaitSoon') : t('lobbyWait', { minutes: Math.round(seconds / 60) });
  setText(item.querySelector('.p-meta'), [t(`kind_${entry.kind}`), t('lobbyPosition', { position: entry.position }), wait].filter(Boolean).join(' · '));
  const admitButton = item.querySelector('[data-act="admit"]');
  setText(admitButton, t('admit'));
  admitButton.setAttribute('aria-label', t('admitName', { name: entry.name }));
  const denyButton = item.querySelector('[data-act="deny"]');
  setText(denyButton, t('deny'));
  denyButton.setAttribute('aria-label', t('denyName', { name: entry.name }));
}

// -- actions --------------------------------------------------------------------------------------

/** Sends one control request, announces the outcome, refreshes; focus goes to `fallback` if its button left. */
async function control(opener, method, path, body, doneText, failKey, params) {
  try {
    await api(method, path, body);
    if (doneText) notify('notice', doneText);
  } catch (error) {
    report(error, failKey, params);
  }
  await poll();
  if (opener && !opener.isConnected) {
    const card = $(`live-${params.roomId}-title`);
    restoreFocus(card && card.closest('.live-room').querySelector('.room-actions button:not([disabled]):not([hidden])'));
  }
}

function toggleMute(room, p, opener) {
  const verb = p.host_muted ? 'unmute' : 'mute';
  const done = t(p.host_muted ? 'unmutedDone' : 'mutedDone', { name: p.name });
  control(opener, 'POST', `${roomPath(room)}/participants/${encodeURIComponent(p.id)}/${verb}`, undefined, done,
    'controlFailed', { name: p.name, roomId: room.id });
}

function toggleForbid(room, p, opener) {
  const verb = p.self_unmute_forbidden ? 'allow-unmute' : 'forbid-unmute';
  const done = t(p.self_unmute_forbidden ? 'allowedDone' : 'forbiddenDone', { name: p.name });
  control(opener, 'POST', `${roomPath(room)}/participants/${encodeURIComponent(p.id)}/${verb}`, undefined, done,
    'controlFailed', { name: p.name, roomId: room.id });
}

async function changeLayout(room, select) {
  select.dataset.sent = '1'; // the 2 s refresh must not put back the old value while this request runs
  try {
    const picture = await api('PUT', `${roomPath(room)}/layout`, { layout: select.value });
    notify('notice', t('layoutDone', { room: room.name, layout: t(`layout_${picture.layout}`) }));
  } catch (error) {
    report(error, 'roomControlFailed', { room: room.name });
  }
  delete select.dataset.sent;
  await poll();
}

async function removeParticipant(room, p, opener) {
  const ok = await confirmAction({
    title: t('removeConfirmTitle', { name: p.name }),
    text: t('removeConfirmText', { name: p.name, room: room.name }),
    confirmLabel: t('remove'),
  });
  if (!ok) return;
  control(opener, 'DELETE', `${roomPath(room)}/participants/${encodeURIComponent(p.id)}`, undefined,
    t('removedDone', { name: p.name }), 'controlFailed', { name: p.name, roomId: room.id });
}

async function muteAll(room, opener) {
  try {
    const result = await api('POST', `${roomPath(room)}/mute-all`, {});
    notify('notice', t('mutedAllDone', { count: result.muted.length, room: room.name }));
  } catch (error) {
    report(error, 'roomControlFailed', { room: room.name });
  }
  await poll();
  restoreFocus(opener);
}

function stopPresentation(room, opener) {
  control(opener, 'POST', `${roomPath(room)}/presentation/stop`, undefined,
    t('presentationStopped', { room: room.name }), 'roomControlFailed', { room: room.name, roomId: room.id });
}

function toggleLock(room, opener) {
  const locked = room.live.locked;
  control(opener, 'POST', `${roomPath(room)}/${locked ? 'unlock' : 'lock'}`, undefined,
    t(locked ? 'unlockedDone' : 'lockedDone', { room: room.name }), 'roomControlFailed', { room: room.name, roomId: room.id });
}

async function endMeeting(room, opener) {
  const ok = await confirmAction({
    title: t('endConfirmTitle', { room: room.name }),
    text: t('endConfirmText', { count: room.live.participants + room.live.lobby_waiting }),
    confirmLabel: t('endMeeting'),
  });
  if (!ok) return;
  control(opener, 'POST', `${roomPath(room)}/end`, undefined, t('endedDone', { room: room.name }),
    'roomControlFailed', { room: room.name, roomId: room.id });
}

function admit(room, entry, opener) {
  control(opener, 'POST', `${roomPath(room)}/lobby/${encodeURIComponent(entry.id)}/admit`, undefined,
    t('admittedDone', { name: entry.name }), 'controlFailed', { name: entry.name, roomId: room.id });
}

function deny(room, entry, opener) {
  control(opener, 'POST', `${roomPath(room)}/lobby/${encodeURIComponent(entry.id)}/deny`, undefined,
    t('deniedDone', { name: entry.name }), 'controlFailed', { name: entry.name, roomId: room.id });
}

// -- invite a room system or a SIP address -------------------------------------------------------

const dial = { room: null, opener: null };

function initDialDialog() {
  const dialog = $('dial-dialog');
  $('dial-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => restoreFocus(dial.opener));
  $('dial-system-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if ($('dial-system').value) placeCall({ system: $('dial-system').value }, $('dial-system'));
  });
  $('dial-uri-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const uri = $('dial-uri').value.trim();
    if (!uri) {
      $('dial-uri').setAttribute('aria-invalid', 'true');
      notify('error', t('dialUriRequired'));
      $('dial-uri').focus();
      return;
    }
    placeCall({ uri }, $('dial-uri'));
  });
  $('dial-uri').addEventListener('input', () => $('dial-uri').removeAttribute('aria-invalid'));
}

async function openDial(room, opener) {
  dial.room = room;
  dial.opener = opener;
  let systems = [];
  try {
    systems = await api('GET', '/api/systems');
  } catch (error) {
    report(error, 'systemsFailed');
  }
  const dialog = $('dial-dialog');
  setText($('dial-title'), t('dialTitle', { room: room.name }));
  clearMessages(dialog);
  $('dial-uri').value = '';
  $('dial-uri').removeAttribute('aria-invalid');
  const select = $('dial-system');
  select.replaceChildren(...systems.map((s) => el('option', { value: s.id, text: `${s.name} – ${s.uri}` })));
  const own = systems.find((s) => s.default_room === room.id);
  if (own) select.value = own.id;
  const none = systems.length === 0;
  select.closest('.field').hidden = none;
  $('dial-system-call').hidden = none;
  $('dial-no-systems').hidden = !none;
  dialog.showModal();
  (none ? $('dial-uri') : select).focus();
}

async function placeCall(body, field) {
  const room = dial.room;
  try {
    const placed = await api('POST', `${roomPath(room)}/dial`, body);
    $('dial-dialog').close();
    notify('notice', t('dialPlaced', { uri: placed.uri, room: room.name }));
    poll();
  } catch (error) {
    if (body.uri) field.setAttribute('aria-invalid', 'true');
    report(error, 'dialFailed'); // shown inside the dialog: the API's reason, e.g. the dial-out rules
    field.focus();
  }
}

// -- host link ------------------------------------------------------------------------------------

const link = { opener: null };

function initLinkDialog() {
  const dialog = $('link-dialog');
  $('link-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    $('link-url').value = ''; // a host link is a key: do not leave it in the page
    restoreFocus(link.opener);
  });
  $('link-copy').addEventListener('click', copyLink);
}

async function openLink(room, opener) {
  link.opener = opener;
  let issued;
  try {
    issued = await api('POST', `${roomPath(room)}/host-link`, {});
  } catch (error) {
    report(error, 'linkFailed', { room: room.name });
    return;
  }
  const dialog = $('link-dialog');
  clearMessages(dialog);
  setText($('link-title'), t('linkTitle', { room: room.name }));
  setText($('link-text'), t('linkText', { until: formatDateTime(issued.expires_at * 1000) }));
  $('link-url').value = issued.url;
  dialog.showModal();
  $('link-copy').focus();
}

async function copyLink() {
  const input = $('link-url');
  try {
    await navigator.clipboard.writeText(input.value);
    notify('notice', t('linkCopied'));
  } catch {
    input.focus();
    input.select();
    notify('notice', t('linkCopyManual'));
  }
}
