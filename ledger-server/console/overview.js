// Overview: counts by verdict and by incident kind, and pictures over time; every
// number from GET /v1/stats, computed by the server over the whole ledger.

import { get } from './api.js';
import { chart } from './chart.js';
import { basis, el, orgName } from './dom.js';
import { t } from './i18n.js';

const VERDICTS = ['lost', 'stuck_in_handoff', 'at_risk', 'late', 'open', 'resolved', 'completed'];
const INCIDENTS = ['lost_unread', 'never_delivered', 'handoff_never_received', 'failed', 'opened_late', 'ack_late'];
const REPORT_OF = { lost: 'lost', stuck_in_handoff: 'stuck', at_risk: 'at-risk', late: 'late', open: 'open', resolved: 'resolved', completed: 'completed' };
const TOP = 6;

function card(label, n, href, bad) {
  return el('a', { class: `card${bad && n ? ' bad' : ''}`, href }, el('span', { class: 'n' }, n.toLocaleString()), label);
}

export async function overview({ params }) {
  const common = { now: params.now, as_of: params.as_of };
  // One question, three groupings, one pass over the ledger on the server; of the
  // senders' months, only those with a message lost unread (the chart's).
  const all = await get('/v1/stats', { ...common, by: 'all;month;from,month:lost_unread' });
  const byMonth = { groups: all.also[0].groups };
  const byFromMonth = { groups: all.also[1].groups, organisations: all.organisations };
  const g = all.groups[0] || { total: 0, verdicts: {}, incidents: {} };
  const months = [...new Set(byMonth.groups.map((x) => x.keys.month))].filter((m) => /^\d{4}-\d{2}$/.test(m)).sort();
  // Lost unread per month, per sender: the largest senders by that count, the rest as one.
  const perSender = new Map();
  for (const x of byFromMonth.groups) {
    const n = x.incidents.lost_unread || 0;
    if (!n) continue;
    const m = perSender.get(x.keys.from) || new Map();
    m.set(x.keys.month, (m.get(x.keys.month) || 0) + n);
    perSender.set(x.keys.from, m);
  }
  const total = (m) => [...m.values()].reduce((a, b) => a + b, 0);
  const ranked = [...perSender.entries()].sort((a, b) => total(b[1]) - total(a[1]));
  const names = { ...byFromMonth.organisations };
  const series = ranked.slice(0, TOP).map(([org, m]) => ({ name: orgName(org, names), values: months.map((mo) => m.get(mo) || 0) }));
  if (ranked.length > TOP) {
    series.push({
      name: t('overview.others'),
      values: months.map((mo) => ranked.slice(TOP).reduce((a, [, m]) => a + (m.get(mo) || 0), 0)),
    });
  }
  const monthly = new Map(byMonth.groups.map((x) => [x.keys.month, x]));
  const verdictSeries = ['lost', 'stuck_in_handoff', 'at_risk', 'late'].map((v) => ({
    name: t(`verdict.${v}`),
    values: months.map((m) => monthly.get(m)?.verdicts[v] || 0),
  }));
  return el('div', {},
    el('h1', {}, t('overview.title')),
    el('p', {}, `${t('overview.total')}: `, el('strong', { 'data-testid': 'total' }, g.total.toLocaleString())),
    el('h2', {}, t('overview.verdicts')),
    el('div', { class: 'cards', 'data-testid': 'verdicts' },
      VERDICTS.map((v) => card(t(`verdict.${v}`), g.verdicts[v] || 0, `#/reports?kind=${REPORT_OF[v]}`, ['lost', 'stuck_in_handoff', 'at_risk'].includes(v)))),
    el('h2', {}, t('overview.incidents')),
    el('div', { class: 'cards', 'data-testid': 'incidents' },
      INCIDENTS.map((k) => card(t(`incident.${k}`), g.incidents[k] || 0, `#/reports?kind=incidents&incident=${k}`, true))),
    el('h2', {}, t('overview.lost_by_district')),
    el('p', { class: 'muted' }, t('overview.top', { n: TOP })),
    chart({ title: t('overview.lost_by_district'), months, series, kind: 'line' }),
    el('h2', {}, t('overview.verdicts_by_month')),
    chart({ title: t('overview.verdicts_by_month'), months, series: verdictSeries, kind: 'stacked' }),
    basis(all));
}
