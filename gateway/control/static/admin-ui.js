// Shared helpers of the admin page: announced messages, the confirm dialog, tables, badges and
// form fields marked from an API refusal. DOM building comes from the meeting page's ui.js;
// user-provided and API-provided text only ever goes into textContent.

import { t } from '/static/admin-i18n.js';
import { api } from '/static/admin-api.js';
import { $, el, setText, setIcon, reconcile } from '/static/ui.js';

export { $, el, setText, setIcon, reconcile };

// Test hook (Playwright) and a place for the page's last message; admin.js adds live views.
window.gatewayAdmin = window.gatewayAdmin || {};

/** The open modal dialog, if any: messages go there, since everything behind it is inert. */
function openDialog() {
  return document.querySelector('dialog[open]');
}

/**
 * Shows a message in an aria-live region and returns it. Errors (assertive) stay until closed or
 * until something succeeds; a notice (polite) replaces the previous one. Messages are in-flow
 * (never over a control that may have the focus). `title` is a translated summary, `text` the
 * detail (the API's reason).
 */
export function notify(kind, text, { title = '' } = {}) {
  const dialog = openDialog();
  const region = (dialog && dialog.querySelector('.dialog-messages')) || $(kind === 'error' ? 'errors' : 'notices');
  const signature = `${kind}|${title}|${text}`;
  for (const shown of region.querySelectorAll('.message')) {
    if (shown.dataset.signature === signature) return shown; // the same refusal again (polling): shown already
  }
  if (kind !== 'error') {
    // Success: earlier refusals are answered, and one confirmation at a time is enough.
    clearMessages(dialog || $('errors'));
    clearMessages(region);
  }
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': t('dismiss') }, '×');
  const body = el('p', {}, title ? el('strong', { text: title }) : null, title && text ? ' ' : null, text || null);
  const item = el('div', { class: `message toast toast-${kind}` }, body, close); // looks as on the meeting page
  item.dataset.signature = signature;
  close.addEventListener('click', () => {
    item.remove();
    const main = $('main');
    if (!dialog && main) main.focus({ preventScroll: true }); // the button is gone: keep the focus in the page
  });
  region.append(item);
  while (region.querySelectorAll('.message').length > 3) region.querySelector('.message').remove();
  window.gatewayAdmin.lastMessage = { kind, title, text };
  return item;
}

/** Announces a failed request: `titleKey` says what failed, the API's reason says why. */
export function report(error, titleKey = 'requestFailed', params = {}) {
  const reason = error && error.code === 'network' ? t('networkError') : (error && (error.reason || error.message)) || String(error);
  window.gatewayAdmin.lastError = { code: error && error.code, reason };
  return notify('error', reason, { title: t(titleKey, params) });
}

export function clearMessages(root = document) {
  for (const item of root.querySelectorAll('.message')) item.remove();
}

/** A keyboard-accessible confirm dialog (Escape cancels); resolves true when confirmed. */
export function confirmAction({ title, text, confirmLabel }) {
  const dialog = $('confirm-dialog');
  const opener = document.activeElement;
  setText($('confirm-title'), title);
  setText($('confirm-text'), text);
  setText($('confirm-ok'), confirmLabel);
  setText($('confirm-cancel'), t('cancel'));
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      restoreFocus(opener);
      resolve(dialog.returnValue === 'confirm');
    }, { once: true });
    dialog.showModal();
    $('confirm-cancel').focus(); // the safe choice is the default for destructive actions
  });
}

/**
 * Asks (title, text), then DELETEs `path` and announces the outcome: `done` on success, the API's
 * reason under t(failKey, params) on refusal. Resolves true when it asked and sent the request.
 */
export async function confirmDelete({ title, text, path, done, failKey, params = {} }) {
  if (!(await confirmAction({ title, text, confirmLabel: t('delete') }))) return false;
  try {
    await api('DELETE', path);
    notify('notice', done);
  } catch (error) {
    report(error, failKey, params);
  }
  return true;
}

/** The control `act` (data-act) in the table row keyed `key` below `container`, or null. */
export function rowControl(container, key, act) {
  const row = [...container.querySelectorAll('tbody tr')].find((tr) => tr.dataset.key === key);
  return row ? row.querySelector(`[data-act="${act}"]`) : null;
}

/** Moves focus back to `node` if it is still on the page, else to `fallback`. */
export function restoreFocus(node, fallback = null) {
  const target = node && node.isConnected && !node.disabled && !node.closest('[hidden]') ? node : fallback;
  if (target && typeof target.focus === 'function') target.focus();
}

/** A status badge: icon (optional, decorative) and text; never colour alone. */
export function badge(text, cls = '', iconName = '') {
  const node = el('span', { class: `badge ${cls}` }, el('span', { text }));
  if (iconName) setIcon(node, iconName);
  return node;
}

/** A small button; `label` is the accessible name when the visible text alone is ambiguous. */
export function button(text, onclick, { cls = '', label = null, disabled = false } = {}) {
  return el('button', { type: 'button', class: `btn btn-small ${cls}`, onclick, 'aria-label': label, disabled }, text);
}

/**
 * A data table: columns [{label, cls}], rows [{key, cells: [node|text, ...]}]; the first cell of
 * each row is its header (scope=row), so screen readers name a row by it.
 */
export function dataTable({ caption, columns, rows, cls = '' }) {
  const head = el('tr', {}, ...columns.map((c) => el('th', { scope: 'col', class: c.cls || null, text: c.label })));
  const cell = (content, i) => el(i === 0 ? 'th' : 'td', { scope: i === 0 ? 'row' : null, class: columns[i].cls || null },
    content instanceof Node ? content : String(content ?? ''));
  const body = el('tbody', {}, ...rows.map((row) => el('tr', { 'data-key': row.key }, ...row.cells.map(cell))));
  return el('table', { class: `data-table ${cls}` }, el('caption', { class: 'sr-only', text: caption }), el('thead', {}, head), body);
}

/**
 * Marks the fields an API refusal names ("body.host_pin: ..."; a nested path matches its last part
 * that is a field), focuses the first, and returns the reason with field labels for the paths.
 */
export function markInvalid(form, reason) {
  clearInvalid(form);
  let first = null;
  const problems = String(reason || '').split('; ').map((problem) => {
    const colon = problem.indexOf(': ');
    if (colon < 0) return problem;
    const path = problem.slice(0, colon).split('.').filter((p) => p && p !== 'body');
    for (const part of [...path].reverse()) {
      const field = form.querySelector(`[name="${CSS.escape(part)}"]`);
      if (!field) continue;
      field.setAttribute('aria-invalid', 'true');
      first = first || field;
      const label = field.labels && field.labels.length ? field.labels[0].textContent.trim() : part;
      return `${label}: ${problem.slice(colon + 2)}`;
    }
    return problem;
  });
  if (first) first.focus();
  return problems.join('; ');
}

export function clearInvalid(form) {
  for (const field of form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
}

/** Splits a list typed as lines or commas into its non-empty, trimmed items. */
export function splitList(text) {
  return String(text || '').split(/[\n,;]+/).map((s) => s.trim()).filter(Boolean);
}

/** Closes an open editor form on Escape (plain forms, not dialogs: those close by themselves). */
export function escapeCloses(form, close) {
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !event.defaultPrevented) {
      event.preventDefault();
      close();
    }
  });
}
