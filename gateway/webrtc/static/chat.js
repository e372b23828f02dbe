// The meeting's chat panel: messages to everyone in the meeting (browsers only), shown as text
// (never parsed as HTML); web links are clickable only in a host's messages, so that a guest
// cannot plant a link others might trust. Hosts remove messages and turn the chat off for guests.
// Nothing is kept here after leaving: the list is cleared with the meeting.

import { t } from '/static/i18n.js';
import { $, el, setHidden } from '/static/ui.js';

const LINK = /(https?:\/\/[^\s<>"']+)/g;
let send = () => {};
let shown = []; // messages, oldest first

/** `sender(message)` sends a client message to the gateway. */
export function initChat(sender) {
  send = sender;
  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('chat-input');
    const text = input.value.trim();
    if (!text) return;
    send({ type: 'chat', text });
    input.value = '';
  });
  $('chat-input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      $('chat-form').requestSubmit();
    }
  });
  $('chat-enabled').addEventListener('change', (event) => send({ type: 'chat_enable', enabled: event.target.checked }));
}

/** Text with a host's web links as links (opened in a new tab, no referrer); anything else as text. */
function body(message) {
  const node = el('p', { class: 'chat-text' });
  if (!message.host) {
    node.textContent = message.text;
    return node;
  }
  let at = 0;
  for (const match of message.text.matchAll(LINK)) {
    node.append(message.text.slice(at, match.index));
    node.append(el('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer', text: match[0] }));
    at = match.index + match[0].length;
  }
  node.append(message.text.slice(at));
  return node;
}

function item(message, isHost) {
  const time = new Date(message.at * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const head = el('p', { class: 'chat-head' }, el('span', { class: 'chat-name', text: message.name }), ' ', el('time', { text: time }));
  const node = el('li', { class: 'chat-message', 'data-id': String(message.id) }, head, body(message));
  if (isHost) {
    node.append(
      el('button', {
        type: 'button',
        class: 'btn btn-small btn-quiet',
        text: t('chatRemove'),
        'aria-label': t('chatRemoveFrom', { name: message.name }),
        onclick: () => send({ type: 'chat_remove', id: message.id }),
      })
    );
  }
  return node;
}

/** New messages from the gateway (oldest first). */
export function addMessages(messages, state) {
  for (const message of messages) {
    if (!message || typeof message.text !== 'string' || shown.some((m) => m.id === message.id)) continue;
    shown.push(message);
    $('chat-list').append(item(message, isHost(state)));
  }
  const list = $('chat-list');
  list.scrollTop = list.scrollHeight;
}

export function removeMessage(id) {
  shown = shown.filter((m) => m.id !== id);
  const node = $('chat-list').querySelector(`[data-id="${Number(id)}"]`);
  if (node) node.remove();
}

function isHost(state) {
  return !!(state.you && state.you.role === 'host');
}

/** The panel as the room's state says: chat on or off, host controls. */
export function renderChat(state) {
  const host = isHost(state);
  const enabled = !state.room || state.room.chat_enabled !== false;
  setHidden($('chat-off'), enabled);
  $('chat-input').disabled = !enabled && !host;
  $('chat-send').disabled = !enabled && !host;
  setHidden($('chat-toggle-row'), !host);
  $('chat-enabled').checked = enabled;
  const list = $('chat-list');
  if (list.dataset.host !== String(host)) {
    // (the role changed: the remove buttons come or go)
    list.dataset.host = String(host);
    list.replaceChildren(...shown.map((m) => item(m, host)));
  }
}

/** Leaving the meeting: its chat is forgotten. */
export function clearChat() {
  shown = [];
  $('chat-list').replaceChildren();
  $('chat-input').value = '';
}
