//! Every limit the ledger enforces, in one place.
//!
//! A limit protects the append path and the readers of the log from input that
//! would make them slow or unbounded. Units come last in the names.

/// Largest canonical event (the `event` object of an entry), in bytes.
pub const EVENT_BYTES_MAX: usize = 64 * 1024;

/// Largest stored entry: the event plus the entry envelope.
pub const ENTRY_BYTES_MAX: usize = EVENT_BYTES_MAX + 512;

/// Longest event id and message id, in characters.
pub const ID_CHARS_MAX: usize = 128;

/// Longest reporter system name, hand-off system name or role, in characters.
pub const NAME_CHARS_MAX: usize = 128;

/// Longest free-text field (`error`, `reason`, `note`, `journal_ref`), in characters.
pub const TEXT_CHARS_MAX: usize = 2048;

/// Most entries in the `refs` map of a `sent` event.
pub const REFS_COUNT_MAX: usize = 16;

/// Deepest nesting of JSON objects and arrays in an event.
pub const JSON_DEPTH_MAX: usize = 8;

/// Most events one writer batch takes before it commits.
pub const BATCH_EVENTS_MAX: usize = 16 * 1024;

/// Canonical event bytes in one commit group (one write and `fdatasync`, or one
/// transaction); a single request larger than this is a group of its own.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Size at which a segment file is sealed and a new one started, in bytes.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Integers in events must be below this (2^53): JCS writes numbers as IEEE doubles.
pub const JSON_INT_MAX: u64 = 1 << 53;

/// Longest origin (the log's name), in bytes.
pub const ORIGIN_BYTES_MAX: usize = 256;

/// How often, at most, the writer signs a checkpoint while appends keep coming, in ms.
/// When the writer falls idle it signs at once.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1000;

/// How often, at most, the newest appends' index entries are flushed from memory to
/// the derived index on disk, in ms; and the idle time after which the writer
/// flushes. Until then readers find them in memory; after a crash the index catches
/// up from the log.
pub const INDEX_FLUSH_INTERVAL_MS: u64 = 1000;

/// Most appended entries held in memory before the index is flushed.
pub const INDEX_FLUSH_ENTRIES: usize = 64 * 1024;
