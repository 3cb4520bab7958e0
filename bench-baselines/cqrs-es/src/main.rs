//! Baseline (b) of `BENCHMARKS.md`, "PostgreSQL (issue 5)": what a Rust team would
//! pick instead of the ledger — cqrs-es + postgres-es from crates.io — driven with the
//! workload of `ledger-pg/benches/append.rs`: N events (`BENCH_EVENTS`, 20000), one
//! aggregate per message, each message sent, delivered and opened (event i belongs to
//! message i/3, kind i%3), from `BENCH_PRODUCERS` (64) tokio tasks sharing one
//! `PostgresCqrs` over an sqlx pool of `BENCH_POOL` (16) connections.
//!
//! Each `execute` is what the framework does for one command: load the aggregate's
//! events, run `handle`, insert the new event in its own transaction (one durable
//! commit). Nothing is batched.
//!
//! `cargo run --release`. Needs PostgreSQL: `LEDGER_TEST_PG`, or the server
//! `scripts/pg-env` finds. Works in a fresh database `cqrs_bench_<pid>`, dropped at
//! the end.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, DomainEvent};
use postgres_es::{PostgresCqrs, postgres_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, Row};

// ---- the domain: one aggregate per message -------------------------------------

/// Who reported an event (as in the ledger's events).
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Reporter {
    org: String,
    system: String,
}

/// The fields of the ledger's `sent` event.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Sent {
    id: String,
    message: String,
    at: String,
    reporter: Reporter,
    from: String,
    to: String,
    channel: String,
    category: String,
    content_digest: String,
    refs: BTreeMap<String, String>,
}

/// The fields of the ledger's `delivered` event.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Delivered {
    id: String,
    message: String,
    at: String,
    reporter: Reporter,
}

/// The fields of the ledger's `opened` event.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Opened {
    id: String,
    message: String,
    at: String,
    reporter: Reporter,
    by_role: String,
}

#[derive(Clone, Debug)]
enum MessageCommand {
    Send(Sent),
    Deliver(Delivered),
    Open(Opened),
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
enum MessageEvent {
    Sent(Sent),
    Delivered(Delivered),
    Opened(Opened),
}

impl DomainEvent for MessageEvent {
    fn event_type(&self) -> String {
        match self {
            MessageEvent::Sent(_) => "Sent",
            MessageEvent::Delivered(_) => "Delivered",
            MessageEvent::Opened(_) => "Opened",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Status {
    #[default]
    New,
    Sent,
    Delivered,
    Opened,
}

#[derive(Serialize, Deserialize, Default, Debug)]
struct Message {
    status: Status,
}

#[derive(Debug)]
struct MessageError(String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

impl Aggregate for Message {
    const TYPE: &'static str = "message";
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let (allowed, event) = match command {
            MessageCommand::Send(e) => (self.status == Status::New, MessageEvent::Sent(e)),
            MessageCommand::Deliver(e) => (self.status == Status::Sent, MessageEvent::Delivered(e)),
            MessageCommand::Open(e) => (
                matches!(self.status, Status::Sent | Status::Delivered),
                MessageEvent::Opened(e),
            ),
        };
        if !allowed {
            return Err(MessageError(format!(
                "{} not allowed in status {:?}",
                event.event_type(),
                self.status
            )));
        }
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.status = match event {
            MessageEvent::Sent(_) => Status::Sent,
            MessageEvent::Delivered(_) => Status::Delivered,
            MessageEvent::Opened(_) => Status::Opened,
        };
    }
}

/// The command for event `i`, with the same field values as `append.rs`'s event `i`.
fn command(i: usize) -> MessageCommand {
    let m = i / 3;
    let id = format!("ev-{i}");
    let message = format!("MSG-{m:08}");
    match i % 3 {
        0 => MessageCommand::Send(Sent {
            id,
            message,
            at: "2023-05-08T09:30:00Z".into(),
            reporter: Reporter {
                org: "974760673".into(),
                system: "websak".into(),
            },
            from: "974760673".into(),
            to: "964338531".into(),
            channel: "altinn".into(),
            category: "bekymringsmelding".into(),
            content_digest: format!("blake3:{m:064x}"),
            refs: BTreeMap::from([("altinn".to_string(), format!("a1b2c3d4-{m:012}"))]),
        }),
        1 => MessageCommand::Deliver(Delivered {
            id,
            message,
            at: "2023-05-08T09:31:00Z".into(),
            reporter: Reporter {
                org: "974760673".into(),
                system: "altinn".into(),
            },
        }),
        _ => MessageCommand::Open(Opened {
            id,
            message,
            at: "2023-05-09T10:00:00Z".into(),
            reporter: Reporter {
                org: "964338531".into(),
                system: "familia".into(),
            },
            by_role: "saksbehandler".into(),
        }),
    }
}

// ---- the bench ---------------------------------------------------------------------

/// The tables postgres-es 0.5 reads and writes, as its `db/init.sql` creates them.
const SCHEMA: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// The server's URL: `LEDGER_TEST_PG`, or what `scripts/pg-env` prints.
fn server_url() -> String {
    std::env::var("LEDGER_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = std::process::Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/pg-env"
            ))
            .output()
            .expect("run scripts/pg-env");
            assert!(out.status.success(), "no PostgreSQL: set LEDGER_TEST_PG");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
}

/// `base` with its database name replaced by `db` (any `?query` kept).
fn with_database(base: &str, db: &str) -> String {
    let authority = base.find("://").map_or(0, |i| i + 3);
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let end = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    format!("{}/{db}{query}", &head[..end])
}

struct Outcome {
    rate: f64,
    conflicts: u64,
}

async fn run(url: &str, n: usize, producers: usize, pool_size: u32) -> Result<Outcome, String> {
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(pool_size)
        .connect(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    sqlx::raw_sql(SCHEMA)
        .execute(&pool)
        .await
        .map_err(|e| format!("create tables: {e}"))?;
    // Open every connection of the pool before the clock starts.
    {
        let mut held = Vec::new();
        for _ in 0..pool_size {
            held.push(pool.acquire().await.map_err(|e| e.to_string())?);
        }
    }

    let cqrs: Arc<PostgresCqrs<Message>> = Arc::new(postgres_cqrs(pool.clone(), vec![], ()));
    let commands: Arc<Vec<MessageCommand>> = Arc::new((0..n).map(command).collect());
    let messages = n.div_ceil(3);
    let next = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));

    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (cqrs, commands, next, conflicts) = (
            cqrs.clone(),
            commands.clone(),
            next.clone(),
            conflicts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // A work item is a whole message: its commands go in order from one task.
            loop {
                let m = next.fetch_add(1, Ordering::Relaxed);
                if m >= messages {
                    return Ok::<(), String>(());
                }
                let id = format!("MSG-{m:08}");
                for cmd in &commands[3 * m..(3 * m + 3).min(commands.len())] {
                    loop {
                        match cqrs.execute(&id, cmd.clone()).await {
                            Ok(()) => break,
                            // Optimistic lock lost (a unique violation on the sequence):
                            // reload and retry, as code on this framework must.
                            Err(AggregateError::AggregateConflict) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => return Err(format!("{id}: {e}")),
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();

    // Check what was stored: every event once, each message's in order.
    let row = sqlx::query(
        "SELECT count(*),
                count(*) FILTER (WHERE (sequence = 1 AND event_type <> 'Sent')
                                    OR (sequence = 2 AND event_type <> 'Delivered')
                                    OR (sequence = 3 AND event_type <> 'Opened')
                                    OR sequence NOT IN (1, 2, 3)),
                count(DISTINCT aggregate_id),
                avg(octet_length(payload::text))::float8
           FROM events",
    )
    .fetch_one(&pool)
    .await
    .map_err(|e| format!("check: {e}"))?;
    let (count, bad, aggs, avg): (i64, i64, i64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if count as usize != n || bad != 0 || aggs as usize != messages {
        return Err(format!(
            "stored {count} events ({bad} out of order) in {aggs} aggregates, expected {n} in {messages}"
        ));
    }
    println!(
        "checked: {count} events in {aggs} aggregates, each in order; payload JSON {avg:.0} bytes on average"
    );
    pool.close().await;
    Ok(Outcome {
        rate,
        conflicts: conflicts.load(Ordering::Relaxed),
    })
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_EVENTS", 20_000);
    let producers = env("BENCH_PRODUCERS", 64);
    let pool_size = env("BENCH_POOL", 16) as u32;
    let base = server_url();
    let name = format!("cqrs_bench_{}", std::process::id());
    let url = with_database(&base, &name);

    let mut admin = PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("connect {base}: {e}"));
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    println!(
        "versions: cqrs-es {}, postgres-es {}, sqlx {}, tokio {}; PostgreSQL {server}; {} cores",
        env!("V_CQRS_ES"),
        env!("V_POSTGRES_ES"),
        env!("V_SQLX"),
        env!("V_TOKIO"),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    let outcome = run(&url, n, producers, pool_size).await;

    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    match outcome {
        Ok(o) => {
            println!(
                "cqrs-es 0.5 + postgres-es 0.5: {:.0} events/s ({n} events, {producers} producers, pool {pool_size})",
                o.rate
            );
            if o.conflicts > 0 {
                println!("optimistic-lock conflicts retried: {}", o.conflicts);
            }
        }
        Err(e) => {
            eprintln!("cqrs-es bench failed: {e}");
            std::process::exit(1);
        }
    }
}
