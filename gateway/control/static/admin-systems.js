// The room systems section (directory): the SIP room systems the gateway knows, to call them into
// a meeting and to recognise them when they call; a plain form adds, edits and deletes them.

import { t, getLang } from '/static/admin-i18n.js';
import { api } from '/static/admin-api.js';
import {
  $, el, setText, notify, report, confirmDelete, restoreFocus, rowControl, badge, button, dataTable,
  markInvalid, clearInvalid, escapeCloses,
} from '/static/admin-ui.js';
import { list as listRooms } from '/static/admin-rooms.js';

let ctx = null;
let systems = [];
let rooms = [];
let registrations = {}; // system id -> its registration state (GET /api/registrations)
let editing = null; // {mode: 'new' | 'edit', system}
let opener = null;

export function init(context) {
  ctx = context;
  const form = $('system-form');
  $('system-new').addEventListener('click', (event) => openEditor('new', null, event.currentTarget));
  form.addEventListener('submit', onSubmit);
  form.addEventListener('input', (event) => event.target.removeAttribute('aria-invalid'));
  $('system-cancel').addEventListener('click', closeEditor);
  escapeCloses(form, closeEditor);
}

export function show() {
  return load();
}

export function hide() {}

async function load() {
  try {
    let states;
    [systems, rooms, states] = await Promise.all([api('GET', '/api/systems'), listRooms(), api('GET', '/api/registrations')]);
    registrations = Object.fromEntries(states.map((s) => [s.system, s]));
    render();
  } catch (error) {
    report(error, 'systemsFailed');
  }
}

const roomName = (id) => (rooms.find((r) => r.id === id) || { name: id }).name;

export function render() {
  if (editing) renderEditorTexts();
  const columns = [
    { label: t('colSystem') }, { label: t('colUri') }, { label: t('colTrusted') }, { label: t('colDefaultRoom') },
    { label: t('colRegistration') },
  ];
  if (ctx.isAdmin) columns.push({ label: t('colActions'), cls: 'actions-col' });
  const sorted = [...systems].sort((a, b) => a.name.localeCompare(b.name, getLang()));
  $('systems-list').replaceChildren(systems.length
    ? dataTable({ caption: t('systemsTitle'), columns, rows: sorted.map((s) => ({ key: s.id, cells: systemCells(s) })) })
    : el('p', { class: 'empty-note', text: t('systemsNone') }));
}

function systemCells(system) {
  const cells = [
    el('div', { class: 'cell-lines' }, el('span', { class: 'cell-main', text: system.name }), el('span', { class: 'cell-sub mono', text: system.id })),
    el('span', { class: 'mono', text: system.uri }),
    system.trusted ? badge(t('trustedYes'), 'badge-speaking', 'lock') : t('trustedNo'),
    system.default_room ? `${roomName(system.default_room)} (${system.default_room})` : '–',
    registrationCell(system),
  ];
  if (ctx.isAdmin) {
    const edit = button(t('edit'), (e) => openEditor('edit', system, e.currentTarget), { label: t('editName', { name: system.name }) });
    edit.dataset.act = 'edit';
    cells.push(el('div', { class: 'row-actions' }, edit,
      button(t('delete'), (e) => removeSystem(system, e.currentTarget), { cls: 'btn-danger-quiet', label: t('deleteName', { name: system.name }) })));
  }
  return cells;
}

function registrationCell(system) {
  const state = registrations[system.id];
  if (!system.password || !state) return t('regNone');
  if (!state.registered) return badge(t('regNotRegistered'), 'badge-muted');
  return el('div', { class: 'cell-lines' },
    badge(t('regRegistered', { address: state.address }), 'badge-speaking'),
    el('span', { class: 'cell-sub', text: state.user_agent || '' }));
}

async function removeSystem(system, from) {
  const sent = await confirmDelete({
    title: t('systemDeleteTitle', { name: system.name }),
    text: t('systemDeleteText'),
    path: `/api/systems/${encodeURIComponent(system.id)}`,
    done: t('systemDeleted', { name: system.name }),
    failKey: 'systemDeleteFailed',
    params: { name: system.name },
  });
  if (!sent) return;
  await load();
  restoreFocus(from, $('system-new'));
}

// -- editor ---------------------------------------------------------------------------------------

function openEditor(mode, system, from) {
  editing = { mode, system };
  opener = from;
  const form = $('system-form');
  clearInvalid(form);
  const s = system || { id: '', name: '', uri: '', trusted: false, default_room: null, srtp: null };
  $('system-id').value = s.id;
  $('system-id').readOnly = mode === 'edit';
  $('system-name').value = s.name;
  $('system-uri').value = s.uri;
  $('system-trusted').checked = s.trusted;
  $('system-srtp').checked = s.srtp === 'required';
  $('system-registers').checked = Boolean(s.password);
  $('system-password').value = '';
  renderRoomOptions(s.default_room);
  renderEditorTexts();
  form.hidden = false;
  $('systems-list').hidden = true;
  $('system-new').hidden = true;
  $('system-form-title').focus();
}

function renderRoomOptions(selected) {
  const select = $('system-room');
  const sorted = [...rooms].sort((a, b) => a.name.localeCompare(b.name, getLang()));
  select.replaceChildren(el('option', { value: '', text: t('noDefaultRoom') }),
    ...sorted.map((r) => el('option', { value: r.id, text: `${r.name} (${r.id})` })));
  select.value = selected || '';
}

function renderEditorTexts() {
  const { mode, system } = editing;
  setText($('system-form-title'), mode === 'new' ? t('systemNewTitle') : t('systemEditTitle', { name: system.name }));
  const select = $('system-room');
  renderRoomOptions(select.value);
}

function closeEditor() {
  if (!editing) return;
  editing = null;
  $('system-form').hidden = true;
  $('systems-list').hidden = false;
  $('system-new').hidden = false;
  restoreFocus(opener, $('system-new'));
}

async function onSubmit(event) {
  event.preventDefault();
  if (!editing) return;
  const form = $('system-form');
  clearInvalid(form);
  const body = {
    id: $('system-id').value.trim(),
    name: $('system-name').value.trim(),
    uri: $('system-uri').value.trim(),
    trusted: $('system-trusted').checked,
    srtp: $('system-srtp').checked ? 'required' : null,
    default_room: $('system-room').value || null,
  };
  const isNew = editing.mode === 'new';
  // The password: typed, kept (not sent), or removed ("") when it no longer registers.
  const typed = $('system-password').value;
  if (!$('system-registers').checked) body.password = '';
  else if (typed) body.password = typed;
  else if (isNew || !editing.system.password) {
    $('system-password').setAttribute('aria-invalid', 'true');
    notify('error', t('systemPasswordNeeded'));
    $('system-password').focus();
    return;
  }
  try {
    const saved = isNew
      ? await api('POST', '/api/systems', body)
      : await api('PUT', `/api/systems/${encodeURIComponent(editing.system.id)}`, body);
    notify('notice', t(isNew ? 'systemCreated' : 'systemSaved', { name: saved.name }));
    editing = null;
    form.hidden = true;
    $('systems-list').hidden = false;
    $('system-new').hidden = false;
    await load();
    restoreFocus(rowControl($('systems-list'), saved.id, 'edit'), $('system-new'));
  } catch (error) {
    report({ ...error, reason: markInvalid(form, error.reason) }, isNew ? 'systemCreateFailed' : 'systemSaveFailed');
  }
}
