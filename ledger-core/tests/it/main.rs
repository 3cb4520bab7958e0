//! Integration tests of ledger-core: one binary, one module per feature.

mod corruption;
mod faults;
mod format2;
mod recovery;
mod rfc6962;
mod store;
mod tlog_proof_kat;
