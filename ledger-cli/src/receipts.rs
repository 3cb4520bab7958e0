//! `ledger receipt` and `ledger verify-receipt`: tlog-proof files a sender keeps, and
//! their offline check (ledger_core::tlog_proof).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use ledger_core::tlog_policy::Policy;
use ledger_core::tlog_proof::{ProofFileError, TlogProof};
use ledger_core::{HashAlg, Store};
use serde_json::json;

use crate::{InputError, output};

/// The ledger's witness policy file (`ledger serve` submits to its witnesses).
const WITNESS_POLICY: &str = "witness.policy";

/// Which entries `ledger receipt` proves.
#[derive(Args, Debug)]
pub(crate) struct ReceiptArgs {
    /// The event's id (format 2: as its reporter gave it, with --org).
    #[arg(required_unless_present_any = ["seq", "message"])]
    pub id: Option<String>,
    /// The reporting organisation of a format-2 event id (ids are each
    /// organisation's own).
    #[arg(long, value_name = "ORGNR")]
    pub org: Option<String>,
    /// The entry's seq instead of an event id.
    #[arg(long, conflicts_with_all = ["id", "message"])]
    pub seq: Option<u64>,
    /// Every event of this message (FROM/TO/ID or a bare id): one file each in --out.
    #[arg(long, conflicts_with = "id")]
    pub message: Option<String>,
    /// Where to write: a file (one entry) or a directory (--message). Default: stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn seq_of(store: &dyn Store, id: &str, org: Option<&str>) -> Result<u64> {
    let keys: Vec<String> = match org {
        Some(o) => vec![ledger_core::event::id_key(2, o, id).into_owned()],
        None => vec![id.to_string()],
    };
    for k in &keys {
        if let Some(seq) = store.event_seq(k)? {
            return Ok(seq);
        }
    }
    let hint = if org.is_none() && store.info().format >= 2 {
        " (a format-2 event id is its reporter's own: give --org ORGNR)"
    } else {
        ""
    };
    Err(anyhow!(InputError(format!(
        "no event {id:?} is recorded{hint}"
    ))))
}

pub(crate) fn receipt(
    dir: &Path,
    store: &dyn Store,
    args: &ReceiptArgs,
    as_json: bool,
) -> Result<u8> {
    let plain = store.latest_checkpoint()?.note;
    let cosigned = ledger_core::checkpoint::read_cosigned(dir, store.verifier_key());
    let seqs: Vec<u64> = match (&args.id, args.seq, &args.message) {
        (_, Some(s), _) => vec![s],
        (Some(id), None, _) => vec![seq_of(store, id, args.org.as_deref())?],
        (None, None, Some(m)) => {
            let key = crate::questions::resolve_message(store, m)?;
            store.message_seqs(&key)?
        }
        (None, None, None) => unreachable!("clap requires one"),
    };
    // The witnessed checkpoint when it covers the entry: that is what a reader's
    // policy can check; else the log's newest, said so.
    let proofs = seqs
        .iter()
        .map(|&s| {
            let note = match &cosigned {
                Some((size, note)) if *size > s => note,
                _ => {
                    if cosigned.is_some() || dir.join(WITNESS_POLICY).exists() {
                        eprintln!(
                            "note: entry {s} is not yet in a checkpoint the witnesses cosigned; \
                             this receipt carries the log's signature only (ask again shortly)"
                        );
                    }
                    &plain
                }
            };
            TlogProof::build(store, s, note).map_err(|e| anyhow!(InputError(e.to_string())))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut written = Vec::new();
    match (&args.out, proofs.len()) {
        (None, _) => {
            if as_json {
                let list: Vec<_> = proofs
                    .iter()
                    .map(|p| json!({"seq": p.index, "proof": p.to_text()}))
                    .collect();
                output::json(&json!({"receipts": list}))?;
            } else {
                for p in &proofs {
                    print!("{}", p.to_text());
                }
            }
            return Ok(0);
        }
        (Some(path), 1) if args.message.is_none() => {
            write_new(path, &proofs[0].to_text())?;
            written.push(path.clone());
        }
        (Some(dir), _) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            for p in &proofs {
                let path = dir.join(format!("entry-{}.tlog-proof", p.index));
                write_new(&path, &p.to_text())?;
                written.push(path);
            }
        }
    }
    if as_json {
        output::json(
            &json!({"files": written, "checkpoint_size": store.latest_checkpoint()?.size}),
        )?;
    } else {
        for w in &written {
            println!("wrote {}", w.display());
        }
    }
    Ok(0)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// `ledger verify-receipt`'s flags.
#[derive(Args, Debug)]
pub(crate) struct VerifyReceiptArgs {
    /// The .tlog-proof file.
    pub file: PathBuf,
    /// The tlog-policy file you trust: the log's key, the witnesses' keys, the quorum.
    #[arg(long)]
    pub policy: PathBuf,
    /// The log's tree hash: sha256 (the spec's) or blake3 (a BLAKE3 ledger). Without
    /// it, both are tried (the signed root pins the tree: an entry cannot reach it
    /// under the other hash) and the answer says which held.
    #[arg(long)]
    pub hash: Option<String>,
    /// The entry's bytes from a file, instead of the copy the receipt carries.
    #[arg(long)]
    pub entry: Option<PathBuf>,
    /// The log's key history (its verifier.key, or the text), for a log whose key was
    /// replaced: the checkpoint must also be signed by the key in force at its size
    /// (FORMAT.md §17), so a retired key counts only for the sizes it signed. List
    /// both keys' `log` lines in the policy to keep older receipts verifying.
    #[arg(long, value_name = "KEY|@FILE")]
    pub key: Option<String>,
}

pub(crate) fn verify_receipt(args: &VerifyReceiptArgs, as_json: bool) -> Result<u8> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    let text = String::from_utf8(read(&args.file)?)
        .map_err(|_| anyhow!(InputError(format!("{} is not UTF-8", args.file.display()))))?;
    let policy_text = String::from_utf8(read(&args.policy)?)
        .map_err(|_| anyhow!(InputError("the policy is not UTF-8".into())))?;
    let policy = Policy::parse(&policy_text)
        .map_err(|e| anyhow!(InputError(format!("{}: {e}", args.policy.display()))))?;
    let hashes = match &args.hash {
        Some(h) => vec![
            h.parse::<HashAlg>()
                .map_err(|e| anyhow!(InputError(format!("--hash: {e}"))))?,
        ],
        None => vec![HashAlg::Sha256, HashAlg::Blake3],
    };
    let entry = args.entry.as_deref().map(read).transpose()?;
    let proof = TlogProof::parse(&text)
        .map_err(|e| anyhow!(InputError(format!("{}: {e}", args.file.display()))))?;
    let mut tried = Vec::new();
    let (hash, result) = loop {
        let h = hashes[tried.len()];
        let r = proof.verify(&policy, h, entry.as_deref());
        tried.push(h.name());
        let not_included = matches!(r, Err(ProofFileError::NotIncluded { .. }));
        if !not_included || tried.len() == hashes.len() {
            break (h, r);
        }
    };
    let result = result.map_err(|e| match e {
        ProofFileError::NotIncluded {
            index,
            size,
            reason,
        } if tried.len() > 1 => ProofFileError::NotIncluded {
            index,
            size,
            reason: format!("{reason} (under {})", tried.join(" and under ")),
        },
        other => other,
    });
    // A key history narrows the policy's log keys to the one in force at the size.
    let result = match (result, &args.key) {
        (Ok(v), Some(k)) => {
            let history = crate::read_key(k)?;
            match history.verify(&proof.checkpoint) {
                Ok(_) => Ok(v),
                Err(e) => Err(ProofFileError::Malformed(format!(
                    "the checkpoint of size {} is not signed by the key your key history puts in \
                     force at that size: {e}",
                    v.checkpoint.size
                ))),
            }
        }
        (r, _) => r,
    };
    let event = entry
        .as_deref()
        .or(proof.entry.as_deref())
        .and_then(|b| ledger_core::entry::parse_entry(b).ok())
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.event).ok());
    match result {
        Ok(v) => {
            let cp = &v.checkpoint;
            if as_json {
                output::json(&json!({
                    "ok": true, "origin": cp.origin, "size": cp.size, "hash": hash.name(),
                    "root": hex::encode(cp.root), "index": proof.index,
                    "cosigned_by": v.cosigned.iter().map(|(n, t)| json!({"witness": n, "time": t})).collect::<Vec<_>>(),
                    "event": event,
                }))?;
            } else {
                println!(
                    "OK: entry {} is in {} at size {} (root {}, {}), signed by the log",
                    proof.index,
                    cp.origin,
                    cp.size,
                    hex::encode(cp.root),
                    hash.name()
                );
                let names: Vec<&str> = v.cosigned.iter().map(|c| c.0.as_str()).collect();
                if names.is_empty() {
                    println!("cosigned by: no witness (the policy needs none)");
                } else {
                    println!("cosigned by: {}", names.join(", "));
                }
                if let Some(e) = &event {
                    println!("event: {e}");
                }
            }
            Ok(0)
        }
        Err(e) => {
            if as_json {
                output::json(&json!({"ok": false, "error": e.to_string()}))?;
            } else {
                println!("FAILED: {e}");
            }
            Ok(crate::EXIT_FAULTS)
        }
    }
}
