//! Integration tests of ledger-core: one binary, one module per feature.

mod corruption;
mod faults;
mod recovery;
mod rfc6962;
mod store;
