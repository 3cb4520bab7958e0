// Reports: every report the CLI has, with its filters, computed and paged by the
// server (GET /v1/reports/{kind}); exported as the CLI's CSV and JSON, each
// carrying the checkpoint, the policy digest and the judging time.

import { get, getText } from './api.js';
import { basis, download, el, orgName, when } from './dom.js';
import { t } from './i18n.js';

const KINDS = ['lost', 'stuck', 'at-risk', 'late', 'open', 'completed', 'resolved', 'incidents', 'anomalies', 'reported-late'];
const INCIDENT_KINDS = ['', 'lost_unread', 'never_delivered', 'handoff_never_received', 'failed', 'opened_late', 'ack_late'];
const FILTERS = ['from', 'to', 'party', 'category', 'channel', 'since', 'until', 'as_of', 'known_at', 'now'];
const PAGE = 50;

/** The API's parameters from the page's. */
function apiParams(p) {
  const q = {};
  for (const k of FILTERS) if (p[k]) q[k] = p[k];
  if (p.ever) q.ever = true;
  if (p.incident) q.kind = p.incident;
  return q;
}

function filterForm(p) {
  const field = (name, type = 'text') => el('div', {},
    el('label', { for: `f-${name}` }, t(`reports.${name}`)),
    el('input', { id: `f-${name}`, name, type, value: p[name] || '', autocomplete: 'off' }));
  const kind = el('select', { id: 'f-kind', name: 'kind' }, KINDS.map((k) => el('option', { value: k, selected: k === (p.kind || 'lost') }, k)));
  const incident = el('select', { id: 'f-incident', name: 'incident' },
    INCIDENT_KINDS.map((k) => el('option', { value: k, selected: k === (p.incident || '') }, k ? t(`incident.${k}`) : '–')));
  return el('form', {
    class: 'filters',
    onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v);
      location.hash = `#/reports?${q}`;
    },
  },
  el('div', {}, el('label', { for: 'f-kind' }, t('reports.kind')), kind),
  el('div', {}, el('label', { for: 'f-incident' }, t('reports.incident_kind')), incident),
  field('from'), field('to'), field('party'), field('category'), field('channel'),
  field('since'), field('until'), field('as_of'), field('known_at'), field('now'),
  el('div', {}, el('label', { for: 'f-ever' }, t('reports.ever')),
    el('input', { id: 'f-ever', name: 'ever', type: 'checkbox', value: 'true', checked: p.ever === 'true' })),
  el('div', {}, el('button', { type: 'submit' }, t('reports.run'))));
}

/** The columns of a row: messages or incidents. */
function columns(rows) {
  if (rows.length && 'began_at' in rows[0]) {
    return [
      ['message', (r) => r.message],
      ['kind', (r) => t(`incident.${r.kind}`)],
      ['began_at', (r) => when(r.began_at)],
      ['ended_at', (r) => when(r.ended_at)],
      ['cause', (r) => r.cause || ''],
      ['from', (r, n) => orgName(r.from, n)],
      ['to', (r, n) => orgName(r.to, n)],
    ];
  }
  return [
    ['message', (r) => r.message],
    ['verdict', (r) => t(`verdict.${r.verdict}`)],
    ['reason', (r) => r.reason],
    ['from', (r, n) => orgName(r.from, n)],
    ['to', (r, n) => orgName(r.to, n)],
    ['category', (r) => r.category || ''],
    ['channel', (r) => r.channel || ''],
    ['origin_at', (r) => when(r.origin_at)],
  ];
}

function messageId(r) {
  return r.from && r.to ? `${r.from}/${r.to}/${r.message}` : r.message;
}

/** The basis of an answer as '#' lines above the CLI's CSV. */
function csvPreamble(doc) {
  const cp = doc.checkpoint || {};
  return [
    `# ledger report ${doc.report}`,
    `# checkpoint ${cp.origin} ${cp.size} ${cp.root} (+${cp.entries_after || 0} entries after)`,
    `# policy ${doc.policy} ${doc.policy_digest}`,
    `# judged at ${doc.now}${doc.as_of ? `; as of ${doc.as_of}` : ''}${doc.known_at ? `; known at ${doc.known_at}` : ''}`,
    `# rows ${doc.count}, digest ${doc.digest}`,
  ].join('\n') + '\n';
}

export async function reports({ params }) {
  const kind = params.kind || 'lost';
  const page = Number(params.page || 1);
  const sort = params.sort || '';
  const path = `/v1/reports/${encodeURIComponent(kind)}`;
  const q = apiParams(params);
  const doc = await get(path, { ...q, limit: PAGE, offset: (page - 1) * PAGE, sort });
  const names = doc.organisations || {};
  const rows = doc.rows || [];
  const cols = columns(rows);
  const pages = Math.max(1, Math.ceil(doc.count / PAGE));
  const go = (changes) => {
    const next = new URLSearchParams({ ...params, ...changes });
    for (const [k, v] of [...next]) if (!v) next.delete(k);
    location.hash = `#/reports?${next}`;
  };
  const header = (name) => {
    const dir = sort === name ? 'ascending' : sort === `-${name}` ? 'descending' : 'none';
    return el('th', { scope: 'col', 'aria-sort': dir },
      el('button', { type: 'button', onclick: () => go({ sort: sort === name ? `-${name}` : name, page: '' }) }, t(`col.${name}`)));
  };
  return el('div', {},
    el('h1', {}, t('reports.title')),
    filterForm({ ...params, kind }),
    el('p', { 'data-testid': 'count', role: 'status' }, t('reports.rows', { n: doc.count.toLocaleString() })),
    rows.length
      ? el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('reports.title') }, el('table', { 'data-testid': 'rows' },
        el('thead', {}, el('tr', {}, cols.map(([name]) => header(name)))),
        el('tbody', {}, rows.map((r) => el('tr', {}, cols.map(([name, cell], i) => el('td', {},
          i === 0 ? el('a', { href: `#/message/${encodeURIComponent(messageId(r))}` }, cell(r, names)) : cell(r, names))))))))
      : el('p', {}, t('reports.none')),
    el('div', { class: 'pager' },
      el('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => go({ page: String(page - 1) }) }, t('reports.prev')),
      el('span', {}, t('reports.page', { p: page, n: pages })),
      el('button', { type: 'button', class: 'secondary', disabled: page >= pages, onclick: () => go({ page: String(page + 1) }) }, t('reports.next')),
      el('button', { type: 'button', 'data-testid': 'export-csv', onclick: async () => {
        const csv = await getText(path, { ...q, sort, format: 'csv' });
        download(`${kind}-${doc.checkpoint.size}.csv`, 'text/csv', csvPreamble(doc) + csv);
      } }, t('reports.csv')),
      el('button', { type: 'button', class: 'secondary', 'data-testid': 'export-json', onclick: async () => {
        const all = await get(path, { ...q, sort });
        download(`${kind}-${doc.checkpoint.size}.json`, 'application/json', `${JSON.stringify(all, null, 2)}\n`);
      } }, t('reports.json')),
      el('button', { type: 'button', class: 'secondary', onclick: () => window.print() }, t('reports.print'))),
    basis(doc));
}
