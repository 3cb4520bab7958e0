//! The ledger's HTTP API (`ledger serve`) will live here: see issue 4. The crate
//! exists so the workspace has its final shape; it exposes nothing yet.
