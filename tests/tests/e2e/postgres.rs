//! The `ledger` binary on a ledger kept in PostgreSQL (`ledger init --store`): every
//! command works as on the embedded store, and so does `ledger serve`.

use std::process::Command;

use ledger_tests::{in_ci, ledger, ledger_bin, ledger_ok, repo_root};

/// A fresh database on the LEDGER_TEST_PG server, as a URL; None (skip) off CI.
fn database() -> Option<(String, impl Drop)> {
    let Ok(base) = std::env::var("LEDGER_TEST_PG").map(|u| u.trim().to_string()) else {
        assert!(
            !in_ci(),
            "LEDGER_TEST_PG is not set: run the tests through ./scripts/test"
        );
        eprintln!("skipping: no PostgreSQL (set LEDGER_TEST_PG, or run ./scripts/test)");
        return None;
    };
    let name = format!(
        "ledger_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let admin = base.clone();
    let sql = move |q: String| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let base = admin.clone();
        rt.block_on(async move {
            let (c, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            c.batch_execute(&q).await.unwrap();
        });
    };
    sql(format!("CREATE DATABASE {name}"));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let url = format!("{}/{name}", &base[..end]);
    struct Dropper(Box<dyn Fn()>);
    impl Drop for Dropper {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let drop_it = Dropper(Box::new(move || {
        sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    }));
    Some((url, drop_it))
}

#[test]
fn every_command_works_on_a_postgres_ledger() {
    let Some((url, _db)) = database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pg-ledger");
    ledger_ok(
        &dir,
        &["init", "--origin", "ledger.example/pg-e2e", "--store", &url],
    );
    assert!(
        dir.join("store.json").exists() && !dir.join("log").exists(),
        "the log is in the database"
    );
    let sample = repo_root().join("samples/incident-2023.jsonl");
    let out = ledger_ok(&dir, &["append", sample.to_str().unwrap()]);
    assert!(out.lines().count() >= 200, "{out}");
    // Appending again is idempotent.
    let out = ledger_ok(&dir, &["--json", "append", sample.to_str().unwrap()]);
    assert!(
        out.lines().all(|l| l.contains("\"duplicate\":true")),
        "{out}"
    );
    assert!(ledger_ok(&dir, &["verify"]).starts_with("OK: 200 entries"));
    let h = ledger_ok(&dir, &["history", "POL-2022-00017"]);
    assert!(h.contains("sent"), "{h}");
    let proof = ledger_ok(&dir, &["prove", "inclusion", "--seq", "41"]);
    assert!(proof.contains("\"seq\": 41"), "{proof}");
    let lost = ledger_ok(
        &dir,
        &[
            "report",
            "lost",
            "--now",
            "2023-06-30T00:00:00Z",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        lost.lines().count(),
        11,
        "the sample's ten lost messages: {lost}"
    );
    let cp = ledger_ok(&dir, &["checkpoint"]);
    assert!(cp.starts_with("ledger.example/pg-e2e\n200\n"), "{cp}");
    // The same events on the embedded store give the same findings.
    let file_dir = tmp.path().join("file-ledger");
    ledger_ok(&file_dir, &["init", "--origin", "ledger.example/file"]);
    ledger_ok(&file_dir, &["append", sample.to_str().unwrap()]);
    let file_lost = ledger_ok(
        &file_dir,
        &[
            "report",
            "lost",
            "--now",
            "2023-06-30T00:00:00Z",
            "--format",
            "csv",
        ],
    );
    assert_eq!(lost, file_lost);
    // Commands that only make sense for the embedded store say so.
    let out = ledger(&dir, &["reindex"]);
    assert_eq!(out.status.code(), Some(2));
    // A second init over the same database is refused.
    let again = ledger(
        &tmp.path().join("other"),
        &["init", "--origin", "ledger.example/pg-e2e", "--store", &url],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a ledger"));

    // The server on the PostgreSQL ledger.
    let mut child = Command::new(ledger_bin())
        .arg("--dir")
        .arg(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("ledger serve: listening on ")
        .unwrap()
        .to_string();
    let token = ledger_ok(
        &dir,
        &[
            "token",
            "create",
            "--org",
            "948842327",
            "--scope",
            "ledger:write,ledger:read,ledger:audit",
        ],
    );
    let out = Command::new(ledger_bin())
        .args(["--server", &base, "--token", token.trim()])
        .args(["verify", "--key"])
        .arg(format!("@{}", dir.join("verifier.key").display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new(ledger_bin())
        .args([
            "--server",
            &base,
            "--token",
            token.trim(),
            "--json",
            "status",
            "POL-2022-00017",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
