//! `ledger mirror --from URL --into DIR`: a monitor's and an off-site replica's copy of
//! a log, followed through its c2sp.org/tlog-tiles API and checked at every step.
//!
//! The copy is an export bundle (ledger.json, entries.jsonl, checkpoint,
//! checkpoints.txt, and the verifier key *you* gave), so `ledger --dir DIR …` answers
//! every question from it, read-only. Each round: the log's checkpoint, signed by that
//! key (and, with `--policy`, cosigned by its witness quorum); never smaller than the
//! one kept; the entries after the kept ones, fetched as entry bundles; and the root
//! of kept + fetched entries must be the new checkpoint's, or nothing is written and
//! the command fails saying what is wrong (a rewritten history, or another one shown).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ledger_core::HashAlg;
use ledger_core::KeyHistory;
use ledger_core::checkpoint::split_notes;
use ledger_core::merkle::Frontier;
use ledger_core::tiles::{TilePath, WIDTH};
use ledger_core::tlog_policy::Policy;
use serde_json::json;

use crate::{InputError, output};

/// `ledger mirror`'s flags.
#[derive(Args, Debug)]
pub(crate) struct MirrorArgs {
    /// The log's server (its base URL; the tiles are under /tlog).
    #[arg(long)]
    pub from: String,
    /// The mirror's directory (created on the first run).
    #[arg(long)]
    pub into: PathBuf,
    /// The log's verifier key, or key history (its verifier.key after a key
    /// rotation), that you trust: the text, or @FILE.
    #[arg(long)]
    pub key: String,
    /// A tlog-policy: each checkpoint must also meet its witness quorum.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Keep following: a round every --every seconds until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between rounds with --follow.
    #[arg(long, default_value_t = 5)]
    pub every: u64,
    /// The log's hash (blake3 or sha256), for a server that serves its entry bundles
    /// publicly and so a mirror with no token; with a token, the server says it.
    #[arg(long)]
    pub hash: Option<HashAlg>,
}

#[derive(Clone)]
struct Kept {
    size: u64,
    note: Option<String>,
    frontier: Frontier,
    /// The leaf hash of the last kept entry: the next entry's `prev`.
    last: Option<ledger_core::Hash>,
    /// Bytes of entries.jsonl that hold the kept entries.
    len: u64,
}

/// What the mirror holds: its newest checkpoint, and the tree's right edge
/// recomputed from entries.jsonl (each entry's seq and prev checked, the root compared
/// with that checkpoint's), so a damaged copy is found, not trusted. Entries past the
/// checkpoint are an interrupted round's, never confirmed: they are cut off, and said.
fn kept(dir: &Path, alg: HashAlg, key: &KeyHistory) -> Result<Kept> {
    let note = std::fs::read_to_string(dir.join("checkpoint")).ok();
    let cp = note
        .as_deref()
        .map(|n| {
            key.verify(n).map_err(|e| {
                anyhow!(
                    "DAMAGED: {} does not verify with your key: {e} (if the log replaced its \
                     key, give its key history: --key @<its verifier.key>)",
                    dir.join("checkpoint").display()
                )
            })
        })
        .transpose()?;
    let want = cp.as_ref().map_or(0, |c| c.size);
    let mut frontier = Frontier::new(alg);
    let mut last = None;
    let mut len = 0u64;
    let path = dir.join("entries.jsonl");
    let file = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    if let Some(f) = file {
        let total = f.metadata()?.len();
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        let mut prev = alg.genesis(key.name());
        while frontier.size() < want {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .with_context(|| format!("read {}", path.display()))?;
            let seq = frontier.size();
            let Some(entry) = line.strip_suffix(b"\n") else {
                bail!(
                    "DAMAGED: {} ends at entry {seq}, but the mirror's checkpoint has {want}",
                    path.display()
                );
            };
            let ok = ledger_core::entry::parse_envelope(entry)
                .is_ok_and(|p| p.seq == seq && p.prev == prev);
            if !ok {
                bail!(
                    "DAMAGED: entry {seq} of {} does not continue the chain (malformed, or its seq or prev hash)",
                    path.display()
                );
            }
            prev = alg.leaf(entry);
            frontier.push(prev, |_, _, _| {});
            last = Some(prev);
            len += n as u64;
        }
        if cp.as_ref().is_some_and(|c| c.root != frontier.root()) {
            bail!(
                "DAMAGED: the {want} entries of {} do not have the root of the mirror's checkpoint",
                path.display()
            );
        }
        if total > len {
            eprintln!(
                "mirror: cutting {} bytes past entry {want} off {}: an interrupted round's, never checked against a checkpoint",
                total - len,
                path.display()
            );
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(len)?;
            f.sync_all()?;
        }
    }
    Ok(Kept {
        size: frontier.size(),
        note,
        frontier,
        last,
        len,
    })
}

/// `token`: the global --token (env LEDGER_TOKEN), with ledger:audit: entry bundles
/// say who wrote to whom. None only where the operator made them public, and then
/// `--hash` names the log's hash.
pub(crate) fn run(args: &MirrorArgs, token: Option<&str>, as_json: bool) -> Result<u8> {
    if token.is_none() && args.hash.is_none() {
        return Err(anyhow!(InputError(
            "mirror needs --token (or LEDGER_TOKEN) with the ledger:audit scope, since entry \
             bundles say who wrote to whom; or, for a log whose operator serves them publicly, \
             --hash blake3|sha256"
                .into()
        )));
    }
    let key = crate::read_key(&args.key)?;
    let policy = args
        .policy
        .as_deref()
        .map(|p| -> Result<Policy> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            Policy::parse(&text).map_err(|e| anyhow!(InputError(format!("{}: {e}", p.display()))))
        })
        .transpose()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let base = args.from.trim_end_matches('/').to_string();
    let mut have = None;
    loop {
        let started = Instant::now();
        let (from, to) = round(&agent, &base, args, token, &key, policy.as_ref(), &mut have)?;
        let secs = started.elapsed().as_secs_f64();
        if as_json {
            output::json(&json!({"from": from, "to": to, "seconds": secs}))?;
        } else if to > from {
            println!(
                "mirrored entries {from}..{to} ({:.0} entries/s); {} holds {to} entries, checked",
                (to - from) as f64 / secs.max(1e-9),
                args.into.display()
            );
        } else {
            println!("up to date at {to} entries");
        }
        if !args.follow {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(args.every));
    }
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<Vec<u8>> {
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.call().with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .read_to_vec()
        .with_context(|| format!("GET {url}"))?;
    if status != 200 {
        bail!("GET {url}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// One round; the sizes before and after. `have` is what the mirror holds, read
/// (and checked) from the directory on the first round, then kept in memory.
fn round(
    agent: &ureq::Agent,
    base: &str,
    args: &MirrorArgs,
    token: Option<&str>,
    key: &KeyHistory,
    policy: Option<&Policy>,
    have: &mut Option<Kept>,
) -> Result<(u64, u64)> {
    let dir = &args.into;
    let info: serde_json::Value = match args.hash {
        // A public mirror: the hash you named, the newest format this ledger reads.
        Some(alg) => json!({
            "origin": key.name(), "hash": alg.name(),
            "format": if key.keys().count() > 1 { ledger_core::rotation::KEY_ENTRY_V } else { ledger_core::event::FORMAT_LATEST }
        }),
        None => serde_json::from_slice(&get(agent, &format!("{base}/v1/ledger"), token)?)?,
    };
    let alg: HashAlg = info["hash"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow!("the server names an unknown hash: {e}"))?;
    if info["origin"].as_str() != Some(key.name()) {
        bail!(
            "the server's log is {:?}, but the key you gave is {:?}'s",
            info["origin"],
            key.name()
        );
    }
    let note = String::from_utf8(get(agent, &format!("{base}/tlog/checkpoint"), None)?)?;
    let cp = key
        .verify(&note)
        .map_err(|e| anyhow!("the log's checkpoint does not verify with your key: {e}"))?;
    if let Some(p) = policy {
        p.verify(&note)
            .map_err(|e| anyhow!("the log's checkpoint fails your witness policy: {e}"))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let kept_now = match have.take() {
        Some(k) => k,
        None => kept(dir, alg, key)?,
    };
    let from = kept_now.size;
    if cp.size < from {
        *have = Some(kept_now);
        bail!(
            "INCONSISTENT: the log's checkpoint has {} entries, but this mirror holds {from}: \
             the log went back in time (a rollback, or another history shown to you)",
            cp.size
        );
    }
    let path = dir.join("entries.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match fetch_and_check(agent, base, token, alg, key, &kept_now, &cp, &mut file) {
        Ok(next) => {
            file.sync_all()
                .with_context(|| format!("sync {}", path.display()))?;
            commit(dir, &info, alg, key, kept_now.note.as_deref(), &note)?;
            *have = Some(Kept {
                note: Some(note),
                ..next
            });
            Ok((from, cp.size))
        }
        Err(e) => {
            // Nothing of a refused round stays: the file goes back to what was kept.
            file.set_len(kept_now.len)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cut {} back to {from} entries", path.display()))?;
            *have = Some(kept_now);
            Err(e)
        }
    }
}

/// Entry bundles in flight at most: fetched ahead of the check, in order.
const WINDOW: usize = 32;

/// Fetches the entries after `have` up to the checkpoint `cp` (four bundles at a
/// time, at most [`WINDOW`] ahead), checks each in order (it continues the chain:
/// its seq, and its prev = the hash of the entry before it), appends it to `out`,
/// and at the end compares the tree's root with the checkpoint's. What the mirror
/// then holds (without its note), or why the log is refused.
#[allow(clippy::too_many_arguments)]
fn fetch_and_check(
    agent: &ureq::Agent,
    base: &str,
    token: Option<&str>,
    alg: HashAlg,
    key: &KeyHistory,
    have: &Kept,
    cp: &ledger_core::checkpoint::Checkpoint,
    out: &mut std::fs::File,
) -> Result<Kept> {
    let from = have.size;
    let tiles: Vec<TilePath> = (from / WIDTH..cp.size.div_ceil(WIDTH))
        .map(|index| TilePath {
            level: None,
            index,
            width: ((index + 1) * WIDTH).min(cp.size) - index * WIDTH,
        })
        .collect();
    let mut next = have.clone();
    let mut prev = have.last.unwrap_or_else(|| alg.genesis(key.name()));
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    // The fetching threads also split, parse and hash each bundle (the costly part,
    // so it runs on every core); the chain, the tree and the file go in order.
    let split = |t: &TilePath, bundle: Vec<u8>| -> Result<(Vec<u8>, Vec<Parsed>)> {
        let path = t.to_path();
        let mut parsed = Vec::with_capacity(t.width as usize);
        let mut at = 0usize;
        let mut seq = t.index * WIDTH;
        while at < bundle.len() {
            let n = bundle
                .get(at..at + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or_else(|| anyhow!("entry bundle {path} is cut short"))?;
            let entry = bundle
                .get(at + 2..at + 2 + n)
                .ok_or_else(|| anyhow!("entry bundle {path} is cut short"))?;
            if seq >= from {
                let p = ledger_core::entry::parse_envelope(entry).map_err(|err| {
                    anyhow!("INCONSISTENT: entry {seq} from the log is malformed: {err}")
                })?;
                // A key entry must announce the key your history says signs next.
                if p.is_key_entry() {
                    let announced = ledger_core::entry::check_key_entry(entry, key.name())
                        .map(|(_, a)| a.key)
                        .map_err(|err| {
                            anyhow!("INCONSISTENT: entry {seq} from the log is malformed: {err}")
                        })?;
                    if key.announced_at(seq) != Some(&announced) {
                        bail!(
                            "INCONSISTENT: entry {seq} announces the signing key {announced}, which \
                             the key history you gave does not name there: obtain the ledger's \
                             verifier.key from its operator by a channel you trust. Nothing was written."
                        );
                    }
                }
                parsed.push(Parsed {
                    at: at + 2..at + 2 + n,
                    seq: p.seq,
                    prev: p.prev,
                    leaf: alg.leaf(entry),
                });
            }
            at += 2 + n;
            seq += 1;
        }
        if seq != t.index * WIDTH + t.width {
            bail!(
                "entry bundle {path} holds {} entries, not {}",
                seq - t.index * WIDTH,
                t.width
            );
        }
        Ok((bundle, parsed))
    };
    in_order(agent, base, token, &tiles, split, |(bundle, parsed)| {
        for p in parsed {
            let seq = next.frontier.size();
            if p.seq != seq || p.prev != prev {
                bail!(
                    "INCONSISTENT: entry {seq} from the log does not continue the chain the \
                     mirror holds (its seq or prev hash): the log's history was rewritten, or \
                     you were shown another one. Nothing was written."
                );
            }
            prev = p.leaf;
            next.frontier.push(prev, |_, _, _| {});
            w.write_all(&bundle[p.at.clone()])?;
            w.write_all(b"\n")?;
            next.len += p.at.len() as u64 + 1;
        }
        Ok(())
    })?;
    w.flush()?;
    if next.frontier.root() != cp.root {
        bail!(
            "INCONSISTENT: the log's checkpoint of size {} does not match the {from} entries \
             this mirror kept and the {} it fetched: the log's history was rewritten, or you \
             were shown another one. Nothing was written.",
            cp.size,
            cp.size - from
        );
    }
    next.size = cp.size;
    next.last = (cp.size > 0).then_some(prev);
    Ok(next)
}

/// One entry of a fetched bundle, parsed and hashed.
struct Parsed {
    /// Where the entry's bytes are in the bundle.
    at: std::ops::Range<usize>,
    seq: u64,
    prev: ledger_core::Hash,
    leaf: ledger_core::Hash,
}

/// Fetches `tiles` with four threads, which also `prepare` each; at most [`WINDOW`]
/// ahead of `each`, which sees them in order. The first failure (a fetch's,
/// `prepare`'s or `each`'s, in tile order) stops the rest.
fn in_order<T: Send>(
    agent: &ureq::Agent,
    base: &str,
    token: Option<&str>,
    tiles: &[TilePath],
    prepare: impl Fn(&TilePath, Vec<u8>) -> Result<T> + Sync,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    struct Shared<T> {
        ready: std::collections::BTreeMap<usize, Result<T>>,
        consumed: usize,
        stop: bool,
    }
    let shared = Mutex::new(Shared {
        ready: Default::default(),
        consumed: 0,
        stop: false,
    });
    let changed = Condvar::new();
    let next_tile = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next_tile.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = tiles.get(i) else { break };
                    {
                        let mut s = shared.lock().expect("lock");
                        while !s.stop && i >= s.consumed + WINDOW {
                            s = changed.wait(s).expect("lock");
                        }
                        if s.stop {
                            break;
                        }
                    }
                    let r = get(agent, &format!("{base}/tlog/tile/{}", t.to_path()), token)
                        .and_then(|b| prepare(t, b));
                    shared.lock().expect("lock").ready.insert(i, r);
                    changed.notify_all();
                }
            });
        }
        let result = (|| {
            for i in 0..tiles.len() {
                let ready = {
                    let mut s = shared.lock().expect("lock");
                    loop {
                        if let Some(r) = s.ready.remove(&i) {
                            s.consumed = i + 1;
                            break r;
                        }
                        s = changed.wait(s).expect("lock");
                    }
                };
                changed.notify_all();
                each(ready?)?;
            }
            Ok(())
        })();
        shared.lock().expect("lock").stop = true;
        changed.notify_all();
        result
    })
}

/// Makes a checked round the mirror's: its new checkpoint, the one before kept in
/// checkpoints.txt, and the bundle's description and your key when they change.
fn commit(
    dir: &Path,
    info: &serde_json::Value,
    alg: HashAlg,
    key: &KeyHistory,
    old: Option<&str>,
    note: &str,
) -> Result<()> {
    // The description and your key, on the first round and whenever they change (a
    // key rotation: a longer key history, and format 3).
    let described = serde_json::to_string_pretty(&json!({
        "format": info["format"], "origin": key.name(), "hash": alg.name()
    }))? + "\n";
    for (file, text) in [
        ("ledger.json", described),
        ("verifier.key", format!("{key}\n")),
    ] {
        let path = dir.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
    }
    if let Some(old) = old.filter(|o| *o != note) {
        let path = dir.join("checkpoints.txt");
        let mut notes = std::fs::read_to_string(&path)
            .map(|t| split_notes(&t))
            .unwrap_or_default();
        notes.push(old.to_string());
        std::fs::write(&path, notes.join("\n"))?;
    }
    // The new checkpoint is durable before it replaces the old one: a crash leaves
    // one or the other, and entries past the one left are cut off by the next round.
    let tmp = dir.join("checkpoint.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("checkpoint"))?;
    Ok(())
}
