// The console end to end, in Debian's Chromium driven by playwright-core: log in,
// the overview against the CLI, the district question of the answers issue against
// the CLI's JSON, a message's timeline, Verify (and a tampered proof failing it),
// the CSV export against the CLI's, another organisation seeing none of it, the
// CSRF rule, the audit page of a ledger whose key was replaced, and an
// accessibility check (axe-core) of every page. Screenshots of
// each page go to tests/browser/artifacts/.
//
// Needs: the ledger binary (LEDGER_BIN, default target/debug/ledger) and Chromium
// (CHROMIUM, default /usr/bin/chromium); scripts/browser-test provides both.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const HERE = import.meta.dirname;
const ROOT = path.resolve(HERE, '../..');
const LEDGER = process.env.LEDGER_BIN || path.join(ROOT, 'target/debug/ledger');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = path.join(HERE, 'artifacts');
const T_END = '2023-06-30T00:00:00Z';
const REGULATOR = '889640782';

let tmp;
let dir;
let server;
let base;
let browser;
const tokens = {};

function ledger(...args) {
  return execFileSync(LEDGER, ['--dir', dir, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
}

function ledgerJson(...args) {
  return JSON.parse(ledger('--json', ...args));
}

function token(org, scopes) {
  return ledgerJson('token', 'create', '--org', org, '--scope', scopes).token;
}

/** `ledger serve` on `at`, on a free port: the process and its base URL once it listens. */
async function serve(at) {
  const proc = spawn(LEDGER, ['--dir', at, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`ledger serve exited ${code}`)));
  });
  return { proc, url };
}

before(async () => {
  fs.mkdirSync(ART, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-console-'));
  dir = path.join(tmp, 'demo');
  execFileSync(LEDGER, ['demo', '--dir', dir, '--messages', '3000'], { stdio: 'ignore' });
  tokens.regulator = token(REGULATOR, 'ledger:regulator,ledger:read');
  ({ proc: server, url: base } = await serve(dir));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  await new Promise((r) => (server && server.exitCode === null ? server.on('exit', r) : r()));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function loggedIn(tok, at = base) {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${at}/`);
  await page.fill('#token', tok);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
  return { context, page, errors };
}

/** No serious or critical accessibility violation on the page as it is. */
async function accessible(page, what) {
  // Evaluated through the driver: the page's CSP (rightly) refuses inline scripts.
  await page.evaluate(fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.length})`), [], `${what}: accessibility`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ART, `${name}.png`), fullPage: true });
}

test('the log-in page refuses a wrong token and sets no session', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/console/`);
  await page.waitForSelector('#login:not([hidden])');
  await shot(page, 'login');
  await accessible(page, 'login');
  await page.fill('#token', 'lt_not-a-token');
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#login-failed:not([hidden])');
  const cookies = await context.cookies();
  assert.equal(cookies.find((c) => c.name === 'ledger_session'), undefined);
  // The token is never in the URL.
  assert.ok(!page.url().includes('not-a-token'), page.url());
  await context.close();
});

test('the overview counts what the CLI counts, and draws it', async () => {
  const { context, page, errors } = await loggedIn(tokens.regulator);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'ledger_session');
  assert.ok(session.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Strict');
  await page.goto(`${base}/console/#/?now=${T_END}`);
  await page.waitForSelector('[data-testid=total]');
  const cli = ledgerJson('stats', '--now', T_END);
  const total = await page.textContent('[data-testid=total]');
  assert.equal(Number(total.replace(/\D/g, '')), cli.groups[0].total);
  assert.ok(await page.locator('svg.chart').count() >= 2, 'the pictures are drawn');
  // "Lost unread per month, per sender": the picture's numbers (its table) are the
  // CLI's, the largest sender first, every loss counted once.
  const [names, rows] = await page.evaluate(() => {
    const t = document.querySelector('figure table');
    return [
      [...t.querySelectorAll('thead th')].slice(1).map((th) => th.textContent),
      [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => Number(td.textContent))),
    ];
  });
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  assert.equal(sum(rows.flat()), cli.groups[0].incidents.lost_unread);
  const bySender = ledgerJson('stats', '--by', 'from', '--having', 'lost_unread', '--now', T_END);
  assert.equal(bySender.having, 'lost_unread');
  const most = Math.max(...bySender.groups.map((g) => g.incidents.lost_unread));
  const tops = bySender.groups.filter((g) => g.incidents.lost_unread === most).map((g) => g.group);
  assert.ok(tops.some((org) => names[0].includes(org)), `${names[0]} is one of ${tops}`);
  assert.equal(sum(rows.map((r) => r[0])), most);
  await shot(page, 'overview');
  await accessible(page, 'overview');
  assert.deepEqual(errors, []);
  await context.close();
});

/** The district question of the answers issue, as the CLI answers it. */
function districtQuestion() {
  const all = ledgerJson('report', 'incidents', '--now', T_END);
  const district = all.rows.find((r) => r.kind === 'lost_unread' && r.category === 'bekymringsmelding').from;
  const args = ['report', 'incidents', '--kind', 'lost_unread', '--from', district, '--category', 'bekymringsmelding',
    '--since', '2020-01-01', '--until', '2024-01-01', '--now', T_END];
  return { district, args, json: ledgerJson(...args, '--format', 'json'), csv: ledger(...args, '--format', 'csv') };
}

test('the district question gives the CLI rows, and its CSV is the CLI CSV', async () => {
  const q = districtQuestion();
  assert.ok(q.json.rows.length > 0);
  const { page, errors } = await loggedIn(tokens.regulator);
  const name = q.json.organisations[q.district];
  const hash = new URLSearchParams({ kind: 'incidents', incident: 'lost_unread', from: name, category: 'bekymringsmelding',
    since: '2020-01-01', until: '2024-01-01', now: T_END });
  await page.goto(`${base}/console/#/reports?${hash}`);
  await page.waitForSelector('[data-testid=rows]');
  const shown = await page.$$eval('[data-testid=rows] tbody tr td:first-child', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(shown, q.json.rows.slice(0, 50).map((r) => r.message));
  assert.match(await page.textContent('[data-testid=count]'), new RegExp(`\\b${q.json.rows.length}\\b`));
  await shot(page, 'reports');
  await accessible(page, 'reports');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export-csv]')]);
  const text = fs.readFileSync(await download.path(), 'utf8');
  const preamble = text.split('\n').filter((l) => l.startsWith('#'));
  assert.ok(preamble.some((l) => l.includes(q.json.checkpoint.root)), 'the CSV names its checkpoint');
  assert.ok(preamble.some((l) => l.includes(q.json.policy_digest)), 'and the policy digest');
  assert.ok(preamble.some((l) => l.includes(q.json.now)), 'and the judging time');
  assert.equal(text.split('\n').filter((l) => !l.startsWith('#')).join('\n'), q.csv);
  assert.deepEqual(errors, []);
});

test("a message's page shows its life, and its proofs verify in the browser; a tampered one does not", async () => {
  const q = districtQuestion();
  const row = q.json.rows[0];
  const id = `${row.from}/${row.to}/${row.message}`;
  const history = ledgerJson('history', id);
  const { context, page, errors } = await loggedIn(tokens.regulator);
  await page.goto(`${base}/console/#/message/${encodeURIComponent(id)}`);
  await page.waitForSelector('[data-testid=timeline]');
  assert.equal(await page.locator('[data-testid=timeline] li').count(), history.entries.length);
  const types = await page.$$eval('[data-testid=timeline] li', (lis) => lis.map((li) => li.dataset.type));
  assert.deepEqual(types, history.entries.map((e) => e.event.type));
  assert.ok((await page.textContent('[data-testid=incidents]')).length > 0);
  await page.click('[data-testid=verify]');
  await page.waitForSelector('[data-testid=verify-result]');
  assert.equal(await page.getAttribute('[data-testid=verify-result]', 'class'), 'ok', await page.textContent('[data-testid=verify-result]'));
  await shot(page, 'message');
  await accessible(page, 'message');

  // A proxy that changes one byte of the entry each receipt carries.
  await page.route('**/v1/receipts**', async (route) => {
    const r = await route.fetch();
    const text = await r.text();
    const tampered = text.replace(/^extra (.)/m, (m, c) => `extra ${c === 'A' ? 'B' : 'A'}`);
    await route.fulfill({ response: r, body: tampered });
  });
  await page.click('[data-testid=verify]');
  await page.waitForSelector('[data-testid=verify-result].error');
  await shot(page, 'message-tampered');
  assert.deepEqual(errors, []);
  await context.close();
});

test('another organisation sees none of it, and the cookie alone changes nothing', async () => {
  const q = districtQuestion();
  const other = token('964338531', 'ledger:read,ledger:write');
  const { context, page } = await loggedIn(other);
  const hash = new URLSearchParams({ kind: 'incidents', incident: 'lost_unread', from: q.district, category: 'bekymringsmelding',
    since: '2020-01-01', until: '2024-01-01', now: T_END });
  await page.goto(`${base}/console/#/reports?${hash}`);
  await page.waitForSelector('[data-testid=count]');
  assert.match(await page.textContent('[data-testid=count]'), /^0 /);
  const row = q.json.rows[0];
  await page.goto(`${base}/console/#/message/${encodeURIComponent(`${row.from}/${row.to}/${row.message}`)}`);
  await page.waitForSelector('#view .error[role=alert]');
  assert.match(await page.textContent('#view .error[role=alert]'), /404|not found|finnes ikke|no message/i);
  // A write with the session cookie but without its CSRF token is refused.
  const status = await page.evaluate(async () => {
    const r = await fetch('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    return r.status;
  });
  assert.equal(status, 403);
  await context.close();
});

// BLAKE3 of the official test inputs (bytes 0, 1, …, 250, 0, 1, … of each length),
// the first 32 bytes of `hash` in BLAKE3-team/BLAKE3 test_vectors/test_vectors.json.
const BLAKE3_VECTORS = {
  0: 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
  1: '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213',
  1023: '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11',
  1024: '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7',
  1025: 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444',
  2048: 'e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a',
  2049: '5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030',
  3072: 'b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2',
  3073: '7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3',
  4096: '015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969',
  4097: '9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995',
  5120: '9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833',
  5121: '628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff',
  6144: '3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205',
  6145: 'f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f',
  7168: '61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a',
  7169: 'a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817',
};

test("the console's BLAKE3 gives the official test vectors", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/console/`);
  const got = await page.evaluate(async (lengths) => {
    const { blake3 } = await import('/console/vendor/noble-hashes/blake3.js');
    const out = {};
    for (const n of lengths) {
      const input = new Uint8Array(n).map((_, i) => i % 251);
      out[n] = Array.from(blake3(input), (b) => b.toString(16).padStart(2, '0')).join('');
    }
    return out;
  }, Object.keys(BLAKE3_VECTORS).map(Number));
  assert.deepEqual(got, BLAKE3_VECTORS);
  await context.close();
});

test('readable at 200 % zoom and usable from the keyboard', async () => {
  // 200 % zoom of a 1280-pixel window: a 640-pixel layout viewport.
  const { context, page } = await loggedIn(tokens.regulator);
  await page.setViewportSize({ width: 640, height: 900 });
  for (const hash of [`#/?now=${T_END}`, `#/reports?kind=lost&now=${T_END}`]) {
    await page.goto(`${base}/console/${hash}`);
    await page.waitForSelector('#view h1');
    await page.waitForSelector('#view [role=status]:not(.muted), #view [data-testid=total]');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${hash}: the page scrolls sideways by ${overflow} px at 200 %`);
  }
  await shot(page, 'reports-200-percent');
  // On a fresh load the first Tab reaches the skip link, which takes focus to the
  // content; the menu is reachable by Tab too.
  await page.reload();
  await page.waitForSelector('#view h1');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  assert.ok(await page.evaluate(() => document.getElementById('main').contains(document.activeElement)));
  await context.close();
});

test('an auditor downloads the bundle, and it verifies offline with the key', async () => {
  const auditor = token(REGULATOR, 'ledger:audit');
  const { context, page, errors } = await loggedIn(auditor);
  await page.goto(`${base}/console/#/audit`);
  await page.waitForSelector('[data-testid=bundle]');
  await shot(page, 'audit');
  await accessible(page, 'audit');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=bundle]')]);
  const tar = path.join(tmp, 'bundle.tar');
  await download.saveAs(tar);
  const key = await page.textContent('[data-testid=key]');
  // Checked with the key the auditor holds (here: the ledger's own file).
  assert.equal(key.trim(), fs.readFileSync(path.join(dir, 'verifier.key'), 'utf8').trim());
  const out = execFileSync(LEDGER, ['verify', '--bundle', tar, '--key', `@${path.join(dir, 'verifier.key')}`], { encoding: 'utf8' });
  assert.match(out, /^OK: \d+ entries/);
  assert.deepEqual(errors, []);
  await context.close();
});

test('after a key rotation, the audit page gives the whole key history, and the bundle verifies with it', async () => {
  // A copy of the demo ledger under a new key (FORMAT.md §17), served on its own.
  const rot = path.join(tmp, 'rotated');
  execFileSync(LEDGER, ['restore', '--from', dir, '--into', rot, '--new-key', 'scheduled'], { stdio: 'ignore' });
  const auditor = JSON.parse(execFileSync(LEDGER, ['--dir', rot, '--json', 'token', 'create', '--org', REGULATOR,
    '--scope', 'ledger:audit'], { encoding: 'utf8' })).token;
  const { proc: served, url: at } = await serve(rot);
  try {
    const { context, page, errors } = await loggedIn(auditor, at);
    await page.goto(`${at}/console/#/audit`);
    await page.waitForSelector('[data-testid=bundle]');
    const history = fs.readFileSync(path.join(rot, 'verifier.key'), 'utf8').trim();
    assert.equal(history.split('\n').length, 2);
    assert.equal((await page.textContent('[data-testid=key]')).trim(), history);
    const [keyFile] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=key-download]')]);
    const key = path.join(tmp, 'rotated-verifier.key');
    await keyFile.saveAs(key);
    assert.equal(fs.readFileSync(key, 'utf8').trim(), history);
    const [bundle] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=bundle]')]);
    const tar = path.join(tmp, 'rotated-bundle.tar');
    await bundle.saveAs(tar);
    const out = execFileSync(LEDGER, ['verify', '--bundle', tar, '--key', `@${key}`], { encoding: 'utf8' });
    assert.match(out, /^OK: \d+ entries/);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    served.kill('SIGTERM');
    await new Promise((r) => (served.exitCode === null ? served.on('exit', r) : r()));
  }
});

test("reconcile: the demo's two lists give the CLI's classes, and another organisation learns nothing", async () => {
  const sent = path.join(dir, 'police-export.csv');
  const received = path.join(dir, 'municipality.csv');
  // Exit 1 when there are differences: the answer is on stdout either way.
  const cli = JSON.parse(spawnSync(LEDGER, ['--dir', dir, '--json', 'reconcile', '--sent', sent, '--received', received, '--now', T_END],
    { encoding: 'utf8', maxBuffer: 1 << 28 }).stdout);
  const run = async (tok) => {
    const { context, page, errors } = await loggedIn(tok);
    await page.goto(`${base}/console/#/reconcile`);
    await page.waitForSelector('[data-testid=reconcile-run]');
    await page.setInputFiles('#sent', sent);
    await page.setInputFiles('#received', received);
    await page.fill('#now', T_END);
    await page.click('[data-testid=reconcile-run]');
    await page.waitForSelector('[data-testid=reconcile-summary]');
    const shown = Object.fromEntries(await page.$$eval('[data-testid=reconcile-summary] li',
      (lis) => lis.map((li) => [li.dataset.class, Number(li.textContent.split(': ').at(-1))])));
    return { context, page, errors, shown };
  };
  const { context, page, errors, shown } = await run(tokens.regulator);
  assert.deepEqual(shown, cli.summary);
  await shot(page, 'reconcile');
  await accessible(page, 'reconcile');
  assert.deepEqual(errors, []);
  await context.close();
  // A municipality outside both lists: every row reads as unrecorded, no verdict shown.
  const other = await run(token('964338531', 'ledger:read'));
  const cells = await other.page.$$eval('table td:last-child', (tds) => tds.map((td) => td.textContent));
  assert.ok(cells.length > 0 && cells.every((c) => c === ''), 'no verdict of another organisation\'s message');
  await other.context.close();
});
