// The routing rules section: the ordered list of patterns that send a dialled alias to a room
// (first match wins, after exact aliases); add, delete, move up and down (the whole list is PUT),
// and a check of where a given alias would go.

import { t } from '/static/admin-i18n.js';
import { api, query } from '/static/admin-api.js';
import {
  $, el, setText, notify, report, confirmDelete, restoreFocus, rowControl, button, dataTable, markInvalid, clearInvalid,
} from '/static/admin-ui.js';

let ctx = null;
let rules = [];

export function init(context) {
  ctx = context;
  const form = $('rule-form');
  form.addEventListener('submit', onAdd);
  form.addEventListener('input', (event) => event.target.removeAttribute('aria-invalid'));
  $('route-form').addEventListener('submit', onRouteTest);
}

export function show() {
  return load();
}

export function hide() {}

async function load() {
  try {
    rules = await api('GET', '/api/rules');
    render();
  } catch (error) {
    report(error, 'rulesFailed');
  }
}

export function render() {
  const columns = [{ label: t('colOrder'), cls: 'num narrow' }, { label: t('colPattern') }, { label: t('colTarget') }, { label: t('colRuleId') }];
  if (ctx.isAdmin) columns.push({ label: t('colActions'), cls: 'actions-col' });
  $('rules-list').replaceChildren(rules.length
    ? dataTable({ caption: t('rulesTitle'), columns, rows: rules.map((rule, i) => ({ key: rule.id, cells: ruleCells(rule, i) })) })
    : el('p', { class: 'empty-note', text: t('rulesNone') }));
}

function ruleCells(rule, index) {
  const cells = [
    String(index + 1),
    el('code', { text: rule.pattern }),
    el('code', { text: rule.room }),
    el('span', { class: 'mono', text: rule.id }),
  ];
  if (ctx.isAdmin) {
    const up = button(t('moveUp'), (e) => move(index, -1, e.currentTarget), { label: t('moveUpName', { id: rule.id }), disabled: index === 0 });
    const down = button(t('moveDown'), (e) => move(index, 1, e.currentTarget), { label: t('moveDownName', { id: rule.id }), disabled: index === rules.length - 1 });
    const remove = button(t('delete'), (e) => removeRule(rule, e.currentTarget), { cls: 'btn-danger-quiet', label: t('deleteName', { name: rule.id }) });
    up.dataset.act = 'up';
    down.dataset.act = 'down';
    cells.push(el('div', { class: 'row-actions' }, up, down, remove));
  }
  return cells;
}

function focusRule(id, act) {
  // At the top or bottom the pressed button is disabled: the other direction keeps the focus in the row.
  const list = $('rules-list');
  const other = act === 'up' ? 'down' : 'up';
  restoreFocus(rowControl(list, id, act), rowControl(list, id, other));
}

async function move(index, step, from) {
  const target = index + step;
  if (target < 0 || target >= rules.length) return;
  const order = [...rules];
  [order[index], order[target]] = [order[target], order[index]];
  const moved = rules[index];
  try {
    rules = await api('PUT', '/api/rules', order);
    notify('notice', t(step < 0 ? 'ruleMovedUp' : 'ruleMovedDown', { id: moved.id, position: target + 1 }));
  } catch (error) {
    report(error, 'ruleMoveFailed');
    await load();
    restoreFocus(from);
    return;
  }
  render();
  focusRule(moved.id, step < 0 ? 'up' : 'down');
}

async function removeRule(rule, from) {
  const sent = await confirmDelete({
    title: t('ruleDeleteTitle', { id: rule.id }),
    text: t('ruleDeleteText', { pattern: rule.pattern, room: rule.room }),
    path: `/api/rules/${encodeURIComponent(rule.id)}`,
    done: t('ruleDeleted', { id: rule.id }),
    failKey: 'ruleDeleteFailed',
  });
  if (!sent) return;
  await load();
  restoreFocus(from, $('rule-pattern'));
}

function freeId() {
  const taken = new Set(rules.map((r) => r.id));
  let n = rules.length + 1;
  while (taken.has(`rule-${n}`)) n += 1;
  return `rule-${n}`;
}

async function onAdd(event) {
  event.preventDefault();
  const form = $('rule-form');
  clearInvalid(form);
  const body = {
    id: $('rule-id').value.trim() || freeId(),
    pattern: $('rule-pattern').value.trim(),
    room: $('rule-room').value.trim(),
  };
  try {
    rules = await api('POST', '/api/rules', body);
    notify('notice', t('ruleAdded', { id: body.id }));
    form.reset();
    render();
    $('rule-pattern').focus();
  } catch (error) {
    report({ ...error, reason: markInvalid(form, error.reason) }, 'ruleAddFailed');
  }
}

async function onRouteTest(event) {
  event.preventDefault();
  const called = $('route-called').value.trim();
  if (!called) {
    $('route-called').focus();
    return;
  }
  try {
    const found = await api('GET', `/api/route${query({ called })}`);
    setText($('route-result'), found.room ? t('routeFound', { called, room: found.room }) : t('routeNone', { called }));
  } catch (error) {
    setText($('route-result'), '');
    report(error, 'routeFailed');
  }
}
