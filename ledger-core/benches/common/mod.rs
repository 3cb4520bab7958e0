//! What both benches need: settings from the environment and a scratch directory.

/// A whole-number setting from the environment, or its default.
pub fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// A temporary directory under `BENCH_DIR`, or the system's temp dir (which must be
/// a real disk for fsync figures to mean anything).
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("bench dir")
}
