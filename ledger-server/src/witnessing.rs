//! The log's side of witnessing (c2sp.org/tlog-witness, as a client): every new
//! checkpoint goes to the witnesses of `<dir>/witness.policy` with its consistency
//! proof from the size each witness last cosigned; their cosignatures are kept with
//! the checkpoint, and once the policy's quorum is met that note is the log's
//! cosigned checkpoint (`checkpoint.cosigned`, served by `GET /v1/checkpoint` and
//! carried by receipts).
//!
//! Appends never wait on a witness: one thread does all of this. A witness that
//! refuses with 422 or with a 409 without a size (a split view or a rewritten history
//! seen from outside), or that claims a larger tree than the log's, raises a loud
//! alarm and is not retried; a checkpoint that has not reached the quorum within
//! `quorum_within` raises one too (log line, `ledger_witness_alarms`, `/readyz`
//! detail).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::Store;
use ledger_core::checkpoint::COSIGNED_FILE;
use ledger_core::note::Note;
use ledger_core::tlog_policy::{Policy, Witness};
use ledger_core::witness::AddRequest;
use ledger_pg::Engine;

use crate::metrics::Metrics;

/// The policy file in a ledger's directory.
pub const POLICY_FILE: &str = "witness.policy";

/// How long to wait for a witness's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between attempts at an unreachable witness.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Track {
    witness: Witness,
    /// The size it last cosigned, as far as we know (0 at first: it tells us).
    size: u64,
    /// The size of the checkpoint it cosigned for us last (the pending one, or not).
    cosigned: Option<(u64, String)>,
    /// Set once it refused in a way retrying cannot fix.
    alarm: Option<String>,
    next_try: Instant,
    failures: u32,
}

/// What `/readyz` and the operator see.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Alarms now, in words.
    pub alarms: Vec<String>,
    /// The newest cosigned checkpoint's size.
    pub cosigned_size: Option<u64>,
}

/// The submitting thread and what it knows.
pub struct Witnessing {
    status: Mutex<Status>,
    stop: AtomicBool,
}

impl Witnessing {
    /// Reads `<dir>/witness.policy`; `None` if the ledger has none (no witnesses).
    pub fn policy(dir: &Path) -> Result<Option<Policy>, String> {
        let path = dir.join(POLICY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Policy::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Starts the thread.
    pub fn start(
        store: Arc<Engine>,
        dir: PathBuf,
        policy: Policy,
        metrics: Arc<Metrics>,
        quorum_within: Duration,
    ) -> (Arc<Witnessing>, std::thread::JoinHandle<()>) {
        let w = Arc::new(Witnessing {
            status: Mutex::new(Status::default()),
            stop: AtomicBool::new(false),
        });
        let me = w.clone();
        let handle = std::thread::Builder::new()
            .name("witnessing".into())
            .spawn(move || me.run(store.as_ref(), &dir, &policy, &metrics, quorum_within))
            .expect("spawn the witnessing thread");
        (w, handle)
    }

    /// Asks the thread to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// What it knows now.
    pub fn status(&self) -> Status {
        self.status.lock().expect("lock").clone()
    }

    fn alarm(&self, metrics: &Metrics, witness: &str, kind: &str, text: String) {
        eprintln!("ledger serve: ALARM ({kind}) {text}");
        metrics.witness_alarm(witness, kind, true);
        let mut s = self.status.lock().expect("lock");
        if !s.alarms.contains(&text) {
            s.alarms.push(text);
        }
    }

    fn run(
        &self,
        store: &dyn Store,
        dir: &Path,
        policy: &Policy,
        metrics: &Metrics,
        quorum_within: Duration,
    ) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        let mut tracks: Vec<Track> = policy
            .witnesses()
            .iter()
            .filter(|w| w.url.is_some())
            .map(|w| Track {
                witness: w.clone(),
                size: 0,
                cosigned: None,
                alarm: None,
                next_try: Instant::now(),
                failures: 0,
            })
            .collect();
        let mut published =
            ledger_core::checkpoint::read_cosigned(dir, store.verifier_key()).map(|c| c.0);
        self.status.lock().expect("lock").cosigned_size = published;
        // The newest checkpoint not yet cosigned; `since` is when the oldest one not
        // yet cosigned appeared, kept when a newer checkpoint replaces it, so a log
        // that signs every second still raises quorum_late when no quorum comes.
        let mut pending: Option<(u64, String, Instant, bool)> = None;
        while !self.stop.load(Ordering::SeqCst) {
            match store.latest_checkpoint() {
                Ok(cp) if pending.as_ref().is_none_or(|p| cp.size > p.0) => {
                    if published.is_none_or(|s| cp.size > s) {
                        let (since, late) = pending
                            .as_ref()
                            .map_or((Instant::now(), false), |p| (p.2, p.3));
                        pending = Some((cp.size, cp.note, since, late));
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("ledger serve: witnessing: read the checkpoint: {e}"),
            }
            if let Some((size, note, since, late)) = &mut pending {
                for t in tracks.iter_mut() {
                    if t.alarm.is_none()
                        && t.cosigned.as_ref().is_none_or(|c| c.0 < *size)
                        && Instant::now() >= t.next_try
                    {
                        self.submit(&agent, store, t, *size, note, metrics);
                    }
                }
                let mut cosigned = note.clone();
                for t in &tracks {
                    if let Some((s, line)) = &t.cosigned
                        && s == size
                    {
                        cosigned.push_str(line);
                    }
                }
                if policy.verify(&cosigned).is_ok() {
                    match write_atomic(&dir.join(COSIGNED_FILE), &cosigned) {
                        Ok(()) => {
                            metrics.cosigned(*size, since.elapsed().as_secs_f64());
                            published = Some(*size);
                            let mut s = self.status.lock().expect("lock");
                            s.cosigned_size = published;
                            s.alarms.retain(|a| !a.starts_with("checkpoint "));
                            metrics.witness_alarm("quorum", "quorum_late", false);
                            drop(s);
                            pending = None;
                        }
                        Err(e) => eprintln!("ledger serve: witnessing: {e}"),
                    }
                } else if !*late && since.elapsed() > quorum_within {
                    *late = true;
                    self.alarm(
                        metrics,
                        "quorum",
                        "quorum_late",
                        format!(
                            "checkpoint {size} has not reached the witness quorum within {} s",
                            quorum_within.as_secs()
                        ),
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One attempt at one witness; a 409 with its size is answered at once with the
    /// proof from that size.
    fn submit(
        &self,
        agent: &ureq::Agent,
        store: &dyn Store,
        t: &mut Track,
        size: u64,
        note: &str,
        metrics: &Metrics,
    ) {
        let name = t.witness.name.clone();
        let url = format!(
            "{}/add-checkpoint",
            t.witness
                .url
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
        );
        for _ in 0..2 {
            if t.size > size {
                let text = format!(
                    "witness {name} has cosigned size {} of this log, larger than its newest \
                     checkpoint {size}: someone showed it another history",
                    t.size
                );
                t.alarm = Some(text.clone());
                self.alarm(metrics, &name, "ahead", text);
                return;
            }
            let body = match AddRequest::from_store(store, t.size, size, note) {
                Ok(r) => r.to_body(),
                Err(e) => {
                    eprintln!("ledger serve: witnessing: proof {}→{size}: {e}", t.size);
                    return;
                }
            };
            let resp = match agent.post(&url).send(&body) {
                Ok(r) => r,
                Err(e) => {
                    t.failures += 1;
                    let wait =
                        Duration::from_millis(200 * 2u64.pow(t.failures.min(8))).min(BACKOFF_MAX);
                    t.next_try = Instant::now() + wait;
                    if t.failures == 3 {
                        eprintln!("ledger serve: witnessing: {name} unreachable ({e}); retrying");
                        metrics.witness_alarm(&name, "unreachable", true);
                    }
                    return;
                }
            };
            if t.failures >= 3 {
                metrics.witness_alarm(&name, "unreachable", false);
            }
            t.failures = 0;
            let status = resp.status().as_u16();
            let size_body = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes() == b"text/x.tlog.size");
            let text = resp.into_body().read_to_string().unwrap_or_default();
            match status {
                200 => {
                    let parsed = Note::parse(note).ok();
                    let line = text
                        .lines()
                        .find(|l| {
                            parsed
                                .as_ref()
                                .is_some_and(|n| t.witness.key.verify_line(&n.text, l).is_ok())
                        })
                        .map(|l| format!("{l}\n"));
                    match line {
                        Some(l) => {
                            t.size = size;
                            t.cosigned = Some((size, l));
                        }
                        None => {
                            let text = format!(
                                "witness {name} answered 200 without a valid cosignature by its key"
                            );
                            t.alarm = Some(text.clone());
                            self.alarm(metrics, &name, "refused", text);
                        }
                    }
                    return;
                }
                409 if size_body => match text.trim_end_matches('\n').parse::<u64>() {
                    Ok(theirs) => {
                        t.size = theirs;
                        continue;
                    }
                    Err(_) => {
                        t.next_try = Instant::now() + BACKOFF_MAX;
                        return;
                    }
                },
                409 | 422 => {
                    let text = format!(
                        "witness {name} refused checkpoint {size} with {status}: {} — a split view \
                         or a rewritten history seen from outside; not retried",
                        text.trim()
                    );
                    t.alarm = Some(text.clone());
                    self.alarm(
                        metrics,
                        &name,
                        if status == 409 {
                            "split_view"
                        } else {
                            "refused"
                        },
                        text,
                    );
                    return;
                }
                other => {
                    // 400/403/404: the witness does not know this log or its key yet.
                    eprintln!(
                        "ledger serve: witnessing: {name} answered {other}: {}",
                        text.trim()
                    );
                    t.next_try = Instant::now() + BACKOFF_MAX;
                    return;
                }
            }
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let fail = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}
