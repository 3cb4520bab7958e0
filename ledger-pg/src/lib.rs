//! The PostgreSQL store of the ledger (issue 5): for deployments that outgrow one
//! machine. This crate holds the schema and the migrations the ledger applies itself;
//! the `Store` implementation, the writer lease and `ledger migrate` build on them.

pub mod migrate;

pub use migrate::{MIGRATIONS, MigrateError, Migration, Report, migrate, schema_version};
