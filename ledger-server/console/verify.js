// Checks a receipt (c2sp.org/tlog-proof@v1) in the browser, from the specs alone
// (schemas/FORMAT.md §7 and §16): the log's signature on the checkpoint, the
// witnesses' cosignatures and the policy's quorum, and the entry's inclusion.
// SHA-256 and Ed25519 are the browser's own (WebCrypto); BLAKE3 is noble-hashes
// (vendor/README.md). Every step is reported, passed or not, for the page to show.

import { blake3 } from './vendor/noble-hashes/blake3.js';

const te = new TextEncoder();

function b64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** The tree's hash: 'sha256' or 'blake3'. */
export async function hash(alg, bytes) {
  if (alg === 'sha256') return sha256(bytes);
  if (alg === 'blake3') return blake3(bytes);
  throw new Error(`unknown hash ${alg}`);
}

const leafHash = (alg, entry) => hash(alg, concat(Uint8Array.of(0), entry));
const nodeHash = (alg, l, r) => hash(alg, concat(Uint8Array.of(1), l, r));

/** RFC 9162 §2.1.3.2: the root an inclusion path leads to. */
export async function rootFromInclusion(alg, index, size, leaf, path) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) throw new Error(`index ${index} is not below the size ${size}`);
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new Error('the path is longer than the tree is deep');
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(alg, p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(alg, r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error('the path is shorter than the tree is deep');
  return r;
}

/** A note's text (through the blank line) and its signature lines. */
export function parseNote(note) {
  const cut = note.indexOf('\n\n');
  if (cut < 0) throw new Error('the checkpoint is not a signed note');
  const text = note.slice(0, cut + 1);
  const sigs = note
    .slice(cut + 2)
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(l);
      if (!m) throw new Error(`not a signature line: ${l}`);
      return { name: m[1], blob: b64(m[2]) };
    });
  const lines = text.split('\n');
  if (lines.length < 4) throw new Error('the checkpoint has no origin, size and root');
  return {
    text,
    sigs,
    origin: lines[0],
    size: BigInt(lines[1]),
    root: b64(lines[2]),
  };
}

/** A key string `name+hexid+base64(type ‖ key)`, checked against its id. */
export async function parseKey(s, type) {
  const parts = s.trim().split('+');
  if (parts.length < 3) throw new Error(`not a key: ${s}`);
  const [name, id] = parts;
  const raw = b64(parts.slice(2).join('+'));
  if (raw[0] !== type || raw.length !== 33) throw new Error(`${name}: not an Ed25519 key of type ${type}`);
  const want = (await sha256(concat(te.encode(name), Uint8Array.of(0x0a, type), raw.slice(1)))).slice(0, 4);
  if (hex(want) !== id) throw new Error(`${name}: the key id does not match the key`);
  const key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, id: want, key, text: s.trim() };
}

async function ed25519(key, sig, msg) {
  return crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg);
}

/** c2sp.org/tlog-policy: logs, witnesses, groups and the quorum. */
export async function parsePolicy(text) {
  const p = { logs: [], witnesses: new Map(), groups: new Map(), quorum: null };
  for (const raw of text.split('\n')) {
    const w = raw.trim().split(/[ \t]+/).filter((x) => x);
    if (w.length === 0 || w[0].startsWith('#')) continue;
    if (w[0] === 'log') p.logs.push(await parseKey(w[1], 0x01));
    else if (w[0] === 'witness') p.witnesses.set(w[1], await parseKey(w[2], 0x04));
    else if (w[0] === 'group') p.groups.set(w[1], { need: w[2], members: w.slice(3) });
    else if (w[0] === 'quorum') p.quorum = w[1];
    else throw new Error(`policy: unknown line ${raw}`);
  }
  if (p.logs.length === 0) throw new Error('policy: no log line');
  if (p.quorum === null) throw new Error('policy: no quorum line');
  return p;
}

/** Whether the witnesses in `have` meet the group (or witness) `name`. */
function meets(p, name, have) {
  if (name === 'none') return true;
  if (p.witnesses.has(name)) return have.has(name);
  const g = p.groups.get(name);
  if (!g) return false;
  const n = g.members.filter((m) => meets(p, m, have)).length;
  const need = g.need === 'all' ? g.members.length : g.need === 'any' ? 1 : Number(g.need);
  return n >= need;
}

/** A receipt file, parsed. */
export function parseReceipt(text) {
  const lines = text.split('\n');
  if (lines[0] !== 'c2sp.org/tlog-proof@v1') throw new Error('not a c2sp.org/tlog-proof@v1 receipt');
  let i = 1;
  let entry = null;
  if (lines[i].startsWith('extra ')) entry = b64(lines[i++].slice(6));
  const m = /^index (0|[1-9][0-9]*)$/.exec(lines[i++] || '');
  if (!m) throw new Error('no index line');
  const path = [];
  while (lines[i] !== '') {
    if (i >= lines.length) throw new Error('the receipt is cut short');
    const h = b64(lines[i++]);
    if (h.length !== 32) throw new Error('a path line is not 32 bytes');
    path.push(h);
  }
  const checkpoint = lines.slice(i + 1).join('\n');
  return { entry, index: BigInt(m[1]), path, checkpoint };
}

/**
 * Checks a receipt under a policy, with the tree's hash `alg`. Returns
 * {ok, steps: [{what, ok, detail}], checkpoint} and never throws.
 */
export async function verifyReceipt(text, policyText, alg) {
  const steps = [];
  const step = (what, ok, detail) => {
    steps.push({ what, ok, detail });
    return ok;
  };
  try {
    const policy = await parsePolicy(policyText);
    const r = parseReceipt(text);
    const note = parseNote(r.checkpoint);
    const msg = te.encode(note.text);
    // The log's signature, by a key the policy lists under the checkpoint's origin.
    let logOk = false;
    for (const k of policy.logs.filter((k) => k.name === note.origin)) {
      for (const s of note.sigs.filter((s) => s.name === k.name && equal(s.blob.slice(0, 4), k.id))) {
        if (s.blob.length === 68 && (await ed25519(k.key, s.blob.slice(4), msg))) logOk = true;
      }
    }
    if (!step('log_signature', logOk, `${note.origin}, size ${note.size}`)) return { ok: false, steps };
    // Every cosignature of a listed witness must verify; those that do count.
    const have = new Set();
    for (const [name, k] of policy.witnesses) {
      for (const s of note.sigs.filter((s) => s.name === k.name && equal(s.blob.slice(0, 4), k.id))) {
        const time = new DataView(s.blob.buffer, s.blob.byteOffset + 4, 8).getBigUint64(0);
        const signed = concat(te.encode(`cosignature/v1\ntime ${time}\n`), msg);
        const ok = s.blob.length === 76 && (await ed25519(k.key, s.blob.slice(12), signed));
        if (!step('cosignature', ok, `${name} (${k.name}), time ${time}`)) return { ok: false, steps };
        have.add(name);
      }
    }
    if (!step('quorum', meets(policy, policy.quorum, have), `${policy.quorum}: ${[...have].join(', ') || '-'}`)) {
      return { ok: false, steps };
    }
    if (!step('entry', r.entry !== null, r.entry ? `${r.entry.length} bytes` : 'the receipt carries no entry')) {
      return { ok: false, steps };
    }
    const leaf = await leafHash(alg, r.entry);
    step('leaf', true, `${alg}: ${hex(leaf)}`);
    let root;
    try {
      root = await rootFromInclusion(alg, r.index, note.size, leaf, r.path);
    } catch (e) {
      step('inclusion', false, e.message);
      return { ok: false, steps };
    }
    const ok = step(
      'inclusion',
      equal(root, note.root),
      `index ${r.index}, ${r.path.length} hashes, root ${hex(root)}${equal(root, note.root) ? ' = ' : ' ≠ '}${hex(note.root)}`,
    );
    return { ok, steps, checkpoint: { origin: note.origin, size: note.size, root: hex(note.root), cosigned: [...have] }, entry: r.entry };
  } catch (e) {
    step('format', false, e.message);
    return { ok: false, steps };
  }
}
