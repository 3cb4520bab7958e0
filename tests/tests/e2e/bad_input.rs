//! Bad input is refused line by line, and nothing of a file with a bad line is
//! appended (the documented choice: check everything first, then append).

use ledger_tests::{event_line, ledger, ledger_ok};

fn append_err(d: &std::path::Path, content: &str) -> String {
    let f = d.parent().unwrap().join("bad.jsonl");
    std::fs::write(&f, content).unwrap();
    let out = ledger(d, &["append", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn one_bad_line_in_ten_thousand_names_the_line_and_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "t.example/log"]);
    let mut lines: Vec<String> = (0..10_000)
        .map(|i| event_line(&format!("e{i}"), "M"))
        .collect();
    lines[4999] = lines[4999].replace("\"to\":\"964338531\"", "\"to\":\"964338532\"");
    let err = append_err(&d, &lines.join("\n"));
    assert!(err.contains("line 5000: field `to`"), "{err}");
    assert!(err.contains("check digit"), "{err}");
    assert!(err.contains("nothing was appended"), "{err}");
    assert!(ledger_ok(&d, &["checkpoint"]).starts_with("t.example/log\n0\n"));
}

#[test]
fn each_kind_of_bad_line_gets_a_specific_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "t.example/log"]);
    let good = event_line("ok", "M");
    let cases = [
        ("{\"id\": \"x\",", "malformed JSON"),
        (
            &good.replace("\"channel\":\"altinn\"", "\"channel\":7"),
            "field `channel`: expected a string",
        ),
        (
            &good.replace("\"id\":\"ok\"", "\"id\":\"ok\",\"colour\":\"red\""),
            "field `colour`: unknown field",
        ),
        (
            &good.replace("\"org\":\"974760673\"", "\"org\":\"97476067\""),
            "field `reporter.org`",
        ),
        (
            &good.replace(
                "\"system\":\"websak\"}",
                "\"system\":\"websak\",\"seq\":1.5}",
            ),
            "not allowed",
        ),
        (
            &good.replace(
                "\"message\":\"M\"",
                &format!("\"message\":\"{}\"", "x".repeat(70_000)),
            ),
            "limit",
        ),
        (
            &good.replace("\"type\":\"sent\"", "\"type\":\"teleported\""),
            "field `type`",
        ),
    ];
    for (line, want) in cases {
        let content = format!("{good}\n{line}\n");
        let err = append_err(&d, &content);
        assert!(
            err.contains("line 2") && err.contains(want),
            "want {want:?} in:\n{err}"
        );
    }
    // A conflict with an already recorded event is named too.
    let f = tmp.path().join("one.jsonl");
    std::fs::write(&f, &good).unwrap();
    ledger_ok(&d, &["append", f.to_str().unwrap()]);
    let err = append_err(&d, &good.replace("\"message\":\"M\"", "\"message\":\"N\""));
    assert!(
        err.contains("already recorded at seq 0 with different content"),
        "{err}"
    );
}

/// Runs `ledger ARGS` to its end and returns its exit code, stderr and peak memory
/// (KiB), measured for that process alone (`wait4`).
fn run_measured(
    d: &std::path::Path,
    args: &[&str],
    stdin: Option<&std::path::Path>,
) -> (i32, String, i64) {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = std::process::Command::new(ledger_tests::ledger_bin());
    cmd.arg("--dir").arg(d).args(args);
    if let Some(f) = stdin {
        cmd.stdin(std::fs::File::open(f).unwrap());
    }
    let err_file = d.parent().unwrap().join("stderr.txt");
    cmd.stderr(std::fs::File::create(&err_file).unwrap());
    cmd.stdout(std::process::Stdio::null());
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = cmd.spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else waits for.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32);
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (
        code,
        std::fs::read_to_string(err_file).unwrap(),
        usage.ru_maxrss,
    )
}

#[test]
fn an_oversized_line_is_refused_without_reading_it_into_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    ledger_ok(&d, &["init", "--origin", "t.example/log"]);
    // A 64 MiB line between two good ones, from a file and from stdin.
    let f = tmp.path().join("huge.jsonl");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
        writeln!(w, "{}", event_line("ok-1", "M")).unwrap();
        w.write_all(br#"{"id":"big","note":""#).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"\"}\n").unwrap();
        writeln!(w, "{}", event_line("ok-2", "M")).unwrap();
    }
    for stdin in [false, true] {
        let (code, err, rss_kib) = if stdin {
            run_measured(&d, &["append", "-"], Some(&f))
        } else {
            run_measured(&d, &["append", f.to_str().unwrap()], None)
        };
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("line 2: the line is"), "{err}");
        assert!(err.contains("at most 65536 bytes"), "{err}");
        // Far below the line's 64 MiB: it was never held whole.
        assert!(
            rss_kib < 48 * 1024,
            "peak RSS {rss_kib} KiB (stdin: {stdin})"
        );
    }
    let cp: serde_json::Value =
        serde_json::from_str(&ledger_ok(&d, &["checkpoint", "--json"])).unwrap();
    assert_eq!(cp["size"], 0, "nothing was appended");
}
