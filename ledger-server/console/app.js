// The console's shell: log-in, navigation and the pages, each a module that asks
// the /v1 API.

import { get, logout } from './api.js';
import { applyStatic, lang, setLang, t } from './i18n.js';
import { clear, el, orgName } from './dom.js';
import { overview } from './overview.js';
import { reports } from './reports.js';
import { message } from './message.js';
import { audit } from './audit.js';
import { reconcilePage } from './reconcile.js';

const view = () => document.getElementById('view');
let me = null;
// Each navigation's number: a page that answers after a newer navigation began is
// dropped, so a slow page never replaces the one the person asked for last.
let generation = 0;

function showLogin() {
  me = null;
  document.getElementById('login').hidden = false;
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  clear(view());
  const failed = new URLSearchParams(location.search).get('login') === 'failed';
  document.getElementById('login-failed').hidden = !failed;
  document.getElementById('token').focus();
}

let navigated = false;

async function route() {
  if (!me) return;
  const hash = location.hash || '#/';
  const [path, q] = hash.slice(1).split('?');
  const params = Object.fromEntries(new URLSearchParams(q || ''));
  for (const a of document.querySelectorAll('nav a')) {
    const target = a.getAttribute('href').slice(1);
    const here = target === '/' ? path === '/' : path.startsWith(target);
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const mine = ++generation;
  const v = clear(view());
  v.append(el('p', { class: 'muted', role: 'status' }, t('loading')));
  const ctx = { me, params, path };
  try {
    let page;
    if (path === '/' || path === '') page = await overview(ctx);
    else if (path.startsWith('/reports')) page = await reports(ctx);
    else if (path.startsWith('/audit')) page = await audit(ctx);
    else if (path.startsWith('/reconcile')) page = await reconcilePage(ctx);
    else if (path.startsWith('/message')) page = await message(ctx, decodeURIComponent(path.slice('/message/'.length)));
    else page = el('p', {}, `${t('error')}: ${path}`);
    if (mine !== generation) return;
    clear(v).append(page);
  } catch (e) {
    if (mine !== generation) return;
    clear(v).append(el('p', { class: 'error', role: 'alert' }, `${t('error')}: ${e.message}`));
  }
  // After a navigation (not the first load, where the skip link comes first), the
  // content takes the focus, so a screen reader reads the new page.
  if (navigated) document.getElementById('main').focus({ preventScroll: true });
}

async function start() {
  applyStatic();
  document.getElementById('lang').addEventListener('click', () => {
    setLang(lang === 'nb' ? 'en' : 'nb');
    applyStatic();
    if (me) document.getElementById('who').textContent = t('who', { org: orgName(me.org, { [me.org]: me.name }) });
    route();
  });
  document.getElementById('logout').addEventListener('click', async () => {
    await logout();
    history.replaceState(null, '', '/console/');
    showLogin();
  });
  // The skip link moves the focus, not the route (the hash is the router's).
  document.querySelector('.skip').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  window.addEventListener('ledger:logged-out', showLogin);
  window.addEventListener('hashchange', () => {
    navigated = true;
    route();
  });
  // No session cookie pair: the log-in, without asking the server first.
  if (!/(?:^|;\s*)ledger_csrf=./.test(document.cookie)) {
    showLogin();
    return;
  }
  try {
    me = await get('/v1/whoami');
  } catch {
    showLogin();
    return;
  }
  // A token that may only audit starts where it can do something.
  const reads = me.scopes.some((x) => ['ledger:read', 'ledger:regulator', 'ledger:write'].includes(x));
  if (!reads && (!location.hash || location.hash === '#/')) location.hash = '#/audit';
  if (location.search) history.replaceState(null, '', `/console/${location.hash}`);
  document.getElementById('login').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = t('who', { org: orgName(me.org, { [me.org]: me.name }) });
  route();
}

start();
