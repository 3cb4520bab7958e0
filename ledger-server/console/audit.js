// For auditors: the whole log as an export bundle, the verifier key, and the
// command that checks one against the other offline (GET /v1/bundle, audit scope).

import { get } from './api.js';
import { download, el } from './dom.js';
import { t } from './i18n.js';

export async function audit({ me }) {
  const l = await get('/v1/ledger');
  const allowed = me.scopes.includes('ledger:audit') || me.scopes.includes('ledger:regulator');
  const file = `${l.origin.replace(/[^A-Za-z0-9.-]/g, '-')}-<size>.tar`;
  // After a key rotation, verifier.key is the key history: every key, each after the
  // first with the size it signs from (FORMAT.md §17); a bundle verifies only with all.
  const keys = l.key_history || l.verifier_key;
  return el('div', {},
    el('h1', {}, t('audit.title')),
    el('p', {}, t('audit.intro')),
    el('dl', {},
      el('dt', {}, t('audit.origin')), el('dd', {}, el('code', {}, l.origin)),
      el('dt', {}, t('audit.size')), el('dd', { 'data-testid': 'size' }, String(l.size)),
      el('dt', {}, t('audit.hash')), el('dd', {}, l.hash),
      el('dt', {}, t('verify.key')),
      el('dd', {}, keys.includes('\n')
        ? el('pre', { 'data-testid': 'key' }, keys)
        : el('code', { 'data-testid': 'key' }, keys))),
    el('p', { class: 'warn' }, t('audit.key_warning')),
    allowed
      ? el('p', {},
        el('a', { href: '/v1/bundle', download: '', class: 'button', 'data-testid': 'bundle' }, t('audit.bundle')), ' ',
        el('button', { type: 'button', class: 'secondary', 'data-testid': 'key-download', onclick: () => download('verifier.key', 'text/plain', `${keys}\n`) }, t('audit.key')))
      : el('p', { class: 'muted' }, t('audit.needs_scope')),
    el('h2', {}, t('audit.check')),
    el('pre', {}, `ledger verify --bundle ${file} --key @verifier.key`),
    l.witness_policy ? el('div', {}, el('h2', {}, t('audit.policy')), el('pre', {}, l.witness_policy)) : '');
}
