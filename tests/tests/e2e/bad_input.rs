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
