// The rooms section: every room with its settings, and a plain form to create, edit and delete
// rooms (id, name, aliases, PINs, waiting room, lock, size, prompt language, opening hours).
// Rooms from the configuration file, and every room for an operator, are shown read-only.

import { t, getLang } from '/static/admin-i18n.js';
import { api } from '/static/admin-api.js';
import {
  $, el, setText, notify, report, confirmDelete, restoreFocus, rowControl, badge, button, dataTable,
  markInvalid, clearInvalid, splitList, escapeCloses,
} from '/static/admin-ui.js';

export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const FALLBACK_ZONES = ['Europe/Berlin', 'Europe/Vienna', 'Europe/Zurich', 'Europe/London', 'UTC'];

let ctx = null;
let rooms = [];
let editing = null; // {mode: 'new' | 'edit' | 'view', room}
let opener = null;

export function init(context) {
  ctx = context;
  const form = $('room-form');
  $('room-new').addEventListener('click', (event) => openEditor('new', null, event.currentTarget));
  form.addEventListener('submit', onSubmit);
  form.addEventListener('input', (event) => event.target.removeAttribute('aria-invalid'));
  $('room-cancel').addEventListener('click', closeEditor);
  escapeCloses(form, closeEditor);
  $('hours-on').addEventListener('change', () => { $('hours-fields').hidden = !$('hours-on').checked; });
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : FALLBACK_ZONES;
  $('timezones').replaceChildren(...zones.map((zone) => el('option', { value: zone })));
}

export function show() {
  return load();
}

export function hide() {}

/** The rooms, for the other sections (default room of a system, call record filter). */
export async function list() {
  return api('GET', '/api/rooms');
}

async function load() {
  try {
    const [status, fresh] = await Promise.all([api('GET', '/api/status'), list()]);
    ctx.setStatus(status);
    rooms = fresh;
    render();
  } catch (error) {
    report(error, 'roomsFailed');
  }
}

// -- list -----------------------------------------------------------------------------------------

export function render() {
  if (editing) renderEditorTexts();
  renderConflicts();
  const columns = [
    { label: t('colRoom') }, { label: t('colAliases') }, { label: t('colPins') }, { label: t('colAccess') },
    { label: t('colLanguage') }, { label: t('colHours') }, { label: t('colOrigin') }, { label: t('colActions'), cls: 'actions-col' },
  ];
  const sorted = [...rooms].sort((a, b) => a.name.localeCompare(b.name, getLang()));
  $('rooms-list').replaceChildren(rooms.length
    ? dataTable({ caption: t('roomsTitle'), columns, rows: sorted.map((room) => ({ key: room.id, cells: roomCells(room) })) })
    : el('p', { class: 'empty-note', text: t('roomsNone') }));
}

function roomCells(room) {
  const pins = el('div', { class: 'cell-lines nowrap' },
    el('span', { text: `${t('pinHost')}: ${room.host_pin_set ? t('pinSet') : t('pinNone')}` }),
    el('span', { text: `${t('pinGuest')}: ${room.guest_pin_set ? t('pinSet') : t('pinNone')}` }));
  const access = el('div', { class: 'badges' },
    room.lobby ? badge(t('roomLobbyShort'), 'badge-hand', 'hand') : null,
    room.locked ? badge(t('roomLockedShort'), 'badge-hand', 'lock') : null,
    badge(t('roomMaxShort', { count: room.max_participants }), '', 'people'));
  const fromConfig = room.origin === 'config';
  const origin = fromConfig
    ? el('div', { class: 'cell-lines' }, el('span', { text: t('originConfig') }), el('span', { class: 'cell-sub', text: t('originConfigHint') }))
    : t('originApi');
  const actions = el('div', { class: 'row-actions' });
  if (ctx.isAdmin && !fromConfig) {
    actions.append(
      button(t('edit'), (e) => openEditor('edit', room, e.currentTarget), { label: t('editName', { name: room.name }) }),
      button(t('delete'), (e) => removeRoom(room, e.currentTarget), { cls: 'btn-danger-quiet', label: t('deleteName', { name: room.name }) }));
    actions.firstElementChild.dataset.act = 'edit';
  } else {
    actions.append(button(t('view'), (e) => openEditor('view', room, e.currentTarget), { label: t('viewName', { name: room.name }) }));
    actions.firstElementChild.dataset.act = 'view';
  }
  return [
    el('div', { class: 'cell-lines' }, el('span', { class: 'cell-main', text: room.name }), el('span', { class: 'cell-sub mono', text: room.id })),
    room.aliases.length ? el('span', { class: 'mono', text: room.aliases.join(', ') }) : '–',
    pins,
    access,
    t(`lang_${room.language || 'default'}`),
    hoursCell(room.opening_hours),
    origin,
    actions,
  ];
}

function hoursCell(hours) {
  if (!hours) return t('hoursAlways');
  const groups = []; // runs of consecutive days with the same spans: "Mon–Fri 08:00-12:00"
  for (const day of DAYS) {
    const spans = (hours.weekly[day] || []).join(', ');
    const last = groups[groups.length - 1];
    if (last && last.spans === spans) last.to = day;
    else groups.push({ from: day, to: day, spans });
  }
  const lines = groups.filter((g) => g.spans).map((g) => {
    const days = g.from === g.to ? t(`dayShort_${g.from}`) : `${t(`dayShort_${g.from}`)}–${t(`dayShort_${g.to}`)}`;
    return el('span', { text: `${days} ${g.spans}` });
  });
  if (!lines.length) lines.push(el('span', { text: t('hoursNever') }));
  lines.push(el('span', { class: 'cell-sub', text: hours.closed.length ? `${hours.timezone} · ${t('hoursClosedCount', { count: hours.closed.length })}` : hours.timezone }));
  return el('div', { class: 'cell-lines' }, ...lines);
}

function renderConflicts() {
  const conflicts = (ctx.status && ctx.status.conflicts) || [];
  const box = $('room-conflicts');
  box.hidden = !!editing || conflicts.length === 0;
  box.replaceChildren(...conflicts.map((conflict) => el('div', { class: 'banner' },
    el('p', {}, el('strong', { text: t('conflictTitle', { room: conflict.room }) }), ' ', conflict.problems.join('; ')),
    ctx.isAdmin ? button(t('conflictDelete'), (e) => removeRoom({ id: conflict.room, name: conflict.room }, e.currentTarget), { cls: 'btn-danger-quiet', label: t('conflictDeleteName', { room: conflict.room }) }) : null)));
}

const listFallback = () => ($('room-new').offsetParent ? $('room-new') : $('rooms-title'));

async function removeRoom(room, from) {
  const sent = await confirmDelete({
    title: t('roomDeleteTitle', { room: room.name }),
    text: t('roomDeleteText'),
    path: `/api/rooms/${encodeURIComponent(room.id)}`,
    done: t('roomDeleted', { room: room.name }),
    failKey: 'roomDeleteFailed',
    params: { room: room.name },
  });
  if (!sent) return;
  await load();
  restoreFocus(from, listFallback());
}

// -- editor ---------------------------------------------------------------------------------------

function openEditor(mode, room, from) {
  editing = { mode, room };
  opener = from;
  const form = $('room-form');
  clearInvalid(form);
  fillForm(room);
  $('room-fields').disabled = mode === 'view';
  $('room-id').readOnly = mode === 'edit'; // the id is the room's link: it cannot change
  $('room-save').hidden = mode === 'view';
  renderEditorTexts();
  form.hidden = false;
  $('rooms-list').hidden = true;
  $('room-conflicts').hidden = true;
  $('room-new').hidden = true;
  $('room-form-title').focus();
}

function renderEditorTexts() {
  const { mode, room } = editing;
  const title = mode === 'new' ? t('roomNewTitle') : t(mode === 'edit' ? 'roomEditTitle' : 'roomViewTitle', { room: room.name });
  setText($('room-form-title'), title);
  setText($('room-cancel'), mode === 'view' ? t('close') : t('cancel'));
  const note = $('room-form-readonly');
  note.hidden = mode !== 'view';
  if (mode === 'view') setText(note, room.origin === 'config' ? t('roomReadOnly') : t('roomReadOnlyRole'));
  const hidden = mode === 'view' && !ctx.isAdmin;
  $('room-host-pin').placeholder = hidden && room.host_pin_set ? t('pinHidden') : '';
  $('room-guest-pin').placeholder = hidden && room.guest_pin_set ? t('pinHidden') : '';
}

function closeEditor() {
  if (!editing) return;
  editing = null;
  $('room-form').hidden = true;
  $('rooms-list').hidden = false;
  $('room-new').hidden = false;
  renderConflicts();
  restoreFocus(opener, listFallback());
}

function fillForm(room) {
  const r = room || {
    id: '', name: '', aliases: [], max_participants: 100, language: null, lobby: false, locked: false, opening_hours: null,
    layout: 'speaker', presenters: 'everyone', sign_in_hosts: false,
  };
  $('room-id').value = r.id;
  $('room-name').value = r.name || '';
  $('room-host-pin').value = r.host_pin || '';
  $('room-guest-pin').value = r.guest_pin || '';
  $('room-aliases').value = r.aliases.join(', ');
  $('room-max').value = String(r.max_participants);
  $('room-language').value = r.language || '';
  $('room-layout').value = r.layout || 'speaker';
  $('room-presenters').value = r.presenters || 'everyone';
  $('room-lobby').checked = !!r.lobby;
  $('room-locked').checked = !!r.locked;
  $('room-sign-in-hosts').checked = !!r.sign_in_hosts;
  const hours = r.opening_hours;
  $('hours-on').checked = !!hours;
  $('hours-fields').hidden = !hours;
  $('hours-tz').value = hours ? hours.timezone : (Intl.DateTimeFormat().resolvedOptions().timeZone || 'Europe/Berlin');
  for (const day of DAYS) $(`hours-${day}`).value = hours ? (hours.weekly[day] || []).join(', ') : '';
  $('hours-closed').value = hours ? hours.closed.join('\n') : '';
}

/** The room as the API wants it, from the form. */
function formBody() {
  const value = (id) => $(id).value.trim();
  const body = {
    id: value('room-id'),
    name: value('room-name') || null,
    host_pin: value('room-host-pin') || null,
    guest_pin: value('room-guest-pin') || null,
    aliases: splitList($('room-aliases').value),
    language: $('room-language').value || null,
    layout: $('room-layout').value,
    presenters: $('room-presenters').value,
    lobby: $('room-lobby').checked,
    locked: $('room-locked').checked,
    sign_in_hosts: $('room-sign-in-hosts').checked,
    opening_hours: null,
  };
  if (value('room-max')) body.max_participants = Number(value('room-max'));
  if ($('hours-on').checked) {
    const weekly = {};
    for (const day of DAYS) {
      // "08:00 - 12:00, 13:00-16:00" -> ["08:00-12:00", "13:00-16:00"]
      const spans = value(`hours-${day}`).replace(/\s*[-–]\s*/g, '-').split(/[\s,;]+/).filter(Boolean);
      if (spans.length) weekly[day] = spans;
    }
    body.opening_hours = { timezone: value('hours-tz') || 'Europe/Berlin', weekly, closed: splitList($('hours-closed').value) };
  }
  return body;
}

async function onSubmit(event) {
  event.preventDefault();
  if (!editing || editing.mode === 'view') return;
  const form = $('room-form');
  clearInvalid(form);
  const body = formBody();
  if (!body.id) {
    $('room-id').setAttribute('aria-invalid', 'true');
    notify('error', t('roomIdRequired'));
    $('room-id').focus();
    return;
  }
  const isNew = editing.mode === 'new';
  try {
    const saved = isNew
      ? await api('POST', '/api/rooms', body)
      : await api('PUT', `/api/rooms/${encodeURIComponent(editing.room.id)}`, body);
    notify('notice', t(isNew ? 'roomCreated' : 'roomSaved', { room: saved.name }));
    editing = null;
    form.hidden = true;
    $('rooms-list').hidden = false;
    $('room-new').hidden = false;
    await load();
    restoreFocus(rowControl($('rooms-list'), saved.id, 'edit'), listFallback());
  } catch (error) {
    report({ ...error, reason: markInvalid(form, error.reason) }, isNew ? 'roomCreateFailed' : 'roomSaveFailed');
  }
}
