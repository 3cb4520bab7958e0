// Building the page without innerHTML: data from the ledger is always text.

import { t } from './i18n.js';

/** el('a', {href: '#/'}, 'text', child…) */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** An organisation as people know it: its name (from organisations.csv) and number. */
export function orgName(org, names = {}) {
  if (!org) return '';
  return names[org] ? `${names[org]} (${org})` : org;
}

/** A time as a person reads it: date and minute, UTC. */
export function when(ts) {
  if (!ts) return '';
  return ts.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
}

/** Save text as a file the browser downloads. */
export function download(name, type, text) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}


/**
 * What an answer stands on (every answer names it): the checkpoint with its
 * witnesses' cosignatures, the policy and its digest, the judging time.
 */
export function basis(doc) {
  const cp = doc.checkpoint || {};
  const lines = (cp.note || '').split('\n\n')[1] || '';
  const signers = lines.split('\n').filter((l) => l.startsWith('\u2014 ')).map((l) => l.split(' ')[1]);
  const witnesses = signers.filter((name) => name !== cp.origin);
  return el('section', { class: 'basis', 'aria-label': t('basis.checkpoint') },
    el('div', {}, `${t('basis.checkpoint')}: ${cp.origin ?? ''}, ${t('basis.size')} ${cp.size ?? ''}, ${t('basis.root')} `,
      el('code', {}, cp.root ?? ''),
      cp.entries_after ? ` (+${cp.entries_after} ${t('basis.after')})` : ''),
    el('div', { 'data-testid': 'cosigned' }, witnesses.length ? `${t('basis.cosigned')}: ${witnesses.join(', ')}` : t('basis.not_cosigned')),
    el('div', {}, `${t('basis.policy')}: ${doc.policy ?? ''} (`, el('code', {}, doc.policy_digest ?? ''), ')'),
    el('div', {}, `${t('basis.judged')}: ${when(doc.now)}`,
      doc.as_of ? ` · ${t('reports.as_of')}: ${when(doc.as_of)}` : '',
      doc.known_at ? ` · ${t('reports.known_at')}: ${when(doc.known_at)}` : ''),
    doc.digest ? el('div', {}, `${t('basis.digest')}: `, el('code', {}, doc.digest)) : '');
}
