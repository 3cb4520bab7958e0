//! The core of the message-accountability ledger: the event model, the canonical
//! entry format, hashing, Merkle proofs, signed checkpoints, and the embedded store.
//!
//! Nothing here does network I/O or knows about HTTP. Only [`store`] touches files.
//!
//! ```no_run
//! use ledger_core::{Event, FileStore, InitOptions, HashAlg, Store};
//!
//! let dir = std::path::Path::new("ledger-data");
//! FileStore::init(dir, &InitOptions { origin: "ledger.example/demo".into(), hash: HashAlg::Blake3 })?;
//! let (store, _report) = FileStore::open(dir)?;
//! let event = Event::from_json(br#"{"id":"e1","type":"expired","message":"M1",
//!     "at":"2023-05-08T00:00:00Z","reporter":{"org":"974760673","system":"altinn"}}"#)?;
//! let receipts = store.append(vec![event])?;
//! assert_eq!(receipts[0].seq, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod admission;
pub mod backup;
pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod directory;
pub mod entry;
pub mod event;
pub mod hash;
pub mod ids;
pub mod limits;
pub mod merkle;
pub mod note;
pub mod projection;
pub mod questions;
pub mod reconcile;
pub mod report_table;
pub mod rotation;
pub mod segment;
pub mod store;
pub mod tiles;
pub mod tlog_policy;
pub mod tlog_proof;
pub mod verify;
pub mod witness;

pub use checkpoint::{Checkpoint, SigningKey, VerifierKey};
pub use event::{Event, EventError, EventType};
pub use hash::{Hash, HashAlg};
pub use rotation::KeyHistory;
pub use store::{
    ConsistencyProof, FileStore, InclusionProof, InitOptions, LedgerInfo, OpenReport, Receipt,
    SignedCheckpoint, Store, StoreError,
};
