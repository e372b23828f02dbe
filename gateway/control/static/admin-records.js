// The call records section: who was in which room when, how long, over which leg and codecs, with
// loss and jitter; filtered by room and dates, and downloadable as CSV (fetched with the token as a
// header, then saved from a Blob, so the token never appears in a link).

import { t, has, formatDateTime, formatDuration, formatNumber } from '/static/admin-i18n.js';
import { api, query } from '/static/admin-api.js';
import { $, el, setText, notify, report, dataTable } from '/static/admin-ui.js';
import { list as listRooms } from '/static/admin-rooms.js';

const SHOWN = 500; // newest records in the table; the CSV has all that match
const CSV_LIMIT = 100000;

let records = [];
let loaded = false;

export function init() {
  $('records-form').addEventListener('submit', (event) => {
    event.preventDefault();
    load(true);
  });
  $('records-csv').addEventListener('click', download);
}

export function show() {
  listRooms()
    .then((rooms) => $('records-rooms').replaceChildren(...rooms.map((r) => el('option', { value: r.id, label: r.name }))))
    .catch(() => {}); // only suggestions for the room field
  return load(false);
}

export function hide() {}

/** The filter as API parameters, or null (and a message) when the dates make no sense. */
function filters() {
  const from = $('records-from').value;
  const to = $('records-to').value;
  const startOf = (day) => {
    const [y, m, d] = day.split('-').map(Number);
    return new Date(y, m - 1, d).getTime() / 1000; // local midnight: the days the administrator means
  };
  const params = { room: $('records-room').value.trim() || undefined };
  if (from) params.since = startOf(from);
  if (to) params.until = startOf(to) + 86400; // "to" includes that whole day (a DST day is off by an hour at most)
  if (from && to && params.until <= params.since) {
    $('records-to').setAttribute('aria-invalid', 'true');
    notify('error', t('recordsBadDates'));
    return null;
  }
  $('records-to').removeAttribute('aria-invalid');
  return params;
}

async function load(announce) {
  const params = filters();
  if (!params) return;
  try {
    records = await api('GET', `/api/call-records${query({ ...params, limit: SHOWN })}`);
    loaded = true;
    render();
    if (announce) $('records-list').scrollIntoView({ block: 'nearest' }); // #records-count announces the number
  } catch (error) {
    report(error, 'recordsFailed');
  }
}

export function render() {
  if (!loaded) return;
  const count = records.length >= SHOWN ? t('recordsLimited', { count: SHOWN }) : t('recordsCount', { count: records.length });
  setText($('records-count'), count);
  const columns = [
    { label: t('colStart') }, { label: t('colDuration'), cls: 'num' }, { label: t('colRoom') }, { label: t('colParticipant') },
    { label: t('colKind') }, { label: t('colSource') }, { label: t('colEnd') }, { label: t('colCodecs') },
    { label: t('colLoss'), cls: 'num' }, { label: t('col_jitter'), cls: 'num' },
  ];
  $('records-list').replaceChildren(records.length
    ? dataTable({ caption: t('recordsTitle'), columns, rows: records.map((r) => ({ key: String(r.id), cells: recordCells(r) })), cls: 'records' })
    : el('p', { class: 'empty-note', text: t('recordsNone') }));
}

function recordCells(r) {
  const known = (prefix, value) => {
    if (!value) return '–';
    return has(`${prefix}_${value}`) ? t(`${prefix}_${value}`) : value; // a value newer than this page: as it is
  };
  return [
    formatDateTime(r.joined_at * 1000),
    formatDuration(r.duration_s),
    el('span', { class: 'mono', text: r.room }),
    el('div', { class: 'cell-lines' }, el('span', { class: 'cell-main', text: r.name }), el('span', { class: 'cell-sub', text: known('role', r.role) })),
    el('div', { class: 'cell-lines' }, el('span', { text: known('kind', r.kind) }), el('span', { class: 'cell-sub', text: known('direction', r.direction) })),
    el('span', { class: 'mono', text: r.source || '–' }),
    known('end', r.end_reason),
    [r.audio_codec, ...String(r.video_codecs || '').split(',')].filter(Boolean).join(', ') || '–',
    r.loss_percent == null ? '–' : `${formatNumber(r.loss_percent, 2)} %`,
    r.jitter_ms == null ? '–' : formatNumber(r.jitter_ms, 1),
  ];
}

async function download() {
  const params = filters();
  if (!params) return;
  try {
    const blob = await api('GET', `/api/call-records${query({ ...params, limit: CSV_LIMIT, format: 'csv' })}`, undefined, { as: 'blob' });
    const url = URL.createObjectURL(blob);
    const day = new Date().toISOString().slice(0, 10);
    const link = el('a', { href: url, download: `call-records-${day}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    notify('notice', t('csvDone'));
  } catch (error) {
    report(error, 'csvFailed');
  }
}
