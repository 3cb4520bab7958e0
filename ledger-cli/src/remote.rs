//! `--server URL`: `history`, `status`, `report`, `checkpoint`, `prove` and `verify`
//! against a running `ledger serve` instead of a local directory. A remote `verify`
//! fetches every entry and signed checkpoint into a temporary bundle and verifies it
//! here, against a key the caller holds: nothing the server says is taken on trust.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::verify::{self, VerifyOptions};
use serde_json::{Value, json};

use crate::output;

/// A server and a token.
pub(crate) struct Remote {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Remote {
    pub(crate) fn new(
        url: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Remote> {
        let token = token.ok_or_else(|| {
            anyhow!(crate::InputError(
                "--server needs a token: --token or LEDGER_TOKEN (see `ledger token create`)"
                    .into()
            ))
        })?;
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("read --ca-cert {}", path.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    anyhow!(crate::InputError(format!(
                        "--ca-cert {}: not PEM certificates: {e}",
                        path.display()
                    )))
                })?;
            if certs.is_empty() {
                bail!(crate::InputError(format!(
                    "--ca-cert {}: holds no certificate",
                    path.display()
                )));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            auth: format!("Bearer {token}"),
            agent: config.build().into(),
        })
    }

    /// GET `path` (with its query), the body as text; an error status is an error
    /// carrying the server's message.
    fn get_text(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .get(&url)
            .header("Authorization", &self.auth)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .with_context(|| format!("GET {url}: reading the answer"))?;
        if status != 200 {
            let why = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            let err = anyhow!("{url}: HTTP {status}: {why}");
            return Err(if (400..500).contains(&status) {
                anyhow!(crate::InputError(err.to_string()))
            } else {
                err
            });
        }
        Ok(body)
    }

    fn get(&self, path: &str) -> Result<Value> {
        let text = self.get_text(path)?;
        serde_json::from_str(&text).with_context(|| format!("{path}: the answer is not JSON"))
    }
}

pub(crate) use ledger_core::questions::url_component as enc;

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn history_rows(v: &Value) -> Vec<output::HistoryRow> {
    v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| output::HistoryRow {
            seq: e["seq"].as_u64().unwrap_or_default(),
            recorded_at: e["recorded_at"].as_str().unwrap_or_default().to_string(),
            hash: String::new(),
            event: e["event"].clone(),
        })
        .collect()
}

pub(crate) fn history(r: &Remote, message: &str, as_json: bool) -> Result<u8> {
    let v = r.get(&format!("/v1/messages/{}", enc(message)))?;
    if as_json {
        output::json(&json!({"message": message, "entries": v["history"]}))?;
    } else {
        println!("{}", output::history_table(&history_rows(&v)));
    }
    Ok(0)
}

pub(crate) fn status(
    r: &Remote,
    message: &str,
    when: &crate::questions::When,
    as_json: bool,
) -> Result<u8> {
    let v = r.get(&format!(
        "/v1/messages/{}{}",
        enc(message),
        query(&[
            ("as_of", when.as_of.clone()),
            ("known_at", when.known_at.clone()),
            ("now", when.now.clone()),
            ("at_checkpoint", when.at_checkpoint.map(|n| n.to_string())),
        ])
    ))?;
    if as_json {
        output::json(&v)?;
        return Ok(0);
    }
    let e = &v["evaluation"];
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    println!("message    {message}");
    println!(
        "verdict    {} ({}){}",
        s(&e["verdict"]),
        s(&e["reason"]),
        e["due"]
            .as_str()
            .map(|d| format!(", due {d}"))
            .unwrap_or_default()
    );
    println!("status     {}", s(&v["status"]));
    println!(
        "sent       {} {} → {} via {} ({})",
        s(&e["origin_at"]),
        s(&e["from"]),
        s(&e["to"]),
        s(&e["channel"]),
        s(&e["category"])
    );
    println!(
        "as known   {} entries, judged at {}",
        v["covered"],
        s(&v["now"])
    );
    println!("{}", output::history_table(&history_rows(&v)));
    Ok(0)
}

pub(crate) fn report(
    r: &Remote,
    kind: &str,
    params: Vec<(&str, Option<String>)>,
    format: crate::questions::Format,
    as_json: bool,
) -> Result<u8> {
    let v = r.get(&format!("/v1/reports/{kind}{}", query(&params)))?;
    if as_json || format == crate::questions::Format::Json {
        output::json(&v)?;
        return Ok(0);
    }
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let cell = |x: &Value| match x {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    use ledger_core::report_table::{
        ANOMALY_COLUMNS, INCIDENT_COLUMNS, LATE_COLUMNS, REPORT_COLUMNS,
    };
    let anomalies = kind == "anomalies";
    let incidents = v["report"] == "incidents";
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            if anomalies {
                return ANOMALY_COLUMNS.iter().map(|k| cell(&r[*k])).collect();
            }
            if v["report"] == "reported_late" {
                return LATE_COLUMNS
                    .iter()
                    .map(|k| match *k {
                        "reporter" => format!(
                            "{}/{}",
                            cell(&r["reporter_org"]),
                            cell(&r["reporter_system"])
                        ),
                        k => cell(&r[k]),
                    })
                    .collect();
            }
            if incidents {
                return INCIDENT_COLUMNS
                    .iter()
                    .map(|k| match *k {
                        "evidence" => r[*k]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(cell)
                            .collect::<Vec<_>>()
                            .join(" "),
                        k => cell(&r[k]),
                    })
                    .collect();
            }
            REPORT_COLUMNS
                .iter()
                .map(|k| match *k {
                    "sent_at" => cell(&r["origin_at"]),
                    "anomalies" => (r["recorded_anomalies"].as_u64().unwrap_or(0)
                        + r["evaluated_anomalies"]
                            .as_array()
                            .map_or(0, |a| a.len() as u64))
                    .to_string(),
                    k => cell(&r[k]),
                })
                .collect()
        })
        .collect();
    let header: &[&str] = if anomalies {
        &ANOMALY_COLUMNS
    } else if v["report"] == "reported_late" {
        &LATE_COLUMNS
    } else if incidents {
        &INCIDENT_COLUMNS
    } else {
        &REPORT_COLUMNS
    };
    crate::questions::print_rows(format, header, table)?;
    eprintln!("{} rows, judged at {}", rows.len(), cell(&v["now"]));
    Ok(0)
}

pub(crate) fn checkpoint(r: &Remote, size: Option<u64>, as_json: bool) -> Result<u8> {
    let note = match size {
        None => r.get_text("/v1/checkpoint")?,
        Some(n) => r.get(&format!("/v1/checkpoints?size={n}"))?["checkpoints"][0]["note"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    if as_json {
        output::json(&json!({ "note": note }))?;
    } else {
        print!("{note}");
    }
    Ok(0)
}

/// Fetches a proof and checks it here before printing it.
pub(crate) fn prove(r: &Remote, path: &str) -> Result<u8> {
    let v = r.get(path)?;
    let alg: ledger_core::HashAlg = v["hash"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow!("the server names an unknown hash: {e}"))?;
    let h = |x: &Value| -> Result<ledger_core::Hash> {
        let bytes = hex::decode(x.as_str().unwrap_or_default())?;
        bytes
            .try_into()
            .map_err(|_| anyhow!("a hash of the wrong length"))
    };
    let path_hashes = v["path"]
        .as_array()
        .into_iter()
        .flatten()
        .map(h)
        .collect::<Result<Vec<_>>>()?;
    let n = |k: &str| v[k].as_u64().unwrap_or_default();
    let checked = if v.get("leaf_hash").is_some() {
        ledger_core::InclusionProof {
            seq: n("seq"),
            size: n("size"),
            leaf_hash: h(&v["leaf_hash"])?,
            root: h(&v["root"])?,
            path: path_hashes,
        }
        .verify(alg)
    } else {
        ledger_core::ConsistencyProof {
            from: n("from"),
            to: n("to"),
            from_root: h(&v["from_root"])?,
            to_root: h(&v["to_root"])?,
            path: path_hashes,
        }
        .verify(alg)
    };
    checked.map_err(|e| anyhow!("the server's proof does not verify: {e}"))?;
    output::json(&v)?;
    Ok(0)
}

/// Downloads every entry and checkpoint into a temporary bundle and verifies it here.
pub(crate) fn verify(r: &Remote, opts: &VerifyOptions, as_json: bool) -> Result<u8> {
    let info = r.get("/v1/ledger")?;
    let newest = r.get_text("/v1/checkpoint")?;
    let mut notes = Vec::new();
    let mut from = 0u64;
    loop {
        let page = r.get(&format!("/v1/checkpoints?from={from}&limit=1000"))?;
        let list = page["checkpoints"].as_array().cloned().unwrap_or_default();
        let Some(last) = list.last() else { break };
        from = last["size"].as_u64().unwrap_or(u64::MAX).saturating_add(1);
        let more = list.len() == 1000;
        notes.extend(list);
        if !more {
            break;
        }
    }
    let size = notes
        .iter()
        .filter(|n| n["note"].as_str() == Some(newest.as_str()))
        .filter_map(|n| n["size"].as_u64())
        .next()
        .context("the newest checkpoint is not among the server's checkpoints")?;
    let tmp = tempfile::tempdir().context("make a temporary directory")?;
    let dir = tmp.path().join("bundle");
    std::fs::create_dir(&dir)?;
    let bar = output::progress_count("downloading entries");
    bar.0.set_length(size);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("entries.jsonl"))?);
        let mut at = 0u64;
        while at < size {
            let text = r.get_text(&format!("/v1/entries?from={at}&limit=10000"))?;
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                bail!("the server returned no entries from seq {at} (its checkpoint says {size})");
            }
            for l in lines.iter().take((size - at) as usize) {
                f.write_all(l.as_bytes())?;
                f.write_all(b"\n")?;
            }
            at += lines.len() as u64;
            bar.0.set_position(at.min(size));
        }
        f.flush()?;
    }
    bar.0.finish_and_clear();
    std::fs::write(
        dir.join("ledger.json"),
        serde_json::to_vec(&json!({
            "format": info["format"], "origin": info["origin"], "hash": info["hash"]
        }))?,
    )?;
    std::fs::write(dir.join("checkpoint"), &newest)?;
    let earlier: Vec<&str> = notes
        .iter()
        .filter(|n| n["size"].as_u64().is_some_and(|s| s < size))
        .filter_map(|n| n["note"].as_str())
        .collect();
    std::fs::write(dir.join("checkpoints.txt"), earlier.join("\n"))?;
    std::fs::write(
        dir.join("verifier.key"),
        format!(
            "{}\n",
            info["key_history"]
                .as_str()
                .or(info["verifier_key"].as_str())
                .unwrap_or_default()
        ),
    )?;
    if opts.key.is_none() {
        eprintln!(
            "warning: no --key given: checking signatures with the key the server itself reports; \
             pass the key you were given to check it is the ledger you trust"
        );
    }
    let bar = output::progress_bytes("verifying");
    let report = verify::verify_bundle(&dir, opts, &bar).context("verification could not run")?;
    bar.0.finish_and_clear();
    output::verify_report(&report, as_json)?;
    Ok(if report.ok() { 0 } else { crate::EXIT_FAULTS })
}
