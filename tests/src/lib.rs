//! Helpers for the end-to-end tests: find (and build) the real `ledger` binary, run
//! it in a scratch directory, and make events.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `ledger` binary, built on first use (same profile as the tests).
pub fn ledger_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = dir.join("ledger");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "ledger-cli", "--bin", "ledger"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the ledger binary failed");
        assert!(bin.exists(), "no ledger binary at {}", bin.display());
        bin
    })
}

/// Runs `ledger --dir DIR ARGS…` and returns its output.
pub fn ledger(dir: &Path, args: &[&str]) -> Output {
    Command::new(ledger_bin())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run ledger")
}

/// Runs the binary, asserts the exit code, and returns stdout.
pub fn ledger_ok(dir: &Path, args: &[&str]) -> String {
    let out = ledger(dir, args);
    assert!(
        out.status.success(),
        "ledger {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A valid event as one JSON line.
pub fn event_line(id: &str, message: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"sent","message":"{message}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"974760673","system":"websak"}},"from":"974760673","to":"964338531","channel":"altinn","category":"bekymringsmelding","content_digest":"sha256:{}"}}"#,
        "ab".repeat(32)
    )
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// Whether this run is CI, where a missing tool is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Runs the binary (asserting success) and parses its stdout as JSON.
pub fn ledger_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = ledger_ok(dir, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ledger {args:?}: {e}\n{out}"))
}

/// The message ids of `ledger report KIND --format json ARGS…`, sorted.
pub fn report_ids(dir: &Path, kind: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["report", kind, "--format", "json"];
    all.extend_from_slice(args);
    message_ids(&ledger_json(dir, &all))
}

/// The sorted `message` ids of a report's JSON.
pub fn message_ids(report: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = report["rows"]
        .as_array()
        .expect("a report's rows")
        .iter()
        .map(|m| m["message"].as_str().expect("an id").to_string())
        .collect();
    v.sort();
    v
}

/// Runs `ledger reconcile --sent SENT --received RECEIVED ARGS…` in `dir`.
pub fn reconcile(dir: &Path, sent: &Path, received: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "reconcile",
        "--sent",
        sent.to_str().expect("utf-8 path"),
        "--received",
        received.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    ledger(dir, &all)
}

/// Starts `ledger --dir DIR serve --listen 127.0.0.1:0` (stderr to `DIR/serve.err`)
/// and returns the child and the base URL it printed.
pub fn serve(dir: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(ledger_bin())
        .arg("--dir")
        .arg(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("serve.err")).expect("serve.err"))
        .spawn()
        .expect("start ledger serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read the listening line");
    let base = line
        .trim()
        .strip_prefix("ledger serve: listening on ")
        .unwrap_or_else(|| {
            panic!(
                "unexpected first line {line:?}; stderr: {}",
                std::fs::read_to_string(dir.join("serve.err")).unwrap_or_default()
            )
        })
        .to_string();
    (child, base)
}

/// A `sent` event (from the police to a municipality, channel api) as JSON text.
pub fn sent_json(id: &str, message: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"sent","message":"{message}","at":"2023-05-08T09:30:00Z","reporter":{{"org":"974760673","system":"websak"}},"from":"974760673","to":"964338531","channel":"api","category":"document","content_digest":"sha256:{}"}}"#,
        "ab".repeat(32)
    )
}

/// The ids of every event recorded in the ledger in `dir`, read from an export.
pub fn recorded_event_ids(dir: &Path) -> std::collections::HashSet<String> {
    let out = tempfile::tempdir().expect("temp dir");
    let bundle = out.path().join("bundle");
    ledger_ok(
        dir,
        &["export", "--out", bundle.to_str().expect("utf-8 path")],
    );
    std::fs::read_to_string(bundle.join("entries.jsonl"))
        .expect("entries.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("an entry");
            v["event"]["id"].as_str().expect("an event id").to_string()
        })
        .collect()
}

/// Reads Server-Sent Events (event, id, data) from a stream response until `n` have
/// arrived or the stream ends (or a read times out).
pub fn read_sse(
    reader: &mut impl std::io::BufRead,
    n: usize,
) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    let (mut ev, mut id, mut data) = (String::new(), String::new(), String::new());
    while out.len() < n {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if !data.is_empty() {
                out.push((
                    ev.clone(),
                    id.clone(),
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                ));
            }
            ev.clear();
            data.clear();
        } else if let Some(x) = line.strip_prefix("event: ") {
            ev = x.to_string();
        } else if let Some(x) = line.strip_prefix("id: ") {
            id = x.to_string();
        } else if let Some(x) = line.strip_prefix("data: ") {
            data.push_str(x);
        }
    }
    out
}

/// Whether python3 and the packages the spec tests need are there. In CI their
/// absence fails the test; elsewhere it skips with a message.
pub fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import blake3, jsonschema, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !in_ci(),
            "python3 with blake3, jsonschema and cryptography is required in CI (scripts/test installs them)"
        );
        eprintln!(
            "SKIPPED: python3 with blake3, jsonschema, cryptography not found; run scripts/test to install them"
        );
    }
    ok
}

/// `python3 tests/spec/verify_receipt.py FILE --policy POLICY`: its exit code and
/// what it said (the second implementation of receipts, from the specs alone).
pub fn python_verify_receipt(file: &Path, policy: &Path) -> (Option<i32>, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/spec/verify_receipt.py"))
        .arg(file)
        .arg("--policy")
        .arg(policy)
        .output()
        .expect("run python3");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Copies a directory tree (a ledger that no process holds).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for e in std::fs::read_dir(from).expect("read the directory") {
        let e = e.expect("a directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("its type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy a file");
        }
    }
}

/// A new static token for `org` with `scopes` (comma-separated) in the ledger at
/// `dir`, through `ledger token create`: the token.
pub fn token(dir: &Path, org: &str, scopes: &str) -> String {
    let v = ledger_json(
        dir,
        &["--json", "token", "create", "--org", org, "--scope", scopes],
    );
    v["token"].as_str().expect("a token").to_string()
}

/// Stops a `ledger serve` (or `ledger witness serve`) as an operator would, with
/// SIGTERM, and waits for it.
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A process's stdout then stderr, as text (for assertions that show both).
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An HTTP client for tests: statuses are answers, not errors; 30 s at most a call.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}
