//! The `ledger` binary on a ledger kept in PostgreSQL (`ledger init --store`): every
//! command works as on the embedded store, and so does `ledger serve`.

use std::process::Command;

use ledger_tests::{in_ci, ledger, ledger_bin, ledger_ok, repo_root};

/// A fresh database on the LEDGER_TEST_PG server, as a URL; None (skip) off CI.
pub(crate) fn database() -> Option<(String, impl Drop)> {
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
    // A backup reads a PostgreSQL ledger through the same store interface, and
    // restores into an embedded one (the way off a lost database).
    let backup = tmp.path().join("pg-backup");
    ledger_ok(&dir, &["backup", "--to", backup.to_str().unwrap()]);
    let restored = tmp.path().join("pg-restored");
    ledger_ok(
        &dir,
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--into",
            restored.to_str().unwrap(),
        ],
    );
    let key = format!("@{}", dir.join("verifier.key").display());
    assert!(ledger_ok(&restored, &["verify", "--key", &key]).starts_with("OK: 200 entries"));
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
    let (mut child, base) = ledger_tests::serve(&dir);
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

/// A PostgreSQL ledger in `dir` on `url`, and a writer's token for it.
fn writer_ledger(dir: &std::path::Path, origin: &str, url: &str) -> String {
    ledger_ok(dir, &["init", "--origin", origin, "--store", url]);
    let token = ledger_ok(
        dir,
        &[
            "token",
            "create",
            "--org",
            "974760673",
            "--scope",
            "ledger:write,ledger:read",
        ],
    );
    token.trim().to_string()
}

fn post(base: &str, token: &str, body: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    agent
        .post(&format!("{base}/v1/events"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn the_writer_lease_moves_when_the_writer_dies_and_nothing_acknowledged_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some((url, _db)) = database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let token = writer_ledger(&a, "ledger.example/ha", &url);
    // A second server's directory: the same key, database and tokens.
    let b = tmp.path().join("b");
    std::fs::create_dir(&b).unwrap();
    for f in ["signing.key", "verifier.key", "store.json", "tokens.json"] {
        std::fs::copy(a.join(f), b.join(f)).unwrap();
    }
    let dirs = [a.clone(), b.clone()];
    let servers: Arc<Mutex<Vec<(std::process::Child, String)>>> = Arc::new(Mutex::new(vec![
        ledger_tests::serve(&a),
        ledger_tests::serve(&b),
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A client writing one event at a time; on a refusal or a dead server it retries
    // the same event (same id) at the other server.
    let client = {
        let (servers, stop, token, count) =
            (servers.clone(), stop.clone(), token.clone(), count.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut target = 0usize;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("ha-{i}");
                let body = ledger_tests::sent_json(&id, &format!("HA-{i}"));
                let base = servers.lock().unwrap()[target % 2].1.clone();
                match post(&base, &token, &body) {
                    Some(200) => {
                        acked.push(id);
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    _ => {
                        target += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            }
            acked
        })
    };
    // Kill whichever server writes, three times; bring it back as a reader.
    let mut progress = Vec::new();
    for round in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        progress.push(count.load(Ordering::Relaxed));
        let leader = round % 2; // a started first and leads; then b took over; then a
        let mut s = servers.lock().unwrap();
        let _ = Command::new("kill")
            .args(["-KILL", &s[leader].0.id().to_string()])
            .status();
        let _ = s[leader].0.wait();
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let fresh = ledger_tests::serve(&dirs[leader]);
        servers.lock().unwrap()[leader] = fresh;
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    progress.push(count.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    let acked = client.join().unwrap();
    for (mut c, _) in servers.lock().unwrap().drain(..) {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    assert!(
        acked.len() > 50,
        "writes went on: {} acknowledged",
        acked.len()
    );
    // Every acknowledged event is in the log once, the chain verifies, and no fork.
    let out = ledger_ok(&a, &["verify"]);
    assert!(out.starts_with("OK"), "{out}");
    let ids = ledger_tests::recorded_event_ids(&a);
    let size = ledger_tests::ledger_json(&a, &["--json", "checkpoint"])["size"]
        .as_u64()
        .unwrap();
    assert_eq!(ids.len() as u64, size, "no event recorded twice");
    for id in &acked {
        assert!(ids.contains(id), "acknowledged {id} is missing");
    }
    // Writes resumed after every fail-over (acknowledgements between each kill).
    assert!(
        progress.windows(2).all(|w| w[1] > w[0]),
        "acknowledged so far, before each kill and at the end: {progress:?}"
    );
    eprintln!("fail-over: acknowledged {progress:?}");
}

/// A PostgreSQL cluster of this test's own (initdb + pg_ctl, as the postgres user when
/// we are root), so it can be stopped and started without touching other tests.
struct OwnCluster {
    bin: std::path::PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl OwnCluster {
    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start() -> Option<OwnCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let data = tempfile::tempdir().ok()?;
        if is_root() {
            Command::new("chown")
                .arg("postgres")
                .arg(data.path())
                .status()
                .ok()?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let c = OwnCluster { bin, data, port };
        let d = c.data.path().to_str()?.to_string();
        if !c.run("initdb", &["-D", &d, "-U", "postgres", "-A", "trust"]) {
            return None;
        }
        c.up().then_some(c)
    }

    fn up(&self) -> bool {
        let d = self.data.path().to_str().unwrap();
        let opts = format!("-p {} -k {d} -c listen_addresses=127.0.0.1", self.port);
        self.run(
            "pg_ctl",
            &[
                "-D",
                d,
                "-o",
                &opts,
                "-l",
                &format!("{d}/log"),
                "-w",
                "start",
            ],
        )
    }

    fn down(&self) -> bool {
        let d = self.data.path().to_str().unwrap();
        self.run("pg_ctl", &["-D", d, "-m", "fast", "-w", "stop"])
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.down();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn a_database_restart_is_answered_503_and_loses_nothing_acknowledged() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some(pg) = OwnCluster::start() else {
        assert!(
            !in_ci(),
            "no PostgreSQL cluster could be started (initdb, pg_ctl)"
        );
        eprintln!("skipping: cannot start a PostgreSQL cluster of its own here");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l");
    let token = writer_ledger(&dir, "ledger.example/restart", &pg.url());
    let (mut server, base) = ledger_tests::serve(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, count, unavailable, token, base) = (
            stop.clone(),
            count.clone(),
            unavailable.clone(),
            token.clone(),
            base.clone(),
        );
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("rs-{i}");
                let body = ledger_tests::sent_json(&id, &format!("RS-{i}"));
                match post(&base, &token, &body) {
                    Some(200) => {
                        acked.push(id);
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Some(503) => {
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    other => panic!("unexpected answer {other:?} for {id}"),
                }
            }
            acked
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let before = count.load(Ordering::Relaxed);
    assert!(pg.down(), "stop the database");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let during = count.load(Ordering::Relaxed);
    assert!(pg.up(), "start the database again");
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let after = count.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let acked = client.join().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    assert!(before > 0, "writes before the restart");
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "503 while the database was down"
    );
    assert!(
        during <= before + 64,
        "(next to) nothing acknowledged while it was down: {before} → {during}"
    );
    assert!(
        after > during,
        "writes resumed after it came back: {during} → {after}"
    );
    let ids = ledger_tests::recorded_event_ids(&dir);
    for id in &acked {
        assert!(
            ids.contains(id),
            "acknowledged {id} is missing after the restart"
        );
    }
    assert!(ledger_ok(&dir, &["verify"]).starts_with("OK"));
}

/// `ledger migrate --from FROM --to TO [--into INTO]`, run in `cwd`.
fn migrate(
    cwd: &std::path::Path,
    from: &std::path::Path,
    to: &str,
    into: Option<&std::path::Path>,
) -> std::process::Output {
    let mut args = vec!["migrate", "--from", from.to_str().unwrap(), "--to", to];
    if let Some(i) = into {
        args.extend(["--into", i.to_str().unwrap()]);
    }
    ledger(cwd, &args)
}

/// [`migrate`], which must succeed: what it printed.
fn migrate_ok(
    cwd: &std::path::Path,
    from: &std::path::Path,
    to: &str,
    into: Option<&std::path::Path>,
) -> String {
    let out = migrate(cwd, from, to, into);
    let text = ledger_tests::output_text(&out);
    assert!(out.status.success(), "migrate failed:\n{text}");
    text
}

/// Appends one event (`id`, about `message`) to the ledger in `dir`.
fn append_event(dir: &std::path::Path, id: &str, message: &str) {
    let file = dir.with_extension(format!("{id}.jsonl"));
    std::fs::write(&file, ledger_tests::event_line(id, message) + "\n").unwrap();
    ledger_ok(dir, &["append", file.to_str().unwrap()]);
}

#[test]
fn migrate_copies_to_postgres_and_back_byte_for_byte() {
    let Some((url, _db)) = database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("embedded");
    ledger_ok(&src, &["init", "--origin", "ledger.example/migrate"]);
    let sample = repo_root().join("samples/incident-2023.jsonl");
    ledger_ok(&src, &["append", sample.to_str().unwrap()]);
    let pg = tmp.path().join("pg");
    let out = migrate_ok(tmp.path(), &src, &url, Some(&pg));
    assert!(out.contains("copied 200 entries"), "{out}");
    // The copy is the same ledger: same checkpoint, same key, verifies, same reports.
    assert_eq!(
        ledger_ok(&pg, &["checkpoint"]),
        ledger_ok(&src, &["checkpoint"])
    );
    assert!(
        ledger_ok(
            &pg,
            &[
                "verify",
                "--key",
                &format!("@{}", src.join("verifier.key").display())
            ]
        )
        .starts_with("OK")
    );
    let lost = |d: &std::path::Path| {
        ledger_ok(
            d,
            &[
                "report",
                "lost",
                "--now",
                "2023-06-30T00:00:00Z",
                "--format",
                "csv",
            ],
        )
    };
    assert_eq!(lost(&pg), lost(&src));
    // It keeps working: appends continue the chain on PostgreSQL.
    append_event(&pg, "after-migrate", "M-AFTER");
    // And back to a new embedded directory.
    let back = tmp.path().join("back");
    let out = migrate_ok(tmp.path(), &pg, back.to_str().unwrap(), None);
    assert!(out.contains("copied 201 entries"), "{out}");
    assert!(ledger_ok(&back, &["verify"]).starts_with("OK: 201 entries"));
    assert_eq!(
        ledger_ok(&back, &["checkpoint"]),
        ledger_ok(&pg, &["checkpoint"])
    );
    // A target database that already holds a ledger is refused.
    let again = migrate(tmp.path(), &src, &url, Some(&tmp.path().join("x")));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a ledger"));
}

/// A ledger whose key was replaced (FORMAT.md §17) moves to PostgreSQL and back: the
/// key entry and the new key's checkpoints come along, it verifies under the key
/// history there, and appends go on, signed by the new key.
#[test]
fn a_rotated_ledger_moves_to_postgres_and_back() {
    let Some((url, _db)) = database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("embedded");
    ledger_ok(&src, &["init", "--origin", "ledger.example/rotated-pg"]);
    let sample = repo_root().join("samples/incident-2023.jsonl");
    ledger_ok(&src, &["append", sample.to_str().unwrap()]);
    std::fs::remove_file(src.join("signing.key")).unwrap();
    let rekeyed = tmp.path().join("rekeyed");
    ledger_ok(
        tmp.path(),
        &[
            "restore",
            "--from",
            src.to_str().unwrap(),
            "--into",
            rekeyed.to_str().unwrap(),
            "--new-key",
            "lost",
        ],
    );
    let history = format!("@{}", rekeyed.join("verifier.key").display());
    let pg = tmp.path().join("pg");
    let out = migrate_ok(tmp.path(), &rekeyed, &url, Some(&pg));
    assert!(out.contains("copied 201 entries"), "{out}");
    let v = ledger_ok(&pg, &["verify", "--key", &history]);
    assert!(v.starts_with("OK: 201 entries"), "{v}");
    append_event(&pg, "after-rotation", "M-ROT");
    let v = ledger_ok(&pg, &["verify", "--key", &history]);
    assert!(v.starts_with("OK: 202 entries"), "{v}");
    let h = ledger_ok(&pg, &["--json", "history", "M-ROT"]);
    assert!(h.contains("after-rotation"), "{h}");
    let back = tmp.path().join("back");
    migrate_ok(tmp.path(), &pg, back.to_str().unwrap(), None);
    let v = ledger_ok(&back, &["verify", "--key", &history]);
    assert!(v.starts_with("OK: 202 entries"), "{v}");
    assert_eq!(
        ledger_ok(&back, &["checkpoint"]),
        ledger_ok(&pg, &["checkpoint"])
    );
}
