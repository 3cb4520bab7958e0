//! What the benches share: settings from the environment, a scratch directory and
//! the store bench's mix of events.

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
#[allow(dead_code)] // not every bench uses it
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("bench dir")
}

/// A realistic mix of format-1 events as JSON lines: every message is sent,
/// delivered and opened, and a quarter are also handed off and received, so events
/// per message ≈ 3.5.
#[allow(dead_code)] // not every bench uses it
pub fn event_lines(n: u64) -> Vec<String> {
    let mut out = Vec::with_capacity(n as usize);
    let mut m = 0u64;
    while (out.len() as u64) < n {
        let msg = format!("MSG-2023-{m:08}");
        let at = format!(
            "2023-{:02}-{:02}T09:{:02}:00Z",
            1 + m % 12,
            1 + m % 28,
            m % 60
        );
        let reporter = r#""reporter":{"org":"974760673","system":"websak"}"#;
        let mut lines = vec![format!(
            r#"{{"id":"ev-{m}-0","type":"sent","message":"{msg}","at":"{at}",{reporter},"from":"974760673","to":"964338531","channel":"altinn","category":"bekymringsmelding","content_digest":"blake3:{:064x}","refs":{{"altinn":"a1b2c3d4-{m:012}"}}}}"#,
            m
        )];
        lines.push(format!(
            r#"{{"id":"ev-{m}-1","type":"delivered","message":"{msg}","at":"{at}",{reporter}}}"#
        ));
        if m.is_multiple_of(4) {
            lines.push(format!(
                r#"{{"id":"ev-{m}-2","type":"handed_off","message":"{msg}","at":"{at}",{reporter},"from_system":"altinn-innboks","to_system":"familia"}}"#
            ));
            lines.push(format!(
                r#"{{"id":"ev-{m}-3","type":"received","message":"{msg}","at":"{at}","reporter":{{"org":"964338531","system":"familia"}},"system":"familia","journal_ref":"2023/{m}-1"}}"#
            ));
        }
        lines.push(format!(
            r#"{{"id":"ev-{m}-4","type":"opened","message":"{msg}","at":"{at}","reporter":{{"org":"964338531","system":"familia"}},"by_role":"saksbehandler"}}"#
        ));
        for l in lines {
            if (out.len() as u64) < n {
                out.push(l);
            }
        }
        m += 1;
    }
    out
}
