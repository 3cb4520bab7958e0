//! Schema migrations, applied by the ledger itself: versioned, idempotent, checked at
//! start. Each migration's SQL is recorded with its SHA-256; a database whose applied
//! migrations differ from the code's, or that is newer than the code, is refused, never
//! "repaired".

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One schema change.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version it brings the schema to (1, 2, …, no gaps).
    pub version: i32,
    /// What it does.
    pub name: &'static str,
    /// The SQL, run in one transaction.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "log",
        sql: include_str!("../migrations/0001_log.sql"),
    },
    Migration {
        version: 2,
        name: "chain guard per statement, no index foreign key",
        sql: include_str!("../migrations/0002_chain_guard_per_statement.sql"),
    },
];

/// A fixed key for `pg_advisory_xact_lock`: two processes starting at once migrate one
/// after the other.
const LOCK_KEY: i64 = 0x6c65_6467_6572_0001; // "ledger" + 1

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database failed.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// An applied migration's SQL differs from the code's.
    #[error(
        "migration {version} ({name}) was applied with other SQL (sha256 {applied}, this ledger has {code}); refusing to run on a schema it does not know"
    )]
    Changed {
        /// Which.
        version: i32,
        /// Its name.
        name: String,
        /// Digest recorded in the database.
        applied: String,
        /// Digest of the code's SQL.
        code: String,
    },
    /// The database has migrations this code does not know.
    #[error(
        "the database's schema is at version {db}, newer than this ledger's {code}; upgrade the ledger"
    )]
    Newer {
        /// Version in the database.
        db: i32,
        /// Newest version this code knows.
        code: i32,
    },
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Versions applied now.
    pub applied: Vec<i32>,
    /// The schema version afterwards.
    pub version: i32,
}

fn digest(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS ledger_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Brings the schema to the newest version, in one transaction under an advisory
/// lock; checks the migrations already applied against the code first.
pub async fn migrate(client: &mut Client) -> Result<Report, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(BOOKKEEPING).await?;
    let applied = tx
        .query(
            "SELECT version, name, sha256 FROM ledger_migrations ORDER BY version",
            &[],
        )
        .await?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    let mut done = std::collections::BTreeSet::new();
    for row in &applied {
        let (version, name, sha): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        if version > newest {
            return Err(MigrateError::Newer {
                db: version,
                code: newest,
            });
        }
        let m = MIGRATIONS
            .iter()
            .find(|m| m.version == version)
            .expect("versions up to the newest are all in the code");
        let code = digest(m.sql);
        if sha != code {
            return Err(MigrateError::Changed {
                version,
                name,
                applied: sha,
                code,
            });
        }
        done.insert(version);
    }
    let mut report = Report::default();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO ledger_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &digest(m.sql)],
        )
        .await?;
        report.applied.push(m.version);
    }
    tx.commit().await?;
    report.version = newest;
    Ok(report)
}

/// The schema version of the database (0 if the ledger never migrated it), checked
/// against the code as `migrate` does, without changing anything.
pub async fn schema_version(client: &Client) -> Result<i32, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('ledger_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let rows = client
        .query(
            "SELECT version, name, sha256 FROM ledger_migrations ORDER BY version",
            &[],
        )
        .await?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    let mut version = 0;
    for row in rows {
        let (v, name, sha): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == v) else {
            return Err(MigrateError::Newer {
                db: v,
                code: newest,
            });
        };
        if digest(m.sql) != sha {
            return Err(MigrateError::Changed {
                version: v,
                name,
                applied: sha,
                code: digest(m.sql),
            });
        }
        version = version.max(v);
    }
    Ok(version)
}
