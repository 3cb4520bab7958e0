// Reconcile: a sender's list and a receiver's list (the formats `ledger reconcile`
// reads) against the ledger, by POST /v1/reconcile; nothing is stored.

import { post } from './api.js';
import { basis, clear, download, el } from './dom.js';
import { t } from './i18n.js';

const COLUMNS = ['class', 'list', 'line', 'message', 'ref', 'at', 'ledger_message', 'ledger_verdict'];

function csvCell(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The differences as `ledger reconcile --format csv` writes them. */
function toCsv(diffs) {
  return [COLUMNS.join(','), ...diffs.map((d) => COLUMNS.map((c) => csvCell(d[c])).join(','))].join('\n') + '\n';
}

export async function reconcilePage({ params }) {
  const out = el('div', { 'aria-live': 'polite' });
  const file = (id) => el('input', { id, name: id, type: 'file', accept: '.csv,.txt,text/csv', required: true });
  const text = (id) => el('input', { id, name: id, type: 'text', autocomplete: 'off' });
  const form = el('form', {
    class: 'filters',
    onsubmit: async (e) => {
      e.preventDefault();
      const f = e.target;
      clear(out).append(el('p', { role: 'status' }, t('loading')));
      try {
        const body = {
          sent: await f.sent.files[0].text(),
          received: await f.received.files[0].text(),
          sent_map: f.sent_map.value || undefined,
          received_map: f.received_map.value || undefined,
        };
        const doc = await post('/v1/reconcile', body, { now: f.now.value || params.now });
        const total = Object.values(doc.summary).reduce((a, b) => a + b, 0);
        clear(out).append(
          el('p', { 'data-testid': 'reconcile-total', role: 'status', class: total ? 'warn' : 'ok' }, t('reconcile.total', { n: total })),
          el('ul', { 'data-testid': 'reconcile-summary' },
            Object.entries(doc.summary).map(([k, n]) => el('li', { 'data-class': k }, `${t(`reconcile.${k}`)}: ${n}`))),
          el('button', { type: 'button', 'data-testid': 'reconcile-csv', onclick: () => download('reconcile.csv', 'text/csv', toCsv(doc.differences)) }, t('reports.csv')),
          doc.differences.length
            ? el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('reconcile.title') }, el('table', {},
              el('thead', {}, el('tr', {}, COLUMNS.map((c) => el('th', { scope: 'col' }, c)))),
              el('tbody', {}, doc.differences.map((d) => el('tr', {}, COLUMNS.map((c) => el('td', {}, d[c] ?? '')))))))
            : '',
          basis(doc));
      } catch (err) {
        clear(out).append(el('p', { class: 'error', role: 'alert' }, err.message));
      }
    },
  },
  el('div', {}, el('label', { for: 'sent' }, t('reconcile.sent')), file('sent')),
  el('div', {}, el('label', { for: 'sent_map' }, t('reconcile.sent_map')), text('sent_map')),
  el('div', {}, el('label', { for: 'received' }, t('reconcile.received')), file('received')),
  el('div', {}, el('label', { for: 'received_map' }, t('reconcile.received_map')), text('received_map')),
  el('div', {}, el('label', { for: 'now' }, t('reports.now')), text('now')),
  el('div', {}, el('button', { type: 'submit', 'data-testid': 'reconcile-run' }, t('reconcile.run'))));
  return el('div', {}, el('h1', {}, t('reconcile.title')), el('p', {}, t('reconcile.intro')), form, out);
}
