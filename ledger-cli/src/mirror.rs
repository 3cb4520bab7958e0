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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ledger_core::HashAlg;
use ledger_core::checkpoint::{VerifierKey, split_notes};
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
    /// The log's verifier key you trust (the key string, or @FILE).
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
}

struct Kept {
    size: u64,
    note: Option<String>,
    frontier: Frontier,
    /// The leaf hash of the last kept entry: the next entry's `prev`.
    last: Option<ledger_core::Hash>,
}

fn read_key(arg: &str) -> Result<VerifierKey> {
    let text = match arg.strip_prefix('@') {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("read {p}"))?,
        None => arg.to_string(),
    };
    text.trim()
        .parse()
        .map_err(|e| anyhow!(InputError(format!("--key: {e}"))))
}

/// What the mirror holds: its size, newest checkpoint, and the tree's right edge
/// (recomputed from entries.jsonl, so a damaged copy is found, not trusted).
fn kept(dir: &Path, alg: HashAlg) -> Result<Kept> {
    let mut frontier = Frontier::new(alg);
    let mut last = None;
    let entries = dir.join("entries.jsonl");
    if let Ok(text) = std::fs::read(&entries) {
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let leaf = alg.leaf(line);
            frontier.push(leaf, |_, _, _| {});
            last = Some(leaf);
        }
    }
    let note = std::fs::read_to_string(dir.join("checkpoint")).ok();
    Ok(Kept {
        size: frontier.size(),
        note,
        frontier,
        last,
    })
}

/// `token`: the global --token (env LEDGER_TOKEN), with ledger:audit: entry bundles
/// say who wrote to whom.
pub(crate) fn run(args: &MirrorArgs, token: Option<&str>, as_json: bool) -> Result<u8> {
    let token = token.ok_or_else(|| {
        anyhow!(InputError(
            "mirror needs --token (or LEDGER_TOKEN) with the ledger:audit scope: entry bundles say who wrote to whom".into()
        ))
    })?;
    let key = read_key(&args.key)?;
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
    loop {
        let started = Instant::now();
        let (from, to) = round(&agent, &base, args, token, &key, policy.as_ref())?;
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

/// One round; the sizes before and after.
fn round(
    agent: &ureq::Agent,
    base: &str,
    args: &MirrorArgs,
    token: &str,
    key: &VerifierKey,
    policy: Option<&Policy>,
) -> Result<(u64, u64)> {
    let dir = &args.into;
    let info: serde_json::Value =
        serde_json::from_slice(&get(agent, &format!("{base}/v1/ledger"), Some(token))?)?;
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
    let mut have = kept(dir, alg)?;
    if cp.size < have.size {
        bail!(
            "INCONSISTENT: the log's checkpoint has {} entries, but this mirror holds {}: \
             the log went back in time (a rollback, or another history shown to you)",
            cp.size,
            have.size
        );
    }
    let from = have.size;
    // Fetch entries from..cp.size in bundles, four at a time, then check each
    // bundle's shape in order.
    let tiles: Vec<TilePath> = (from / WIDTH..cp.size.div_ceil(WIDTH))
        .map(|index| TilePath {
            level: None,
            index,
            width: ((index + 1) * WIDTH).min(cp.size) - index * WIDTH,
        })
        .collect();
    let next_tile = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<Vec<u8>>>>> =
        tiles.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next_tile.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(t) = tiles.get(i) else { break };
                    let r = get(
                        agent,
                        &format!("{base}/tlog/tile/{}", t.to_path()),
                        Some(token),
                    );
                    let failed = r.is_err();
                    *slots[i].lock().expect("lock") = Some(r);
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    let mut fetched: Vec<Vec<u8>> = Vec::new();
    for (t, slot) in tiles.iter().zip(slots) {
        let path = t.to_path();
        let bundle = slot
            .into_inner()
            .expect("lock")
            .ok_or_else(|| anyhow!("entry bundle {path} was not fetched"))??;
        let mut at = 0usize;
        let mut i = t.index * WIDTH;
        while at < bundle.len() {
            if at + 2 > bundle.len() {
                bail!("entry bundle {path} is cut short");
            }
            let n = usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
            let entry = bundle
                .get(at + 2..at + 2 + n)
                .ok_or_else(|| anyhow!("entry bundle {path} is cut short"))?;
            if i >= from {
                fetched.push(entry.to_vec());
            }
            at += 2 + n;
            i += 1;
        }
        if i != t.index * WIDTH + t.width {
            bail!(
                "entry bundle {path} holds {} entries, not {}",
                i - t.index * WIDTH,
                t.width
            );
        }
    }
    // Each fetched entry continues the chain: its seq, and its prev = the hash of the
    // entry before it (the genesis hash for the first); then the tree.
    let mut prev = have.last.unwrap_or_else(|| alg.genesis(key.name()));
    for (k, e) in fetched.iter().enumerate() {
        let seq = from + k as u64;
        let p = ledger_core::entry::parse_envelope(e)
            .map_err(|err| anyhow!("INCONSISTENT: entry {seq} from the log is malformed: {err}"))?;
        if p.seq != seq || p.prev != prev {
            bail!(
                "INCONSISTENT: entry {seq} from the log does not continue the chain the mirror \
                 holds (its seq or prev hash): the log's history was rewritten, or you were \
                 shown another one. Nothing was written."
            );
        }
        prev = alg.leaf(e);
        have.frontier.push(prev, |_, _, _| {});
    }
    if have.frontier.root() != cp.root {
        bail!(
            "INCONSISTENT: the log's checkpoint of size {} does not match the {} entries this \
             mirror kept and the {} it fetched: the log's history was rewritten, or you were \
             shown another one. Nothing was written.",
            cp.size,
            from,
            fetched.len()
        );
    }
    // Write: new entries, the new checkpoint, the old one kept in checkpoints.txt.
    if from == 0 {
        std::fs::write(
            dir.join("ledger.json"),
            serde_json::to_string_pretty(&json!({
                "format": info["format"], "origin": key.name(), "hash": alg.name()
            }))? + "\n",
        )?;
        std::fs::write(dir.join("verifier.key"), format!("{key}\n"))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("entries.jsonl"))?;
    for e in &fetched {
        f.write_all(e)?;
        f.write_all(b"\n")?;
    }
    f.sync_all()?;
    if let Some(old) = have.note.filter(|o| *o != note) {
        let path = dir.join("checkpoints.txt");
        let mut notes = std::fs::read_to_string(&path)
            .map(|t| split_notes(&t))
            .unwrap_or_default();
        notes.push(old);
        std::fs::write(&path, notes.join("\n"))?;
    }
    let tmp = dir.join("checkpoint.tmp");
    std::fs::write(&tmp, &note)?;
    std::fs::rename(&tmp, dir.join("checkpoint"))?;
    Ok((from, cp.size))
}
