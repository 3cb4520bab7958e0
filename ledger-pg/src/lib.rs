//! The PostgreSQL store of the ledger (issue 5): for deployments that outgrow one
//! machine. The schema and the migrations the ledger applies itself, and [`PgStore`],
//! the `Store` implementation; the writer lease and `ledger migrate` build on them.

pub mod copy;
pub mod engine;
pub mod migrate;
mod redact;
mod store;

pub use engine::Engine;
pub use migrate::{MIGRATIONS, MigrateError, Migration, Report, migrate, schema_version};
pub use redact::redact;
pub use store::PgStore;
