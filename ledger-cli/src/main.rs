//! `ledger`: the command-line face of the ledger. Glue over `ledger-core`: parse
//! flags, call the library, print results, map failures to exit codes.
//!
//! Exit codes: 0 success; 1 verification found faults; 2 bad usage or rejected
//! input (nothing of that input was appended); 3 store or I/O failure.

mod append;
mod backup;
mod bench_load;
mod channel;
mod demo;
mod mirror;
mod output;
mod questions;
mod receipts;
mod remote;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ledger_core::verify::{self, VerifyOptions};
use ledger_core::{FileStore, HashAlg, InitOptions, KeyHistory, Store};

// Replays, reports and appends allocate per event and per message; mimalloc makes
// them about a quarter faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: verification found faults.
pub(crate) const EXIT_FAULTS: u8 = 1;
/// Exit code: bad usage or rejected input.
const EXIT_INPUT: u8 = 2;
/// Exit code: store or I/O failure.
const EXIT_STORE: u8 = 3;

/// An error caused by the user's input, not by the store: exit code 2.
#[derive(Debug)]
pub(crate) struct InputError(pub String);
impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputError {}

#[derive(Parser)]
#[command(
    name = "ledger",
    version,
    about = "An append-only, hash-chained ledger of official messages: every send, delivery, \
             hand-off, open, expiry and deletion, provable to anyone.",
    after_help = "Exit codes: 0 ok, 1 verification found faults, 2 bad usage or rejected input, \
                  3 store or I/O failure.\n\nStart with:  ledger init --origin ledger.example/bergen-bv"
)]
struct Cli {
    /// Directory of the ledger [default: ledger-data; for `demo`: ledger-demo].
    #[arg(long, global = true, env = "LEDGER_DIR")]
    dir: Option<PathBuf>,
    /// Print data as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Ask a running `ledger serve` (e.g. http://127.0.0.1:7070) instead of the local
    /// directory: history, status, report, checkpoint, prove, verify; and the target of
    /// bench-load.
    #[arg(long, global = true, env = "LEDGER_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Bearer token for --server (see `ledger token create`).
    #[arg(long, global = true, env = "LEDGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// For an https --server with a private CA: trust the certificates in this PEM
    /// file instead of the public roots.
    #[arg(long, global = true, env = "LEDGER_CA_CERT", value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ledger: its files, an Ed25519 signing key, and the first checkpoint.
    Init {
        /// The log's name, e.g. ledger.example/bergen-bv; it names the signing key too.
        #[arg(long)]
        origin: String,
        /// Hash function, fixed for the ledger's life: blake3, or sha256 where NIST
        /// algorithms are required or RFC 6962 tools must check proofs unmodified.
        #[arg(long, default_value = "blake3")]
        hash: HashAlg,
        /// Keep the log in PostgreSQL (postgres://user@host:port/db) instead of the
        /// directory, which then holds the signing key and the database's address
        /// (store.json; LEDGER_PG_URL overrides it). Every command works the same.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Append events from a JSON Lines file ('-' for stdin); prints one receipt per line.
    ///
    /// The whole input is checked first: if any line is bad, every bad line is reported
    /// and nothing is appended. Events already recorded with the same content get
    /// their original receipt (appending is idempotent by event id).
    ///
    /// Events are read by the rules of the ledger's format (`ledger.json`; 2 for
    /// ledgers made by this version): every format-2 event names its message's
    /// `from` and `to`, and its ids are scoped by reporter (schemas/FORMAT.md §3.9).
    Append {
        /// JSON Lines file of events, or '-' for standard input.
        file: PathBuf,
        /// Read the events by the rules of this format instead of the ledger's:
        /// `1` imports format-1 events (no `from`/`to` but on `sent`, one global id
        /// namespace) into a format-2 ledger, e.g. the rest of a message begun before
        /// `ledger upgrade`.
        #[arg(long, value_name = "1|2", value_parser = clap::value_parser!(u8).range(1..=2))]
        event_format: Option<u8>,
    },
    /// Every event of one message, in the order recorded.
    ///
    /// Example: ledger history POL-2022-00017 --as-of 2022-06-01
    History {
        /// The message id (or FROM/TO/ID).
        message: String,
        /// Only events that happened by T (event time): a date (00:00 UTC) or RFC 3339.
        #[arg(long, value_name = "T")]
        as_of: Option<String>,
        /// Only entries the ledger had recorded by T (record time).
        #[arg(long, value_name = "T")]
        known_at: Option<String>,
    },
    /// A receipt a sender keeps: the entry of an event, its inclusion proof and the
    /// signed checkpoint, as a c2sp.org/tlog-proof@v1 file anyone checks offline with
    /// `ledger verify-receipt`.
    ///
    /// Example: ledger receipt e-2023-0042 --org 974760673 --out e-2023-0042.tlog-proof
    Receipt(receipts::ReceiptArgs),
    /// Check a receipt with no network and no ledger: the log's signature and the
    /// witness quorum of a tlog-policy you trust, and the entry's inclusion. Exit 0
    /// when it holds, 1 when it does not. With --key, the log's key history: the
    /// checkpoint must be signed by the key in force at its size.
    VerifyReceipt(receipts::VerifyReceiptArgs),
    /// Follow a log through its tiles into a checked, read-only local copy (a
    /// monitor's, or the operator's off-site replica) that answers every question
    /// (`ledger --dir DIR report …`). Fails, saying what is wrong, on any
    /// inconsistency: a rollback, a rewritten history, a checkpoint your key or
    /// witness policy does not accept.
    ///
    /// Example: ledger mirror --from https://ledger.bergen.example --into mirror --key @bergen.vkey --follow
    Mirror(mirror::MirrorArgs),
    /// The newest signed checkpoint (a C2SP signed note).
    Checkpoint {
        /// The checkpoint of exactly this size instead of the newest.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Merkle proofs, as JSON.
    #[command(subcommand)]
    Prove(Prove),
    /// Verify the whole store (or a bundle): chain, Merkle roots, signatures.
    ///
    /// Reads the log's files only, never the index. Exits 0 only when everything
    /// holds; otherwise 1, naming the first bad seq and what is wrong with it.
    Verify {
        /// Verify an export bundle (directory or .tar) instead of the store.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The verifier key you trust, or the key history (a verifier.key after a key
        /// rotation, FORMAT.md §17): the text, or @FILE. Required with
        /// --bundle and --server: a bundle's (or a server's) own key proves nothing,
        /// since whoever made the bundle chose it.
        #[arg(long)]
        key: Option<String>,
        /// Verify a bundle or a server's log against the key it carries itself: this
        /// proves the files are intact, not who signed them.
        #[arg(long, conflicts_with = "key")]
        insecure_no_key: bool,
        /// A file with an older signed checkpoint you hold: the log must extend it.
        #[arg(long)]
        trusted: Option<PathBuf>,
        /// Also check that no event id is recorded twice (24 bytes of memory per
        /// entry; without it, memory stays flat in the log's size).
        #[arg(long)]
        unique_ids: bool,
        /// Also re-validate every event and check its canonical form, as append
        /// did (about ten times slower). Without it the envelope of every entry is
        /// checked exactly and events are covered by the chain and signed roots.
        #[arg(long)]
        deep: bool,
        /// Also report entries that hold what today's admission rules refuse (free
        /// text, what may be a national identity number), by entry and field, never
        /// the value: a log written under older rules cannot be changed, but you learn
        /// what it holds. Warnings, not faults.
        #[arg(long)]
        privacy: bool,
    },
    /// Rebuild every derived index from the log, and say whether it differed.
    Reindex,
    /// Move the ledger to a newer format (schemas/FORMAT.md §1); nothing recorded
    /// changes.
    ///
    /// Format 2 scopes identifiers: a message is (from, to, id) and an event id is
    /// its reporter's own, so no organisation can claim or probe another's ids, and
    /// its events carry no free text. After the upgrade the API takes format-2
    /// events only; earlier entries keep their bytes and verify as before. Stop
    /// `ledger serve` first (PostgreSQL: restart every server after).
    ///
    /// Example: ledger upgrade --format 2
    Upgrade {
        /// The format to move to.
        #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=2))]
        format: u64,
    },
    /// One message: its verdict, deadlines, anomalies, resend chain and history.
    ///
    /// Example: ledger status POL-2023-00048 --as-of 2023-05-08T00:00:00Z
    Status {
        /// The message id.
        message: String,
        #[command(flatten)]
        when: questions::When,
    },
    /// Messages by verdict now (lost, at-risk, late, stuck, open, completed,
    /// resolved), every incident (what ever went wrong), or every anomaly.
    ///
    /// Verdicts and incidents are defined in docs/projections.md. Filters apply to
    /// the message's effective fields (a resend inherits its original's), and
    /// --since/--until to when it was sent. Dates are 00:00 UTC. Examples:
    ///   ledger report lost --to 977019397 --since 2023-01-01 --format csv
    ///   ledger report lost --ever --category bekymringsmelding --since 2020-01-01
    ///   ledger report incidents --kind lost_unread,failed --open
    Report {
        /// What to list.
        #[arg(value_enum)]
        kind: questions::ReportName,
        /// With `anomalies`: only this kind (e.g. reporter_seq_gap). With
        /// `incidents`: only these kinds, comma-separated (lost_unread, failed,
        /// handoff_never_received, never_delivered, opened_late, ack_late).
        #[arg(long = "kind", id = "kind_filter", value_name = "KIND")]
        kind_filter: Option<String>,
        /// With lost, stuck, late or at-risk: every message that was ever in that
        /// state, whatever its verdict now (a message deleted unread and resent
        /// months later stays counted), one row per incident with how it ended.
        #[arg(long)]
        ever: bool,
        /// With incidents or --ever: only incidents that have not ended.
        #[arg(long)]
        open: bool,
        /// With reported-late: how long after an event the ledger may learn of it
        /// before that is a finding (e.g. 1h, 7d; default 24h).
        #[arg(long, value_name = "DURATION")]
        over: Option<String>,
        #[command(flatten)]
        query: questions::Query,
    },
    /// Counts of messages per verdict and of incidents per kind, optionally grouped.
    ///
    /// Keys combine: `--by from,month` counts per sender and month sent, so "concern
    /// reports lost per month per district" is one question:
    ///   ledger stats --by from,month --category bekymringsmelding --since 2020-01-01
    Stats {
        /// Group by sender, recipient, channel, category and/or month sent
        /// (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',')]
        by: Vec<questions::By>,
        /// List only the groups where this count is above zero: a verdict (lost), an
        /// incident kind (lost_unread), with_incidents or with_anomalies. "Lost
        /// unread per sender and month" is `--by from,month --having lost_unread`.
        #[arg(long, value_name = "COUNT")]
        having: Option<String>,
        #[command(flatten)]
        query: questions::Query,
    },
    /// Rebuild every projection from seq 0 and print its digests.
    ///
    /// The projection digest commits to the facts, the policy and the evaluation
    /// time (--now, else the last entry's recorded_at), so two replays of the same
    /// log under the same policy print the same digest on any machine. With
    /// --verify, compares a fresh replay with the persisted projection and changes
    /// nothing (exit 1 on a difference).
    Replay {
        /// Compare with the persisted projection instead of replacing it.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        when: questions::When,
    },
    /// The 2018–2023 incident, simulated in a fresh ledger, and what the ledger finds.
    ///
    /// 12 police districts, 356 municipalities, several channels, five years of
    /// traffic: receivers without Altinn access, a case system that loses hand-offs,
    /// failed deliveries, resends by letter. Writes events.jsonl, truth.json and two
    /// lists to reconcile into the directory, appends everything, and checks the
    /// findings against the scenario's ground truth (exit 1 on any difference).
    ///
    /// --dir (default ledger-demo) must be empty or absent.
    Demo {
        /// Random seed: the same seed gives the same events on every machine.
        #[arg(long, default_value_t = 2023)]
        seed: u64,
        /// Original messages to simulate (2000000 for a national-scale run).
        #[arg(long, default_value_t = 30_000)]
        messages: usize,
    },
    /// Compare what a sender says it sent and a receiver says it got with the ledger.
    ///
    /// Each list is CSV (header with message, ref, at; or a case system's own export,
    /// read with --map) or JSON Lines ({"message", "ref", "at"}). A row matches a
    /// ledger message by id, else by any of its `refs`. Reports: sent_not_in_ledger, in_ledger_not_received (messages named
    /// by the sent list or passing the filters that no received row matches),
    /// received_not_sent, ambiguous_ref. Exit 0 when the lists agree, 1 when
    /// differences are found, 2 on bad input. Example, for an export with a BOM,
    /// semicolons and Norwegian headers and dates:
    ///   ledger reconcile --sent websak.csv --received familia.csv --sent-map message=Dokumentnr,ref=Saksnr,at=Dato --received-map ref=Journalnr
    Reconcile {
        /// What the sender says it sent.
        #[arg(long, value_name = "FILE")]
        sent: PathBuf,
        /// What the receiver says it got.
        #[arg(long, value_name = "FILE")]
        received: PathBuf,
        /// The export's own columns, for both lists: FIELD=COLUMN pairs for the fields
        /// message, ref and at (e.g. message=Dokumentnr,ref=Saksnr,at=Dato). The
        /// delimiter (comma, semicolon, tab) and a BOM are recognised by themselves;
        /// `at` may be 01.07.2018 (with HH:MM) as well as RFC 3339.
        #[arg(long, value_name = "MAP")]
        map: Option<String>,
        /// As --map, for the --sent list only.
        #[arg(long, value_name = "MAP")]
        sent_map: Option<String>,
        /// As --map, for the --received list only.
        #[arg(long, value_name = "MAP")]
        received_map: Option<String>,
        #[command(flatten)]
        query: questions::Query,
    },
    /// Write a portable bundle for auditors (a directory, or a .tar file).
    Export {
        /// Where to write it; must not exist. Ends in .tar for a tar file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the HTTP API (under /v1; schemas/openapi.yaml) until SIGTERM or Ctrl-C,
    /// which drain requests in flight. Prints the address it listens on.
    ///
    /// Every request but /healthz and /readyz needs `Authorization: Bearer <token>`:
    /// create tokens with `ledger token create`. Settings (TLS, limits, JWT issuer)
    /// come from --config, else <dir>/ledger.toml, else the defaults.
    Serve {
        /// Address to listen on [default: 127.0.0.1:7070; port 0 picks a free one].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Configuration file [default: <dir>/ledger.toml if present].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A load generator for `ledger serve`: concurrent clients posting events (or reading
    /// messages) over HTTP for a fixed time; prints throughput and latency percentiles.
    BenchLoad(bench_load::LoadArgs),
    /// Copy a ledger to the other engine, byte for byte (entries, signed checkpoints,
    /// key), and check the copy: same entries, same checkpoints, same projection facts.
    ///
    /// Examples:
    ///   ledger migrate --from ledger-data --to postgres://ledger@db/ledger --into ledger-pg
    ///   ledger migrate --from ledger-pg --to ledger-data-copy
    Migrate {
        /// The ledger directory to copy (either engine).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// A postgres:// URL (an empty database), or a new directory for an embedded copy.
        #[arg(long, value_name = "URL|DIR")]
        to: String,
        /// With a postgres:// target: the new ledger's directory (its key and store.json).
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
    },
    /// Back the ledger up into a directory, at its newest signed checkpoint, while it
    /// runs: the first time everything, then only the entries since. The backup is an
    /// export bundle (`ledger verify --bundle DIR` checks it) with the signing key.
    ///
    /// Example: ledger backup --to /backup/ledger
    Backup(backup::BackupArgs),
    /// A new ledger from a backup, an export bundle, a mirror or a ledger's directory,
    /// checked entry by entry and checkpoint by checkpoint; it then appends and signs
    /// with its key, or with --new-key with a new key announced in the log.
    ///
    /// Example: ledger restore --from /backup/ledger --into ledger-data.restored
    ///
    /// Example: ledger restore --from ledger-data --into ledger-data.rekeyed --new-key lost
    Restore(backup::RestoreArgs),
    /// Print the server's OpenAPI description (YAML), generated from the code; it is
    /// what schemas/openapi.yaml holds.
    Openapi,
    /// Run a witness (c2sp.org/tlog-witness) for other organisations' ledgers: it
    /// cosigns a log's checkpoint only if it is consistent with the last one it
    /// cosigned, so no log can show two histories. --dir is the witness's directory.
    ///
    /// Two commands run one:
    ///
    /// ledger --dir w witness init --name witness.tilsyn.example
    ///
    /// ledger --dir w witness add-log --key @bergen/verifier.key --hash blake3 && ledger --dir w witness serve
    ///
    /// After a log rotates its key, add-log again with its new verifier.key.
    Witness {
        #[command(subcommand)]
        command: serve::WitnessCommand,
    },
    /// Static API tokens for the server: create (shown once), list, revoke.
    Token {
        /// Configuration file naming the tokens file [default: <dir>/ledger.toml if present].
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: serve::TokenCommand,
    },
    /// The addresses channels deliver their events to (Altinn Events, an eFormidling
    /// integrasjonspunkt, a Fiks IO adapter), which cannot send our bearer tokens: add
    /// (prints the address and the steps to register it), list, revoke.
    Channel {
        /// Configuration file naming the tokens file [default: <dir>/ledger.toml if present].
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: channel::ChannelCommand,
    },
}

#[derive(Subcommand)]
enum Prove {
    /// Audit path of one entry.
    Inclusion {
        /// The entry's seq.
        #[arg(long)]
        seq: u64,
        /// Tree size (default: the newest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Proof that the log of --from entries is a prefix of the log of --to entries.
    Consistency {
        /// The older size.
        #[arg(long)]
        from: u64,
        /// The newer size (default: the newest checkpoint's).
        #[arg(long)]
        to: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = parse_cli();
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::BenchLoad(_) | Command::Witness { .. }
    ) {
        // `ledger report … | head`: a closed pipe ends the command quietly, as it
        // does any Unix filter, instead of a panic in the middle of a `println!`.
        // The server keeps Rust's default (a closed socket is an error to handle).
        // SAFETY: called once, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let input = e.chain().any(|c| c.is::<InputError>())
                || e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<ledger_core::StoreError>(),
                        Some(
                            ledger_core::StoreError::Conflict { .. }
                                | ledger_core::StoreError::OutOfRange(_)
                        )
                    )
                });
            ExitCode::from(if input { EXIT_INPUT } else { EXIT_STORE })
        }
    }
}

/// Who uses which command: `ledger --help` lists them so, a newcomer's map. Every
/// command is in exactly one group (a test holds it).
const COMMAND_GROUPS: &[(&str, &[&str])] = &[
    ("Try it", &["demo"]),
    (
        "Sending systems and channels — record what happened",
        &["append", "receipt", "channel"],
    ),
    (
        "Regulators and case handlers — ask what happened to a message",
        &["history", "status", "report", "stats", "reconcile"],
    ),
    (
        "Auditors and monitors — check it without trusting the operator",
        &[
            "verify",
            "verify-receipt",
            "checkpoint",
            "prove",
            "mirror",
            "export",
        ],
    ),
    (
        "Operators — run the ledger",
        &[
            "init",
            "serve",
            "token",
            "backup",
            "restore",
            "reindex",
            "replay",
            "upgrade",
            "migrate",
            "bench-load",
            "openapi",
        ],
    ),
    (
        "Witnesses — cosign other organisations' ledgers",
        &["witness"],
    ),
];

/// The command line, with `--help` listing the commands by who uses them.
fn cli_command() -> clap::Command {
    let cmd = Cli::command();
    let width = cmd
        .get_subcommands()
        .map(|c| c.get_name().len())
        .max()
        .unwrap_or(0);
    let mut listing = String::new();
    for (heading, names) in COMMAND_GROUPS.iter().chain([&("", &["help"][..])]) {
        if !heading.is_empty() {
            listing.push_str(&format!("{heading}:\n"));
        }
        for name in *names {
            let about = match cmd.find_subcommand(name) {
                Some(c) => c.get_about().map(|a| a.to_string()).unwrap_or_default(),
                None => "Print this message or the help of the given subcommand(s)".into(),
            };
            listing.push_str(&format!("  {name:width$}  {about}\n"));
        }
        listing.push('\n');
    }
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}Options:\n{{options}}{{after-help}}"
    ))
}

fn parse_cli() -> Cli {
    let matches = cli_command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Opens the store and prints what recovery did.
/// Opens the ledger in the directory, on whichever engine it uses.
pub(crate) fn open(cli_dir: &std::path::Path) -> Result<ledger_pg::Engine> {
    let (store, report) = ledger_pg::engine::open(cli_dir)
        .with_context(|| format!("cannot open the ledger at {}", cli_dir.display()))?;
    for line in report {
        eprintln!("warning: {line}");
    }
    Ok(store)
}

/// The ledger a question reads: the store itself, or a read-only snapshot of its log
/// when `dir` is an export bundle, holds no `signing.key`, or another process (a
/// running `ledger serve`) holds the store. Only appending and signing need the key
/// and the lock.
pub(crate) fn open_reader(dir: &std::path::Path) -> Result<Box<dyn Store>> {
    use ledger_core::store::{Snapshot, SnapshotSource};
    let snapshot = |why: &str| -> Result<Box<dyn Store>> {
        eprintln!("note: reading {} read-only ({why})", dir.display());
        questions::set_read_only();
        let s = Snapshot::open(dir)
            .with_context(|| format!("cannot read the ledger at {}", dir.display()))?;
        Ok(Box::new(s))
    };
    match SnapshotSource::of(dir) {
        Some(SnapshotSource::Bundle) => return snapshot("an export bundle"),
        Some(SnapshotSource::StoreDir) if !dir.join("signing.key").exists() => {
            return snapshot("no signing.key here");
        }
        _ => {}
    }
    match ledger_pg::engine::open(dir) {
        Ok((store, report)) => {
            for line in report {
                eprintln!("warning: {line}");
            }
            Ok(Box::new(store))
        }
        Err(ledger_core::StoreError::Locked(_))
            if SnapshotSource::of(dir) == Some(SnapshotSource::StoreDir) =>
        {
            snapshot("another process, such as `ledger serve`, holds the store")
        }
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("cannot open the ledger at {}", dir.display())))
        }
    }
}

/// A `--key` argument: a verifier key, or a key history (a `verifier.key` file's
/// text, FORMAT.md §17), given as the text or as `@FILE`.
pub(crate) fn read_key(arg: &str) -> Result<KeyHistory> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("read key file {path}"))?
        }
        None => arg.to_string(),
    };
    text.trim()
        .parse()
        .map_err(|e| anyhow::Error::new(InputError(format!("--key: {e}"))))
}

fn run(cli: Cli) -> Result<u8> {
    let default_dir = PathBuf::from("ledger-data");
    let dir = cli.dir.as_deref().unwrap_or(&default_dir);
    if let Some(url) = &cli.server
        && !matches!(cli.command, Command::BenchLoad(_))
    {
        let r = remote::Remote::new(url, cli.token.as_deref(), cli.ca_cert.as_deref())?;
        return run_remote(r, cli.command, cli.json);
    }
    match cli.command {
        Command::Init {
            origin,
            hash,
            store,
        } => {
            let opts = InitOptions {
                origin: origin.clone(),
                hash,
            };
            let key = match &store {
                None => FileStore::init(dir, &opts),
                Some(url) => ledger_pg::engine::init_postgres(dir, url, &opts),
            }
            .with_context(|| format!("cannot create a ledger at {}", dir.display()))?;
            if cli.json {
                output::json(&serde_json::json!({
                    "dir": dir, "origin": origin, "hash": hash.name(), "verifier_key": key.to_string()
                }))?;
            } else {
                println!("created ledger {origin:?} ({hash}) in {}", dir.display());
                println!("verifier key (give it to auditors; also in verifier.key):\n{key}");
            }
            Ok(0)
        }
        Command::Append { file, event_format } => append::run(dir, &file, event_format, cli.json),
        Command::History {
            message,
            as_of,
            known_at,
        } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            let when = questions::When {
                as_of,
                known_at,
                ..Default::default()
            };
            output::history(store, &message, &when, cli.json)?;
            Ok(0)
        }
        Command::Checkpoint { size } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            let cp = match size {
                None => store.latest_checkpoint()?,
                Some(s) => store
                    .checkpoints(s, 1)?
                    .into_iter()
                    .find(|c| c.size == s)
                    .ok_or_else(|| InputError(format!("no checkpoint was signed at size {s}")))?,
            };
            if cli.json {
                let parsed = store.verifier_key().verify(&cp.note)?;
                output::json(&serde_json::json!({
                    "origin": parsed.origin, "size": cp.size, "root": hex::encode(parsed.root), "note": cp.note
                }))?;
            } else {
                print!("{}", cp.note);
            }
            Ok(0)
        }
        Command::Prove(p) => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            let latest = store.latest_checkpoint()?;
            let alg = store.info().hash;
            let value = match p {
                Prove::Inclusion { seq, size } => {
                    let size = size.unwrap_or(latest.size);
                    let proof = store.inclusion_proof(seq, size)?;
                    proof
                        .verify(alg)
                        .context("self-check of the generated proof failed")?;
                    proof.to_json(alg, store.checkpoint_at(size)?)
                }
                Prove::Consistency { from, to } => {
                    let to = to.unwrap_or(latest.size);
                    let proof = store.consistency_proof(from, to)?;
                    proof
                        .verify(alg)
                        .context("self-check of the generated proof failed")?;
                    proof.to_json(alg, store.checkpoint_at(from)?, store.checkpoint_at(to)?)
                }
            };
            output::json(&value)?;
            Ok(0)
        }
        Command::Verify {
            bundle,
            key,
            insecure_no_key,
            trusted,
            unique_ids,
            deep,
            privacy,
        } => {
            let mut opts = verify_options(unique_ids, deep, privacy, key.as_deref(), trusted)?;
            let bar = output::progress_bytes("verifying");
            // `--dir` naming a bundle verifies it as one (with the key you hold).
            let bundle = bundle.or_else(|| {
                (ledger_core::store::SnapshotSource::of(dir)
                    == Some(ledger_core::store::SnapshotSource::Bundle))
                .then(|| dir.to_path_buf())
            });
            if bundle.is_some() {
                require_key(key.as_deref(), insecure_no_key, "verify --bundle")?;
            }
            let report = match &bundle {
                Some(b) => verify::verify_bundle(b, &opts, &bar),
                None if dir.join(ledger_pg::engine::STORE_FILE).exists() => {
                    // The log is in PostgreSQL: read it all into a bundle and verify
                    // that, against the directory's verifier key unless one is given.
                    let store = open(dir)?;
                    let tmp = tempfile::tempdir().context("make a temporary directory")?;
                    let b = tmp.path().join("bundle");
                    ledger_core::bundle::export(&store, &b, &bar).context("reading the log")?;
                    if opts.key.is_none() {
                        opts.key = Some(store.verifier_key().clone());
                    }
                    verify::verify_bundle(&b, &opts, &bar)
                }
                None => verify::verify_store(dir, &opts, &bar),
            }
            .context("verification could not run")?;
            bar.0.finish_and_clear();
            output::verify_report(&report, cli.json)?;
            Ok(if report.ok() { 0 } else { EXIT_FAULTS })
        }
        Command::Upgrade { format } => {
            let old = ledger_pg::engine::upgrade(dir, format).context("upgrade failed")?;
            let new = old.max(format);
            if cli.json {
                output::json(&serde_json::json!({ "from": old, "to": new }))?;
            } else if old >= format {
                println!("the ledger already holds format {old}; nothing changed");
            } else {
                println!(
                    "the ledger now takes format {new} events (it held format {old}); nothing recorded changed"
                );
            }
            Ok(0)
        }
        Command::Reindex => {
            if dir.join(ledger_pg::engine::STORE_FILE).exists() {
                return Err(anyhow::Error::new(InputError(
                    "reindex rebuilds the embedded store's index; a PostgreSQL ledger keeps its indexes in the database".into(),
                )));
            }
            let (old, new) = ledger_core::store::reindex(dir).context("reindex failed")?;
            let same = old == Some(new);
            if cli.json {
                output::json(&serde_json::json!({
                    "old_digest": old.map(hex::encode), "new_digest": hex::encode(new), "identical": same
                }))?;
            } else {
                match old {
                    Some(o) if same => println!(
                        "index rebuilt from the log; identical to the old one (digest {})",
                        hex::encode(o)
                    ),
                    Some(o) => println!(
                        "index rebuilt from the log; the old one DIFFERED (old digest {}, new {}) and was replaced",
                        hex::encode(o),
                        hex::encode(new)
                    ),
                    None => println!(
                        "index rebuilt from the log (digest {}); there was no readable old index",
                        hex::encode(new)
                    ),
                }
            }
            Ok(0)
        }
        Command::Status { message, when } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            questions::status(dir, store, &message, &when, cli.json)
        }
        Command::Report {
            kind,
            kind_filter,
            ever,
            open: open_only,
            over,
            query,
        } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            let opts = ledger_core::questions::ReportOptions {
                kind: kind_filter.as_deref(),
                ever,
                open: open_only,
                over: over.as_deref(),
            };
            questions::report(dir, store, kind, opts, &query, cli.json)
        }
        Command::Stats { by, having, query } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            questions::stats(dir, store, &by, having.as_deref(), &query, cli.json)
        }
        Command::Replay { verify, when } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            questions::replay(dir, store, verify, &when, cli.json)
        }
        Command::Reconcile {
            sent,
            received,
            map,
            sent_map,
            received_map,
            query,
        } => {
            let options =
                |flag: &str, m: Option<&String>| -> Result<ledger_core::reconcile::ListOptions> {
                    match m {
                        None => Ok(Default::default()),
                        Some(text) => ledger_core::reconcile::ListOptions::parse_map(text)
                            .map_err(|e| InputError(format!("{flag} {text:?}: {e}")).into()),
                    }
                };
            let lists = (
                (
                    sent.as_path(),
                    options("--sent-map", sent_map.as_ref().or(map.as_ref()))?,
                ),
                (
                    received.as_path(),
                    options("--received-map", received_map.as_ref().or(map.as_ref()))?,
                ),
            );
            let store = open_reader(dir)?;
            let store = store.as_ref();
            questions::reconcile(dir, store, lists, &query, cli.json)
        }
        Command::Demo { seed, messages } => {
            let dir = cli.dir.unwrap_or_else(|| PathBuf::from("ledger-demo"));
            demo::run(&dir, seed, messages, cli.json)
        }
        Command::Migrate { from, to, into } => {
            let bar = output::progress_count("copying");
            let mut progress = |at: u64, size: u64| bar.advance_to(at, size);
            let report = if to.starts_with("postgres://") || to.starts_with("postgresql://") {
                let into = into.ok_or_else(|| {
                    InputError("--to postgres://… needs --into DIR: the new ledger's directory".into())
                })?;
                ledger_pg::copy::to_postgres(&from, &to, &into, &mut progress)
            } else {
                if into.is_some() {
                    return Err(anyhow::Error::new(InputError(
                        "--into is for a postgres:// target; for an embedded copy, --to is the new directory".into(),
                    )));
                }
                ledger_pg::copy::to_embedded(&from, std::path::Path::new(&to), &mut progress)
            }
            .with_context(|| format!("migrating {} to {to}", from.display()))?;
            bar.0.finish_and_clear();
            if cli.json {
                output::json(&serde_json::json!({
                    "entries": report.entries, "checkpoints": report.checkpoints,
                    "facts_digest": report.facts_digest, "checked": true
                }))?;
            } else {
                println!(
                    "copied {} entries and {} signed checkpoints to {to}; checked: the same entries, checkpoints and projection facts ({})",
                    report.entries, report.checkpoints, report.facts_digest
                );
            }
            Ok(0)
        }
        Command::Backup(a) => backup::backup(dir, &a, cli.json),
        Command::Restore(a) => backup::restore(&a, cli.json),
        Command::Openapi => {
            print!("{}", ledger_server::openapi_yaml());
            Ok(0)
        }
        Command::BenchLoad(a) => {
            bench_load::run(a, cli.server.as_deref(), cli.token.as_deref(), cli.json)
        }
        Command::Serve { listen, config } => serve::serve(dir, listen, config.as_deref()),
        Command::Token { config, command } => {
            serve::token(dir, config.as_deref(), command, cli.json)
        }
        Command::Witness { command } => serve::witness(dir, command, cli.json),
        Command::Channel { command, .. }
            if matches!(command, channel::ChannelCommand::Poll { .. }) =>
        {
            channel::poll(command, cli.token.as_deref(), cli.json)
        }
        Command::Channel { config, command } => {
            let cfg = serve::config(dir, config.as_deref())?;
            channel::run(dir, &cfg.tokens_file, command, cli.json)
        }
        Command::Receipt(args) => {
            let store = open_reader(dir)?;
            receipts::receipt(dir, store.as_ref(), &args, cli.json)
        }
        Command::VerifyReceipt(args) => receipts::verify_receipt(&args, cli.json),
        Command::Mirror(args) => mirror::run(&args, cli.token.as_deref(), cli.json),
        Command::Export { out } => {
            let store = open_reader(dir)?;
            let store = store.as_ref();
            let bar = output::progress_count("exporting");
            let summary = ledger_core::bundle::export_with_names(
                store,
                &out,
                &bar,
                Some(dir.join(ledger_core::directory::FILE_NAME))
                    .filter(|p| p.exists())
                    .as_deref(),
            )
            .context("export failed")?;
            bar.0.finish_and_clear();
            if cli.json {
                output::json(&serde_json::json!({
                    "out": out, "entries": summary.entries, "checkpoints": summary.checkpoints
                }))?;
            } else {
                println!(
                    "wrote {} entries and {} checkpoints to {}",
                    summary.entries,
                    summary.checkpoints,
                    out.display()
                );
            }
            Ok(0)
        }
    }
}

/// The commands that can ask a server instead of a directory.
fn run_remote(r: remote::Remote, command: Command, as_json: bool) -> Result<u8> {
    let unsupported = |what: &str| -> Result<u8> {
        Err(anyhow::Error::new(InputError(format!(
            "{what} with --server is not supported; --server works with history, status, report, checkpoint, prove and verify"
        ))))
    };
    match command {
        Command::History {
            message,
            as_of,
            known_at,
        } => {
            if as_of.is_some() || known_at.is_some() {
                return unsupported("history --as-of or --known-at (ask `status` instead)");
            }
            remote::history(&r, &message, as_json)
        }
        Command::Status { message, when } => {
            if when.policy.is_some() {
                return unsupported("--policy");
            }
            remote::status(&r, &message, &when, as_json)
        }
        Command::Report {
            kind,
            kind_filter,
            ever,
            open: open_only,
            over,
            query,
        } => {
            if query.when.policy.is_some() {
                return unsupported("report --policy");
            }
            let f = &query.filters;
            let params = vec![
                ("from", f.from.clone()),
                ("to", f.to.clone()),
                ("party", f.party.clone()),
                ("category", f.category.clone()),
                ("channel", f.channel.clone()),
                ("since", f.since.clone()),
                ("until", f.until.clone()),
                ("now", query.when.now.clone()),
                ("as_of", query.when.as_of.clone()),
                ("known_at", query.when.known_at.clone()),
                (
                    "at_checkpoint",
                    query.when.at_checkpoint.map(|n| n.to_string()),
                ),
                ("kind", kind_filter),
                ("ever", ever.then(|| "true".to_string())),
                ("open", open_only.then(|| "true".to_string())),
                ("over", over),
            ];
            let format = query.format.unwrap_or(if as_json {
                questions::Format::Json
            } else {
                questions::Format::Table
            });
            remote::report(&r, kind.path_name(), params, format, as_json)
        }
        Command::Checkpoint { size } => remote::checkpoint(&r, size, as_json),
        Command::Prove(Prove::Inclusion { seq, size }) => remote::prove(
            &r,
            &format!(
                "/v1/proofs/inclusion?seq={seq}{}",
                size.map(|s| format!("&size={s}")).unwrap_or_default()
            ),
        ),
        Command::Prove(Prove::Consistency { from, to }) => remote::prove(
            &r,
            &format!(
                "/v1/proofs/consistency?from={from}{}",
                to.map(|t| format!("&to={t}")).unwrap_or_default()
            ),
        ),
        Command::Verify {
            bundle,
            key,
            insecure_no_key,
            trusted,
            unique_ids,
            deep,
            privacy,
        } => {
            if bundle.is_some() {
                return unsupported("verify --bundle");
            }
            require_key(key.as_deref(), insecure_no_key, "verify --server")?;
            let opts = verify_options(unique_ids, deep, privacy, key.as_deref(), trusted)?;
            remote::verify(&r, &opts, as_json)
        }
        _ => unsupported("this command"),
    }
}

/// An auditor who forgets the key must not pass a forgery signed with its own key.
fn require_key(key: Option<&str>, insecure_no_key: bool, what: &str) -> Result<()> {
    if key.is_none() && !insecure_no_key {
        return Err(anyhow::Error::new(InputError(format!(
            "{what} needs --key KEY|@FILE, the verifier key you hold from the ledger's operator: the key \
             that comes with the log proves nothing, since whoever made it chose it. To check only that the \
             files are intact, pass --insecure-no-key"
        ))));
    }
    Ok(())
}

/// What `verify` checks, from its flags (local and remote alike).
fn verify_options(
    unique_ids: bool,
    deep: bool,
    privacy: bool,
    key: Option<&str>,
    trusted: Option<PathBuf>,
) -> Result<VerifyOptions> {
    Ok(VerifyOptions {
        unique_ids,
        deep,
        privacy,
        key: key.map(read_key).transpose()?,
        trusted: trusted
            .map(|p| std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display())))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_listed_in_exactly_one_group() {
        let cmd = Cli::command();
        let listed: Vec<&str> = COMMAND_GROUPS
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        for c in cmd.get_subcommands() {
            let n = listed.iter().filter(|l| **l == c.get_name()).count();
            assert_eq!(n, 1, "`{}` is listed {n} times in --help", c.get_name());
        }
        for name in &listed {
            assert!(
                cmd.find_subcommand(name).is_some(),
                "--help lists `{name}`, which is no command"
            );
        }
        cli_command().debug_assert();
    }
}
