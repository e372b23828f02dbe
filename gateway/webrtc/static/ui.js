// Small DOM helpers shared by the views: element creation, keyed list updates, icons,
// announced messages and the confirm dialog. User-provided text only ever goes into textContent.

import { t } from '/static/i18n.js';

export const $ = (id) => document.getElementById(id);

/** el('button', {class: 'x', onclick: fn, 'aria-pressed': 'true'}, child, 'text') */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) {
    if (child != null) node.append(child);
  }
  return node;
}

/** Sets text only when it changed, so live regions do not re-announce the same sentence. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Hides or shows a node; if it held the focus, hands the focus to `fallback` first. */
export function setHidden(node, hidden, fallback = null) {
  if (hidden && node.contains(document.activeElement) && fallback && !fallback.hidden) fallback.focus();
  node.hidden = hidden;
}

// Simple line icons (24x24, stroke = currentColor). Always decorative: the text says it all.
const ICONS = {
  mic: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3M8 21h8"/>',
  micOff: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3M8 21h8M3 3l18 18"/>',
  cam: '<rect x="3" y="7" width="12" height="10" rx="2"/><path d="M15 11l6-3v8l-6-3z"/>',
  camOff: '<rect x="3" y="7" width="12" height="10" rx="2"/><path d="M15 11l6-3v8l-6-3zM3 3l18 18"/>',
  hand: '<path d="M8 13V6a1.5 1.5 0 0 1 3 0v6M11 12V4.5a1.5 1.5 0 0 1 3 0V12M14 12V6a1.5 1.5 0 0 1 3 0v6M17 12V9a1.5 1.5 0 0 1 3 0v5a8 8 0 0 1-8 8h-.5a6 6 0 0 1-5-2.7l-2.8-4.3a1.6 1.6 0 0 1 2.6-1.8L8 15"/>',
  leave: '<path d="M10 4H5v16h5M14 8l4 4-4 4M18 12H9"/>',
  people: '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0M16 4.5a3.5 3.5 0 0 1 0 7M18 14a6.5 6.5 0 0 1 3.5 6"/>',
  lock: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>',
  record: '<circle cx="12" cy="12" r="6" fill="currentColor"/>',
  speaking: '<path d="M4 9v6h4l5 4V5L8 9zM16 9a4 4 0 0 1 0 6M19 6a8 8 0 0 1 0 12"/>',
  star: '<path d="M12 3l2.8 5.8 6.2.9-4.5 4.4 1.1 6.2L12 17.4l-5.6 2.9 1.1-6.2L3 9.7l6.2-.9z"/>',
  screen: '<rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4"/>',
  signal: '<path d="M4 20v-3M9 20v-7M14 20V9M19 20V4"/>',
};

export function icon(name) {
  const span = document.createElement('span');
  span.className = 'icon';
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = `<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" focusable="false">${ICONS[name] || ''}</svg>`;
  return span;
}

/** Replaces the icon inside `node` (keeps the element, so focus is kept). */
export function setIcon(node, name) {
  if (node.dataset.icon === name) return;
  node.dataset.icon = name;
  const old = node.querySelector('.icon');
  const fresh = icon(name);
  if (old) old.replaceWith(fresh);
  else node.prepend(fresh);
}

/**
 * Keyed list update: keeps existing child elements (and therefore keyboard focus and playing
 * videos) and only creates, moves or removes what changed.
 */
export function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.dataset.key != null) existing.set(child.dataset.key, child);
    else child.remove(); // unkeyed extras (e.g. an "empty" line) are re-added by the caller
  }
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    const wanted = previous ? previous.nextElementSibling : container.firstElementChild;
    if (wanted !== node) container.insertBefore(node, wanted);
    previous = node;
  }
  for (const node of existing.values()) node.remove();
}

export function initials(name) {
  const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => Array.from(w)[0]).join('').toUpperCase() || '?';
}

/** Shows a message in a live region (#notices polite, #errors assertive); `code` tags it for clearToasts. */
export function toast(kind, text, { code = '', timeoutMs = kind === 'error' ? 20000 : 8000 } = {}) {
  const region = $(kind === 'error' ? 'errors' : 'notices');
  if (!region) return;
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': t('dismiss') }, '×');
  const item = el('div', { class: `toast toast-${kind}`, 'data-code': code }, el('p', { text }), close);
  close.addEventListener('click', () => item.remove());
  region.append(item);
  while (region.children.length > 3) region.firstElementChild.remove();
  if (timeoutMs) setTimeout(() => item.remove(), timeoutMs);
}

/** Removes shown messages: all of them, or those tagged with one of `codes` (no longer true). */
export function clearToasts(...codes) {
  for (const item of document.querySelectorAll('.toast')) {
    if (!codes.length || codes.includes(item.dataset.code)) item.remove();
  }
}

/** A keyboard-accessible confirm dialog; resolves true when confirmed. */
export function confirmDialog({ title, text, confirmLabel }) {
  const dialog = $('confirm-dialog');
  const opener = document.activeElement;
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirmLabel;
  $('confirm-cancel').textContent = t('cancel');
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      resolve(dialog.returnValue === 'confirm');
    }, { once: true });
    dialog.showModal();
    $('confirm-cancel').focus(); // the safe choice is the default for destructive actions
  });
}

/** Shows exactly one of the top-level screens and moves focus to its heading. */
export function showScreen(id, focus = true) {
  for (const screen of document.querySelectorAll('.screen')) screen.hidden = screen.id !== id;
  if (!focus) return;
  const heading = $(id) && $(id).querySelector('h1');
  if (heading) heading.focus({ preventScroll: true });
}
