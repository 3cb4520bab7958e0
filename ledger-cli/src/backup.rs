//! `ledger backup` and `ledger restore` (ledger_core::backup, ledger_pg::copy::restore).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use ledger_core::Store;
use ledger_core::backup::{self, KeyFiles};
use ledger_core::store::Snapshot;
use serde_json::json;

use crate::{InputError, output};

/// Files beside the log that a backup carries and a restore puts back.
const CONFIG_FILES: [&str; 3] = [
    POLICY_FILE,
    ledger_core::directory::FILE_NAME,
    WITNESS_POLICY,
];
const POLICY_FILE: &str = "policy.toml";
/// The witnesses `ledger serve` submits to; its `log` line names the signing key.
const WITNESS_POLICY: &str = "witness.policy";

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// The backup: a directory, or one .tar file; new, or an earlier backup of this
    /// ledger (then only the entries since are added).
    #[arg(long, value_name = "DIR|FILE.tar")]
    pub to: PathBuf,
    /// Leave the private signing key out (keep it elsewhere: a restore then needs
    /// --signing-key, or --new-key).
    #[arg(long)]
    pub without_signing_key: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// What to restore from: a backup directory, an export bundle (directory or
    /// .tar), a mirror (`ledger mirror --into`), or a ledger's directory (read
    /// without its lock).
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The new ledger's directory (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// The ledger's signing key (signing.key), when the source does not hold it: a
    /// bundle and a mirror never do, nor a backup made --without-signing-key (not
    /// with --new-key).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// The verifier key, or after a key rotation the key history (verifier.key), you
    /// hold (the text, or @FILE): it must be the source's own. Without it, the source is checked against the key it carries itself,
    /// which whoever wrote the source chose.
    #[arg(long, value_name = "KEY|@FILE")]
    pub key: Option<String>,
    /// Restore with a NEW signing key, because the old one is lost or must not be
    /// used again: the new ledger's log ends with an entry announcing the new key
    /// (FORMAT.md §17), and its verifier.key holds both keys. Give the new
    /// verifier.key to your auditors, mirrors and witnesses (docs/operations.md).
    #[arg(long, value_name = "REASON", value_parser = ["lost", "compromised", "scheduled"], conflicts_with = "signing_key")]
    pub new_key: Option<String>,
    /// The damaged ledger's directory: after the source's entries, take the entries
    /// it still holds that continue them, up to its newest checkpoint signed over
    /// them, so that only what no copy holds is lost (docs/operations.md, "a damaged
    /// segment"). Read only, never changed.
    #[arg(long, value_name = "DIR")]
    pub tail_from: Option<PathBuf>,
}

pub(crate) fn backup(dir: &Path, a: &BackupArgs, as_json: bool) -> Result<u8> {
    let store = crate::open_reader(dir)?;
    let store = store.as_ref();
    let key = if a.without_signing_key {
        None
    } else {
        let p = dir.join("signing.key");
        Some(std::fs::read_to_string(&p).with_context(|| {
            format!(
                "read {} (or back up --without-signing-key and keep the key elsewhere)",
                p.display()
            )
        })?)
    };
    let names = Some(dir.join(ledger_core::directory::FILE_NAME)).filter(|p| p.exists());
    let policy: Vec<PathBuf> = [POLICY_FILE, WITNESS_POLICY]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect();
    let bar = output::progress_count("backing up");
    let summary = backup::backup(
        store,
        &a.to,
        &KeyFiles {
            signing_key: key.as_deref(),
        },
        names.as_deref(),
        &policy.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        &bar,
    )
    .with_context(|| format!("backup to {} failed", a.to.display()))?;
    bar.0.finish_and_clear();
    // What was written is read back as an auditor would read it.
    let check = Snapshot::open(&a.to)
        .with_context(|| format!("the backup in {} does not read back", a.to.display()))?;
    if check.size() < summary.entries || check.latest_checkpoint()?.size != summary.entries {
        return Err(anyhow!(
            "the backup in {} reads back as {} entries, not {}",
            a.to.display(),
            check.size(),
            summary.entries
        ));
    }
    if as_json {
        output::json(&json!({
            "to": a.to, "from_entries": summary.from, "entries": summary.entries,
            "new_entries": summary.entries - summary.from, "checkpoints": summary.checkpoints,
            "signing_key": key.is_some(), "checked": true
        }))?;
    } else {
        println!(
            "backed up {} entries ({} new) and {} signed checkpoints to {}; read back and checked",
            summary.entries,
            summary.entries - summary.from,
            summary.checkpoints,
            a.to.display()
        );
        if key.is_some() {
            println!(
                "it holds signing.key: keep it as safe as the ledger itself (--without-signing-key leaves it out)"
            );
        }
    }
    Ok(0)
}

pub(crate) fn restore(a: &RestoreArgs, as_json: bool) -> Result<u8> {
    // A backup written as a .tar holds its key inside: unpacked first, it restores
    // as its directory would.
    let _unpacked;
    let from_dir: PathBuf = if a.from.is_file() {
        let (tmp, inner) = ledger_core::bundle::unpack_tar(&a.from)?;
        _unpacked = tmp;
        inner
    } else {
        a.from.clone()
    };
    let a = &RestoreArgs {
        from: from_dir,
        into: a.into.clone(),
        signing_key: a.signing_key.clone(),
        key: a.key.clone(),
        new_key: a.new_key.clone(),
        tail_from: a.tail_from.clone(),
    };
    let source = Snapshot::open(&a.from).with_context(|| {
        format!(
            "cannot read {} (a backup, an export bundle or a mirror), checked entry by entry",
            a.from.display()
        )
    })?;
    match &a.key {
        Some(k) => {
            let pinned = crate::read_key(k)?;
            if &pinned != source.verifier_key() {
                return Err(anyhow!(InputError(format!(
                    "{} is signed by {}, not by the key you gave ({pinned}): refusing to restore it",
                    a.from.display(),
                    source.verifier_key()
                ))));
            }
        }
        None => eprintln!(
            "warning: no --key given: the source was checked against the key it carries, which proves \
             it intact but not whose it is; pass the verifier key you hold"
        ),
    }
    let tailed;
    let source = match &a.tail_from {
        None => source,
        Some(damaged) => {
            refuse_used_target(&a.into)?;
            let from = source.latest_checkpoint()?.size;
            tailed =
                ledger_core::store::with_tail(&source, damaged, &a.into).with_context(|| {
                    format!(
                        "taking the entries after {from} from {} (the source, {}, ends there)",
                        damaged.display(),
                        a.from.display()
                    )
                })?;
            for place in &tailed.skipped {
                eprintln!("note: {place} is damaged: skipped to the next whole record");
            }
            eprintln!(
                "took {} entries after the source's {from} from {}{}",
                tailed.taken,
                damaged.display(),
                tailed
                    .stopped
                    .as_ref()
                    .map(|s| format!("; then stopped: {s}"))
                    .unwrap_or_default()
            );
            if tailed.notes_left_out > 0 {
                eprintln!(
                    "warning: {} checkpoints of {} were left out: they do not verify with the source's keys \
                     or sign entries that could not be taken",
                    tailed.notes_left_out,
                    damaged.display()
                );
            }
            tailed.snapshot
        }
    };
    if let Some(reason) = &a.new_key {
        return restore_with_new_key(a, &source, reason, as_json);
    }
    let key_path = a
        .signing_key
        .clone()
        .unwrap_or_else(|| a.from.join("signing.key"));
    let key = std::fs::read_to_string(&key_path).map_err(|e| {
        if a.signing_key.is_none() && e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(InputError(format!(
                "{} holds no signing.key (a bundle or a mirror never does): pass --signing-key FILE, \
                 the ledger's key you keep elsewhere",
                a.from.display()
            )))
        } else {
            anyhow!(e).context(format!("read {}", key_path.display()))
        }
    })?;
    let (bar, staged) = start_restore(&a.into)?;
    let mut progress = |at: u64, size: u64| bar.advance_to(at, size);
    let report = ledger_pg::copy::restore(&source, &key, &staged.dir, &mut progress)
        .with_context(|| format!("restoring {} into {}", a.from.display(), a.into.display()))?;
    bar.0.finish_and_clear();
    copy_config(&a.from, &staged.dir)?;
    staged.into_place(&a.into)?;
    if as_json {
        output::json(&json!({
            "into": a.into, "entries": report.entries, "checkpoints": report.checkpoints,
            "facts_digest": report.facts_digest, "checked": true,
            "not_restored_beyond_checkpoint": report.beyond_checkpoint
        }))?;
    } else {
        println!(
            "restored {} entries and {} signed checkpoints into {}; checked: every entry's chain link, \
             every checkpoint's signature and root, the same projection facts ({})",
            report.entries,
            report.checkpoints,
            a.into.display(),
            report.facts_digest
        );
        println!(
            "the ledger appends and signs with its own key from here: ledger --dir {} serve",
            a.into.display()
        );
    }
    if report.beyond_checkpoint > 0 {
        eprintln!(
            "warning: {} entries after the source's newest checkpoint were not restored: no signature covers them",
            report.beyond_checkpoint
        );
    }
    warn_fork(report.entries);
    Ok(0)
}

fn warn_fork(size: u64) {
    eprintln!(
        "warning: before serving, make sure the ledger never published a checkpoint beyond size {size} (ask your \
         mirror or witnesses, or read the old checkpoints.log): new entries would then fork the log. Restore \
         from a newer copy if there is one (docs/operations.md)"
    );
}

/// A restore's start: its target checked free, its progress bar, its staging place.
fn start_restore(into: &Path) -> Result<(output::Bar, Staged)> {
    refuse_used_target(into)?;
    Ok((output::progress_count("restoring"), Staged::beside(into)?))
}

fn refuse_used_target(into: &Path) -> Result<()> {
    if into.exists() && std::fs::read_dir(into).is_ok_and(|mut d| d.next().is_some()) {
        return Err(anyhow!(InputError(format!(
            "{} exists and is not empty: restore into a new directory",
            into.display()
        ))));
    }
    Ok(())
}

fn copy_config(from: &Path, into: &Path) -> Result<()> {
    for f in CONFIG_FILES {
        let p = from.join(f);
        if p.is_file() {
            std::fs::copy(&p, into.join(f)).with_context(|| format!("copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// `restore --new-key`: the lost-key runbook (docs/operations.md).
fn restore_with_new_key(
    a: &RestoreArgs,
    source: &Snapshot,
    reason: &str,
    as_json: bool,
) -> Result<u8> {
    let reason: ledger_core::rotation::RotationReason =
        reason.parse().map_err(|e: String| anyhow!(InputError(e)))?;
    let (bar, staged) = start_restore(&a.into)?;
    let mut progress = |at: u64, size: u64| bar.advance_to(at, size);
    let (report, history) =
        ledger_pg::copy::restore_with_new_key(source, reason, &staged.dir, &mut progress)
            .with_context(|| format!("restoring {} into {}", a.from.display(), a.into.display()))?;
    bar.0.finish_and_clear();
    copy_config(&a.from, &staged.dir)?;
    // The witness policy names the log's key: from now on, the new one.
    let wp = staged.dir.join(WITNESS_POLICY);
    let mut policy_rewritten = false;
    if let Ok(text) = std::fs::read_to_string(&wp) {
        let old = source.verifier_key().current().to_string();
        let new = history.current().to_string();
        // Tokens as the policy parser reads them: `log <key> [url]`.
        let rewritten: Vec<String> = text
            .lines()
            .map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                if t.first() == Some(&"log") && t.get(1) == Some(&old.as_str()) {
                    policy_rewritten = true;
                    std::iter::once("log")
                        .chain(std::iter::once(new.as_str()))
                        .chain(t[2..].iter().copied())
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&wp, rewritten.join("\n") + "\n")
            .with_context(|| format!("write {}", wp.display()))?;
    }
    staged.into_place(&a.into)?;
    let announced_at = report.entries;
    if as_json {
        output::json(&json!({
            "into": a.into, "entries": report.entries + 1, "checkpoints": report.checkpoints + 1,
            "facts_digest": report.facts_digest, "checked": true,
            "not_restored_beyond_checkpoint": report.beyond_checkpoint,
            "key_announced_at": announced_at, "reason": reason.name(),
            "verifier_key": history.current().to_string(), "key_history": history.to_string(),
            "witness_policy_rewritten": policy_rewritten,
        }))?;
    } else {
        println!(
            "restored {} entries and {} signed checkpoints into {}; checked as a restore is",
            report.entries,
            report.checkpoints,
            a.into.display()
        );
        println!(
            "entry {announced_at} announces the new signing key ({}); the checkpoint of size {} is \
             the first it signs",
            reason.name(),
            announced_at + 1
        );
        println!(
            "the ledger's key history, now in {}:",
            a.into.join("verifier.key").display()
        );
        for line in history.to_string().lines() {
            println!("  {line}");
        }
        println!(
            "give this verifier.key to every auditor, mirror and witness of the ledger, by a channel they \
             trust (docs/operations.md, \"A lost signing key\"): until they hold it, they refuse every \
             checkpoint from size {} on",
            announced_at + 1
        );
        if policy_rewritten {
            println!(
                "witness.policy now names the new key on its log line; each witness takes the new key with \
                 `ledger witness add-log --key @verifier.key` (this file), and keeps what it cosigned"
            );
        }
    }
    if report.beyond_checkpoint > 0 {
        eprintln!(
            "warning: {} entries after the source's newest checkpoint were not restored: no signature covers them",
            report.beyond_checkpoint
        );
    }
    if source.info().format < 2 {
        eprintln!(
            "warning: this ledger took format-1 events; a ledger whose key was replaced is format 3, \
             which takes format-2 events (schemas/FORMAT.md §17, §3.9): its reporters must send \
             `from` and `to` on every event from now on"
        );
    }
    warn_fork(report.entries);
    Ok(0)
}

/// A restore made beside its target and moved into place whole, so that a restore
/// that fails or is interrupted leaves no ledger there (a rotated one would hold a
/// key nobody was shown).
struct Staged {
    _parent: tempfile::TempDir,
    dir: PathBuf,
}

impl Staged {
    fn beside(into: &Path) -> Result<Staged> {
        let parent = into
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".restore-")
            .tempdir_in(parent)
            .with_context(|| format!("stage a restore in {}", parent.display()))?;
        let dir = tmp.path().join("ledger");
        Ok(Staged { _parent: tmp, dir })
    }

    fn into_place(self, into: &Path) -> Result<()> {
        if into.exists() {
            // Empty, as refuse_used_target found it.
            std::fs::remove_dir(into).with_context(|| format!("replace {}", into.display()))?;
        }
        std::fs::rename(&self.dir, into)
            .with_context(|| format!("move the restored ledger to {}", into.display()))?;
        if let Some(p) = into.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(p)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("sync {}", p.display()))?;
        }
        Ok(())
    }
}
