//! Puts the resolved versions of the crates under test (from this crate's own
//! Cargo.lock) into the binary, so the result line says what was measured.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for (krate, var) in [
        ("cqrs-es", "V_CQRS_ES"),
        ("postgres-es", "V_POSTGRES_ES"),
        ("sqlx", "V_SQLX"),
        ("tokio", "V_TOKIO"),
    ] {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        let v = lock
            .find(&needle)
            .map(|i| {
                let rest = &lock[i + needle.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_else(|| "?".into());
        println!("cargo:rustc-env={var}={v}");
    }
}
