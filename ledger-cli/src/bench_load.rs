//! `ledger bench-load`: a load generator for `ledger serve`, over real HTTP. Clients
//! are tasks on one thread (each with its own keep-alive connection, so the generator
//! leaves the machine's cores to the server); they post events or read messages for a
//! fixed time, and it reports throughput and latency percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use serde_json::json;

use crate::InputError;

/// What `bench-load` runs.
#[derive(Args)]
pub(crate) struct LoadArgs {
    /// The token's organisation (the events' reporter and sender).
    #[arg(long, value_name = "ORGNR")]
    org: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Read instead: GET /v1/messages/{id} of messages written first (one batch per client).
    #[arg(long, conflicts_with = "receipts")]
    read: bool,
    /// Receipts instead: GET /v1/receipts?seq=N (a c2sp.org/tlog-proof each) of events
    /// written first (one batch per client).
    #[arg(long)]
    receipts: bool,
    /// A label for the run in the output.
    #[arg(long, default_value = "run")]
    label: String,
}

/// A number in letters (base 26, `a` = 0): generated ids must hold no run of digits,
/// or some would look like a national identity number, which admission rightly
/// refuses (a load run once counted those refusals as unexplained errors).
fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

fn event(org: &str, run: &str, client: usize, n: u64) -> serde_json::Value {
    let (c, n) = (letters(client as u64), letters(n));
    json!({
        "id": format!("load-{run}-{c}-{n}"),
        "type": "sent",
        "message": format!("LOAD-{run}-{c}-{n}"),
        "at": "2023-05-08T09:30:00Z",
        "reporter": {"org": org, "system": "bench-load"},
        "from": org,
        "to": "964338531",
        "channel": "api",
        "category": "document",
        "content_digest": format!("sha256:{}", "ab".repeat(32)),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// One request; (status, body). Errors are connection failures.
async fn send(
    client: &Client,
    method: hyper::Method,
    url: &str,
    auth: &str,
    body: Option<String>,
) -> Result<(u16, bytes::Bytes)> {
    use http_body_util::BodyExt;
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.unwrap_or_default(),
        )))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Runs the load against `server` (--server) with `token` (--token, needs
/// ledger:write, and ledger:read for --read).
pub(crate) fn run(
    a: LoadArgs,
    server: Option<&str>,
    token: Option<&str>,
    as_json: bool,
) -> Result<u8> {
    let (Some(server), Some(token)) = (server, token) else {
        return Err(anyhow!(InputError(
            "bench-load needs --server URL and --token TOKEN (or LEDGER_SERVER, LEDGER_TOKEN)"
                .into()
        )));
    };
    if a.clients == 0 || a.batch == 0 || a.seconds == 0 {
        return Err(anyhow!(InputError(
            "--clients, --batch and --seconds must be at least 1".into()
        )));
    }
    if !server.starts_with("http://") {
        return Err(anyhow!(InputError(format!(
            "--server {server:?}: give an http:// address (the load generator speaks plain HTTP)"
        ))));
    }
    // One thread: the generator should leave the machine's cores to the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(drive(a, server.to_string(), token.to_string(), as_json))
}

async fn drive(a: LoadArgs, server: String, token: String, as_json: bool) -> Result<u8> {
    let base = server.trim_end_matches('/').to_string();
    let run = letters(
        u64::from(std::process::id()) * 1_000_000
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| (d.as_millis() % 1_000_000) as u64),
    );
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(a.clients)
            .build(http);
    let auth = format!("Bearer {token}");
    let events_url = format!("{base}/v1/events");

    // For --read and --receipts: each client first writes the messages it will read;
    // `targets` are the URLs it then asks for.
    let reading = a.read || a.receipts;
    let mut targets: Vec<Vec<String>> = Vec::new();
    if reading {
        for c in 0..a.clients {
            let evs: Vec<_> = (0..100).map(|n| event(&a.org, &run, c, n)).collect();
            let (st, body) = send(
                &client,
                hyper::Method::POST,
                &events_url,
                &auth,
                Some(serde_json::to_string(&evs)?),
            )
            .await?;
            if st != 200 {
                return Err(anyhow!(
                    "seeding the messages to read: HTTP {st}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            let answer: serde_json::Value = serde_json::from_slice(&body)?;
            targets.push(if a.receipts {
                answer["receipts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{base}/v1/receipts?seq={}", r["seq"]))
                    .collect()
            } else {
                evs.iter()
                    .map(|e| {
                        format!(
                            "{base}/v1/messages/{}",
                            e["message"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            });
        }
        // The projector follows the log, and a receipt needs a checkpoint that covers
        // its entry: wait until the last one can be asked for.
        let last = targets
            .last()
            .and_then(|v| v.last())
            .cloned()
            .unwrap_or_default();
        for _ in 0..200 {
            if send(&client, hyper::Method::GET, &last, &auth, None)
                .await?
                .0
                == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let errors = std::sync::Arc::new(AtomicU64::new(0));
    // What the first failed request got, so a run's errors say what they are.
    let first_error: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let first_error = first_error.clone();
        let (client, stop, errors, auth, events_url, org, run) = (
            client.clone(),
            stop.clone(),
            errors.clone(),
            auth.clone(),
            events_url.clone(),
            a.org.clone(),
            run.clone(),
        );
        let mine = targets.get(c).cloned().unwrap_or_default();
        let (read, batch) = (reading, a.batch);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut last: Option<String> = None;
            let mut done = 0u64;
            let mut n = 1_000_000u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let note = |r: &Result<(u16, bytes::Bytes)>| {
                    let what = match r {
                        Ok((200, _)) => return,
                        Ok((status, body)) => format!(
                            "{status} {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ),
                        Err(e) => format!("no answer: {e:#}"),
                    };
                    first_error.lock().expect("lock").get_or_insert(what);
                };
                let ok = if read {
                    let url = &mine[(done % mine.len() as u64) as usize];
                    let r = send(&client, hyper::Method::GET, url, &auth, None).await;
                    note(&r);
                    matches!(r, Ok((200, _)))
                } else {
                    let evs: Vec<_> = (0..batch)
                        .map(|_| {
                            n += 1;
                            event(&org, &run, c, n)
                        })
                        .collect();
                    let body = if batch == 1 {
                        evs[0].to_string()
                    } else {
                        serde_json::Value::Array(evs).to_string()
                    };
                    let r =
                        send(&client, hyper::Method::POST, &events_url, &auth, Some(body)).await;
                    note(&r);
                    let ok = matches!(r, Ok((200, _)));
                    if ok {
                        last = Some(format!("LOAD-{run}-{}-{}", letters(c as u64), letters(n)));
                    }
                    ok
                };
                lat.push(t.elapsed());
                if ok {
                    done += if read { 1 } else { batch as u64 };
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            (done, lat, last)
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = 0u64;
    let mut lat: Vec<Duration> = Vec::new();
    let mut lasts = Vec::new();
    for t in tasks {
        let (d, l, last) = t.await?;
        done += d;
        lat.extend(l);
        lasts.extend(last);
    }
    let secs = started.elapsed().as_secs_f64();
    // How far the server's projection lags the log when the load stops: the time
    // until every client's last acknowledged message can be asked about.
    let stopped = Instant::now();
    let mut lag = None;
    if !lasts.is_empty() {
        let deadline = stopped + Duration::from_secs(300);
        let mut pending = lasts.clone();
        while Instant::now() < deadline {
            let mut still = Vec::new();
            for m in pending {
                let url = format!("{base}/v1/messages/{m}");
                if !matches!(
                    send(&client, hyper::Method::GET, &url, &auth, None).await,
                    Ok((200, _))
                ) {
                    still.push(m);
                }
            }
            if still.is_empty() {
                lag = Some(stopped.elapsed().as_secs_f64());
                break;
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    lat.sort_unstable();
    let requests = lat.len();
    let errors = errors.load(Ordering::Relaxed);
    let what = if a.receipts {
        "receipts"
    } else if a.read {
        "reads"
    } else {
        "events"
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if as_json {
        crate::output::json(&json!({
            "label": a.label, "clients": a.clients, "batch": a.batch, "read": a.read,
            "receipts": a.receipts,
            "seconds": secs, "requests": requests, "errors": errors,
            "per_second": done as f64 / secs, "requests_per_second": requests as f64 / secs,
            "p50_ms": ms(percentile(&lat, 0.50)), "p99_ms": ms(percentile(&lat, 0.99)),
            "max_ms": ms(lat.last().copied().unwrap_or_default()),
            "projection_caught_up_s": lag,
            "first_error": *first_error.lock().expect("lock"),
        }))?;
    } else {
        println!(
            "{}: {} clients, batch {}: {:.0} {what}/s ({:.0} requests/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors, {:.1} s",
            a.label,
            a.clients,
            a.batch,
            done as f64 / secs,
            requests as f64 / secs,
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            secs
        );
        if let Some(e) = first_error.lock().expect("lock").as_ref() {
            println!("  first error: {e}");
        }
        if !reading {
            match lag {
                Some(l) => println!("  projection caught up {l:.2} s after the load stopped"),
                None => println!("  projection still behind 300 s after the load stopped"),
            }
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's events pass admission whatever the counters: its ids once
    /// held digit runs that read as national identity numbers and were refused.
    #[test]
    fn generated_events_are_admitted_for_any_counter() {
        let run = letters(4_294_967_295 * 1_000_000 + 999_999);
        assert!(run.bytes().all(|b| b.is_ascii_lowercase()), "{run}");
        for client in [0usize, 7, 63, 1023] {
            for n in (1_000_000u64..1_000_000 + 20_000).step_by(7) {
                let e = event("974760673", &run, client, n);
                ledger_core::Event::from_json_as(e.to_string().as_bytes(), 2)
                    .unwrap_or_else(|err| panic!("{e}: {err}"));
            }
        }
        assert_eq!(letters(0), "a");
        assert_eq!(letters(26), "ba");
    }
}
