// Main module of the administration page: sign-in with a token, the caller's role, the sections
// (#live, #rooms, #systems, #rules, #records), the language switch, and the wiring of the section
// modules. Each section module exports init(ctx), show(), hide() and render() (re-render only).

import { t, detectLang, setLang, getLang, applyStatic } from '/static/admin-i18n.js';
import { api, getToken, setToken, onUnauthorized } from '/static/admin-api.js';
import { $, setText, report, clearMessages } from '/static/admin-ui.js';
import * as live from '/static/admin-live.js';
import * as rooms from '/static/admin-rooms.js';
import * as systems from '/static/admin-systems.js';
import * as records from '/static/admin-records.js';
import * as rules from '/static/admin-rules.js';

const VIEWS = { live, rooms, systems, rules, records };
const DEFAULT_VIEW = 'live';

const session = { status: null, view: null };

/** What the section modules know of the session. */
const ctx = {
  get you() { return session.status ? session.status.you : null; },
  get isAdmin() { return !!session.status && session.status.you.role === 'admin'; },
  get status() { return session.status; },
  setStatus(status) {
    session.status = status;
    renderHeader();
  },
};

Object.defineProperties(window.gatewayAdmin, {
  view: { get: () => session.view },
  role: { get: () => (session.status ? session.status.you.role : null) },
});

// -- sign-in -------------------------------------------------------------------------------------

async function signIn(token) {
  const status = await api('GET', '/api/status', undefined, { token });
  setToken(token);
  session.status = status;
  document.body.dataset.role = status.you.role;
  $('token-input').value = '';
  showFieldError(null);
  $('nav').hidden = false;
  renderHeader();
  showView(viewFromHash());
}

function signOut(reason = '') {
  const token = getToken();
  // (a sign-in with the organisation account ends at the gateway too; a configured token is unaffected)
  if (token) fetch('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  setToken('');
  if (session.view) VIEWS[session.view].hide();
  session.status = null;
  session.view = null;
  delete document.body.dataset.role;
  clearMessages();
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  for (const view of document.querySelectorAll('.admin-view')) view.hidden = view.id !== 'view-signin';
  $('nav').hidden = true;
  renderHeader();
  showFieldError(reason || null);
  $('token-input').focus();
}

function showFieldError(text) {
  const error = $('token-error');
  error.hidden = !text;
  setText(error, text || '');
  if (text) $('token-input').setAttribute('aria-invalid', 'true');
  else $('token-input').removeAttribute('aria-invalid');
}

async function onSignInSubmit(event) {
  event.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) {
    showFieldError(t('signInTokenRequired'));
    $('token-input').focus();
    return;
  }
  try {
    await signIn(token);
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      showFieldError(t('signInRefused', { reason: error.reason }));
      $('token-input').focus();
    } else {
      report(error, 'signInFailed');
    }
  }
}

/** Back from the identity provider (gateway/control/oidc.py): the sign-in's session token, or why
 * it failed, comes in the fragment; it moves into this tab's storage and out of the address bar. */
function takeSignInFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('signin');
  const error = fragment.get('signin_error');
  if (token === null && error === null) return null;
  history.replaceState(null, '', location.pathname + location.search);
  if (token) setToken(token);
  return error;
}

/** The "organisation account" button, where the gateway offers it. */
async function offerOidc(error) {
  let enabled = false;
  try { enabled = (await (await fetch('/auth/config')).json()).enabled === true; } catch { /* not offered */ }
  $('oidc-box').hidden = !enabled;
  $('oidc-error').hidden = !error;
  setText($('oidc-error'), error ? t('signInOidcFailed', { code: error }) : '');
}

// -- header, sections, language ------------------------------------------------------------------

function renderHeader() {
  const you = ctx.you;
  $('who').hidden = !you;
  $('sign-out').hidden = !you;
  $('role-note').hidden = !you || you.role === 'admin';
  if (you) setText($('who'), t('signedInAs', { name: you.name, role: t(`tokenRole_${you.role}`) }));
  const section = session.view ? t(`nav${session.view[0].toUpperCase()}${session.view.slice(1)}`) : t('signInTitle');
  document.title = `${section} – ${t('appName')}`;
}

function viewFromHash() {
  const name = location.hash.replace(/^#/, '');
  return name in VIEWS ? name : DEFAULT_VIEW;
}

function showView(name, focus = true) {
  if (session.view && session.view !== name) {
    VIEWS[session.view].hide();
    clearMessages($('errors'));
    clearMessages($('notices'));
  }
  for (const view of document.querySelectorAll('.admin-view')) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  session.view = name;
  renderHeader();
  VIEWS[name].show();
  if (focus) {
    const heading = $(`view-${name}`).querySelector('h1');
    if (heading) heading.focus({ preventScroll: false });
  }
}

function onLanguageChange() {
  setLang($('lang-select').value, true);
  applyStatic();
  clearMessages($('errors')); // they were said in the other language
  clearMessages($('notices'));
  renderHeader();
  for (const view of Object.values(VIEWS)) view.render();
}

// -- start ---------------------------------------------------------------------------------------

function start() {
  setLang(detectLang());
  $('lang-select').value = getLang();
  applyStatic();
  for (const view of Object.values(VIEWS)) view.init(ctx);
  $('lang-select').addEventListener('change', onLanguageChange);
  $('signin-form').addEventListener('submit', onSignInSubmit);
  $('sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => {
    // Only section names: the skip link's #main must not switch the section.
    if (session.status && location.hash.replace(/^#/, '') in VIEWS) showView(viewFromHash());
  });
  onUnauthorized((error) => signOut(t('signInExpired', { reason: error.reason })));
  offerOidc(takeSignInFromFragment());

  const token = getToken();
  if (!token) {
    signOut();
    return;
  }
  signIn(token).catch((error) => {
    if (error.status === 401 || error.status === 403) signOut(t('signInExpired', { reason: error.reason }));
    else {
      signOut();
      report(error, 'signInFailed');
    }
  });
}

start();
