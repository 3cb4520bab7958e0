// A message's page: its life as a timeline, deadlines, incidents in words, the
// resend family, "as it stood on date T", and Verify: every entry's receipt checked
// here, in the browser, against the log's key and the witness policy.

import { get, getText } from './api.js';
import { basis, clear, el, orgName, when } from './dom.js';
import { t } from './i18n.js';
import { verifyReceipt } from './verify.js';

/** The API path of a message id: a bare id, or FROM/TO/ID. */
function messagePath(id) {
  return `/v1/messages/${id.split('/').map(encodeURIComponent).join('/')}`;
}

function link(id, label) {
  return el('a', { href: `#/message/${encodeURIComponent(id)}` }, label || id);
}

function form(id, asOf) {
  const input = el('input', { id: 'message-id', name: 'id', value: id || '', required: true, autocomplete: 'off' });
  const date = el('input', { id: 'message-as-of', name: 'as_of', type: 'date', value: (asOf || '').slice(0, 10) });
  return el('form', {
    class: 'filters',
    onsubmit: (e) => {
      e.preventDefault();
      const q = date.value ? `?as_of=${date.value}` : '';
      location.hash = `#/message/${encodeURIComponent(input.value.trim())}${q}`;
    },
  },
  el('div', {}, el('label', { for: 'message-id' }, t('message.id')), input),
  el('div', {}, el('label', { for: 'message-as-of' }, t('message.as_of')), date),
  el('div', {}, el('button', { type: 'submit' }, t('message.show'))));
}

/** What an event says, in a line. */
function describe(ev) {
  const parts = [ev.type];
  if (ev.channel) parts.push(ev.channel);
  if (ev.error) parts.push(ev.error);
  // A channel's notice: its status is the fact (Altinn's "never_read").
  if (ev.notice) parts.push(`${ev.notice}: ${ev.status}${ev.system ? ` (${ev.system})` : ''}`);
  if (ev.to_system) parts.push(`→ ${ev.to_system}`);
  if (ev.new_message) parts.push(`→ ${ev.new_message}`);
  if (ev.reporter?.system) parts.push(`(${ev.reporter.org}/${ev.reporter.system})`);
  return parts.join(' · ');
}

function incidentText(i) {
  const began = `${t(`incident.${i.kind}`)}: ${when(i.began_at)}`;
  const cause = i.cause ? ` (${i.cause})` : '';
  const end = i.ended_at ? ` → ${i.ended_by || ''} ${when(i.ended_at)}${i.via ? ` via ${i.via}` : ''}` : ' → …';
  return began + cause + end;
}

async function trust() {
  const mine = localStorage.getItem('ledger.trust');
  if (mine) return { ...JSON.parse(mine), own: true };
  const l = await get('/v1/ledger');
  const policy = l.witness_policy || `log ${l.verifier_key}\nquorum none\n`;
  return { key: l.verifier_key, policy, hash: l.hash, own: false };
}

function verifyPanel(doc) {
  const out = el('div', { 'aria-live': 'polite' });
  const run = async () => {
    clear(out).append(el('p', { role: 'status' }, t('loading')));
    const tr = await trust();
    const results = [];
    for (const entry of doc.history) {
      const text = await getText('/v1/receipts', { seq: entry.seq });
      const r = await verifyReceipt(text, tr.policy, tr.hash);
      if (r.ok) {
        const leaf = r.steps.find((s) => s.what === 'leaf').detail.split(': ')[1];
        const same = leaf === entry.hash;
        r.steps.push({ what: 'match', ok: same, detail: `seq ${entry.seq}, ${entry.event.id}` });
        r.ok = same;
      }
      results.push({ entry, r });
    }
    const bad = results.find((x) => !x.r.ok);
    clear(out).append(
      el('p', { class: bad ? 'error' : 'ok', 'data-testid': 'verify-result', role: 'status' },
        bad ? t('verify.failed', { what: `${t('verify.entry', { seq: bad.entry.seq })}: ${t(`step.${bad.r.steps.at(-1).what}`)}` })
          : t('verify.ok', { n: results.length })),
      el('p', { class: tr.own ? 'muted' : 'warn' }, tr.own ? t('verify.key_yours') : t('verify.key_from_server')),
      el('p', {}, `${t('verify.key')}: `, el('code', {}, tr.key || '')),
      ...results.map(({ entry, r }) => el('details', { open: !r.ok },
        el('summary', {}, `${t('verify.entry', { seq: entry.seq })} (${entry.event.type}): ${r.ok ? '✓' : '✗'}`),
        el('ul', { class: 'steps' }, r.steps.map((s) => el('li', { class: s.ok ? 'ok' : 'error' },
          `${s.ok ? '✓' : '✗'} ${t(`step.${s.what}`)}: `, el('span', { class: 'muted' }, s.detail)))))),
      ownTrust(tr, run));
  };
  return el('section', { 'aria-labelledby': 'verify-h' },
    el('h2', { id: 'verify-h' }, t('verify.title')),
    el('button', { type: 'button', 'data-testid': 'verify', onclick: () => run().catch((e) => clear(out).append(el('p', { class: 'error', role: 'alert' }, e.message))) }, t('verify.button')),
    out);
}

/** Paste the key and policy you hold, kept in this browser only. */
function ownTrust(tr, rerun) {
  const ta = el('textarea', { id: 'own-policy', rows: 4, cols: 80 }, tr.own ? tr.policy : '');
  const hash = el('select', { id: 'own-hash' }, ['blake3', 'sha256'].map((h) => el('option', { value: h, selected: h === tr.hash }, h)));
  return el('details', {},
    el('summary', {}, t('verify.paste')),
    el('label', { for: 'own-policy' }, 'tlog-policy (log …, witness …, quorum …)'), ta,
    el('label', { for: 'own-hash' }, 'hash'), hash,
    el('div', {},
      el('button', { type: 'button', onclick: () => {
        const key = (/^log\s+(\S+)/m.exec(ta.value) || [])[1] || '';
        localStorage.setItem('ledger.trust', JSON.stringify({ key, policy: ta.value, hash: hash.value }));
        rerun();
      } }, t('verify.save')),
      ' ',
      el('button', { type: 'button', class: 'secondary', onclick: () => { localStorage.removeItem('ledger.trust'); rerun(); } }, t('verify.reset'))));
}

export async function message({ params }, id) {
  const page = el('div', {}, el('h1', {}, t('message.title')), form(id, params.as_of));
  if (!id) return page;
  const doc = await get(messagePath(id), { as_of: params.as_of, known_at: params.known_at, now: params.now });
  const names = doc.organisations || {};
  const ev = doc.evaluation;
  const f = doc.facts || {};
  page.append(
    el('h2', { 'data-testid': 'message-title' }, `${doc.message}: ${orgName(doc.from, names)} → ${orgName(doc.to, names)}`),
    el('p', {}, `${t('message.verdict')}: `, el('strong', { 'data-testid': 'verdict' }, t(`verdict.${ev.verdict}`)), ` (${ev.reason})`),
    el('h2', {}, t('message.timeline')),
    el('ol', { class: 'timeline', 'data-testid': 'timeline' },
      doc.history.map((e) => el('li', { class: ['failed', 'expired', 'deleted'].includes(e.event.type) ? 'bad' : '', 'data-type': e.event.type },
        el('time', { datetime: e.event.at }, when(e.event.at)), ' ', describe(e.event),
        el('div', { class: 'muted' }, `seq ${e.seq}, ${t('message.recorded')} ${when(e.recorded_at)}`)))),
    el('h2', {}, t('message.deadlines')),
    ev.deadlines.length
      ? el('ul', {}, ev.deadlines.map((d) => el('li', { class: d.state === 'missed' || d.state === 'met_late' ? 'error' : '' },
        `${t(`deadline.${d.kind}`)} ${when(d.due)}: ${t(`deadline.${d.state}`)}${d.at ? ` (${when(d.at)})` : ''}`)))
      : el('p', {}, t('message.none')),
    el('h2', {}, t('message.incidents')),
    doc.incidents.length
      ? el('ul', { 'data-testid': 'incidents' }, doc.incidents.map((i) => el('li', {}, incidentText(i))))
      : el('p', {}, t('message.none')),
    el('h2', {}, t('message.family')),
    f.resent_from || (f.resent_to || []).length
      ? el('ul', {},
        f.resent_from ? el('li', {}, `${t('message.resent_from')} `, link(f.resent_from.message || f.resent_from)) : '',
        (f.resent_to || []).map((r) => el('li', {}, `${t('message.resent_to')} `, link(r.message || r))))
      : el('p', {}, t('message.none')),
    verifyPanel(doc),
    basis(doc));
  return page;
}

