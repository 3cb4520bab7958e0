//! `ledger channel add|list|revoke`: the addresses channels deliver to
//! (`/v1/hooks/<secret>`, ledger_server::tokens), and the steps to register each;
//! `ledger channel poll`: an integrasjonspunkt's statuses fetched and posted, from a
//! kept position.

use std::path::Path;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use ledger_server::tokens::{HOOK_CHANNELS, TokenStore};
use serde_json::json;

use crate::InputError;

#[derive(Subcommand, Debug)]
pub(crate) enum ChannelCommand {
    /// A new address for one channel to deliver its events to, for one organisation;
    /// prints it once (only its SHA-256 is stored) with the steps to register it.
    ///
    /// Example: ledger channel add altinn --org 974760673 --url https://ledger.bergen.example
    Add {
        /// altinn (Altinn Events: Correspondence), eformidling (an integrasjonspunkt's
        /// webhook), or fiks (a Fiks IO adapter's CloudEvents).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(HOOK_CHANNELS))]
        channel: String,
        /// The organisation whose channel it is (its events are reported as its own).
        #[arg(long, value_name = "ORGNR")]
        org: String,
        /// This server's public address, as the channel reaches it (https://…).
        #[arg(long, value_name = "URL", env = "LEDGER_PUBLIC_URL")]
        url: String,
        /// A name to know it by (default: <channel>-<org>-<n>).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every channel address ever made (never the secrets), revoked ones marked.
    List,
    /// Revoke an address by id or name: a running server refuses it from then on.
    Revoke {
        /// The address's id or name (see `ledger channel list`).
        hook: String,
    },
    /// Fetch a channel's events from its own API and post them to the ledger, resuming
    /// after the last one the ledger answered (the position is kept in --state).
    /// eformidling: an integrasjonspunkt's statuses (GET /api/statuses, by id
    /// ascending), which its webhook cannot give (it never retries a failed push).
    /// altinn: Altinn Events' GET /events/api/v1/events?after=…, a backstop beside
    /// the subscription for events Altinn gave up delivering.
    ///
    /// Example: ledger channel poll eformidling --from http://ip:9093 --to https://ledger/v1/hooks/ldg_… --state efm.json --follow
    Poll {
        /// eformidling or altinn.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["eformidling", "altinn"]))]
        channel: String,
        /// The channel's address: the integrasjonspunkt's, or Altinn's platform
        /// (https://platform.altinn.no).
        #[arg(long, value_name = "URL")]
        from: String,
        /// altinn: the resource whose events to fetch (urn:altinn:resource:…).
        #[arg(long, value_name = "URN", required_if_eq("channel", "altinn"))]
        resource: Option<String>,
        /// altinn: an Altinn token with altinn:events.subscribe (the text, or @FILE).
        #[arg(
            long,
            value_name = "TOKEN|@FILE",
            env = "LEDGER_ALTINN_TOKEN",
            hide_env_values = true,
            required_if_eq("channel", "altinn")
        )]
        altinn_token: Option<String>,
        /// Where to post: a hook address from `ledger channel add` (or @FILE holding
        /// it, so the secret stays out of `ps` and crontabs), or a server's channel
        /// endpoint with --token.
        #[arg(long, value_name = "URL|@FILE")]
        to: String,
        /// The position: the last status id the ledger answered (created if absent).
        #[arg(long, value_name = "FILE")]
        state: std::path::PathBuf,
        /// Statuses per request.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Keep polling, every --interval seconds, until stopped.
        #[arg(long)]
        follow: bool,
        /// Seconds between polls with --follow.
        #[arg(long, default_value_t = 60)]
        interval: u64,
    },
}

/// What the channel's operator does with the address, in the channel's own terms.
fn steps(channel: &str, url: &str, org: &str) -> String {
    match channel {
        "altinn" => format!(
            "Altinn Events (docs/channels.md): create a subscription with a Maskinporten token holding\n\
             altinn:events.subscribe: POST https://platform.altinn.no/events/api/v1/subscriptions with\n\
             \x20 {{\"endPoint\": \"{url}\",\n\
             \x20  \"resourceFilter\": \"urn:altinn:resource:<your correspondence resource>\",\n\
             \x20  \"alternativeSubjectFilter\": \"/organisation/{org}\"}}\n\
             Altinn then posts platform.events.validatesubscription: the ledger answers it 200 and the\n\
             subscription turns validated (GET the subscription to see \"validated\": true); only then do events\n\
             flow. Altinn sends no credentials of its own: the address is the secret. Let only Altinn's\n\
             outbound address reach it if you can (production 20.100.46.139, TT02 20.100.24.41)."
        ),
        "eformidling" => format!(
            "eFormidling (docs/channels.md): on your integrasjonspunkt, POST /api/subscriptions with\n\
             \x20 {{\"name\": \"ledger\", \"pushEndpoint\": \"{url}\", \"resource\": \"messages\", \"event\": \"status\"}}\n\
             It posts a ping first (answered 200, nothing recorded), then each status change. The\n\
             integrasjonspunkt does not retry a push that fails; instead of the webhook (not beside it), poll:\n\
             \x20 ledger channel poll eformidling --from http://<integrasjonspunkt>:9093 --to {url} --state efm.json --follow"
        ),
        _ => format!(
            "Fiks IO delivers over AMQP to your Fiks IO account, never to a URL: the adapter that consumes\n\
             your account's receipts (mottatt.v1, feilet.v1, kvittering.tidsavbrudd) posts each, as the\n\
             CloudEvent docs/cloudevents.md specifies, to\n  {url}\n\
             and acknowledges it on the queue only after the ledger answered 200 (docs/channels.md)."
        ),
    }
}

pub(crate) fn run(
    dir: &Path,
    tokens_file: &Path,
    cmd: ChannelCommand,
    as_json: bool,
) -> Result<u8> {
    crate::serve::require_ledger(dir)?;
    let mut store = TokenStore::load(tokens_file)?;
    match cmd {
        ChannelCommand::Add {
            channel,
            org,
            url,
            name,
        } => {
            let base = url.trim_end_matches('/');
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(anyhow!(InputError(format!(
                    "--url {url:?}: give the server's address as the channel reaches it, https://…"
                ))));
            }
            let (rec, secret) = store
                .create_hook(&org, &channel, name.as_deref())
                .map_err(crate::serve::token_usage)?;
            let address = format!("{base}/v1/hooks/{secret}");
            if as_json {
                crate::output::json(&json!({"url": address, "record": rec}))?;
            } else {
                println!("{address}");
                eprintln!(
                    "created {} ({}) for {}'s {channel} events; the address is shown only now: it is the\n\
                     credential, so give it to the channel and nobody else. Revoke it with `ledger channel revoke {}`.\n",
                    rec.id, rec.name, rec.org, rec.id
                );
                eprintln!("{}", steps(&channel, &address, &rec.org));
                if base.starts_with("http://") {
                    eprintln!(
                        "\nwarning: {base} is plain HTTP: the address would cross the network readable; serve TLS"
                    );
                }
            }
        }
        ChannelCommand::List => {
            let hooks: Vec<_> = store
                .list()
                .iter()
                .filter(|t| t.channel.is_some())
                .collect();
            if as_json {
                crate::output::json(&json!(hooks))?;
            } else {
                for t in hooks {
                    println!(
                        "{}  {:<28} {}  {:<12} created {}{}",
                        t.id,
                        t.name,
                        t.org,
                        t.channel.as_deref().unwrap_or_default(),
                        t.created_at,
                        t.revoked_at
                            .as_ref()
                            .map(|r| format!(", revoked {r}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ChannelCommand::Poll { .. } => unreachable!("poll needs no ledger directory"),
        ChannelCommand::Revoke { hook } => {
            let is_hook = store
                .list()
                .iter()
                .any(|t| (t.id == hook || t.name == hook) && t.channel.is_some());
            if !is_hook {
                return Err(anyhow!(InputError(format!(
                    "no channel address has the id or name {hook:?} (see `ledger channel list`; API tokens are revoked with `ledger token revoke`)"
                ))));
            }
            crate::serve::revoke(&mut store, &hook, as_json)?;
        }
    }
    Ok(0)
}

/// Where a poll stands. eFormidling: records with ids up to `last_id` are in the
/// ledger; `page` is the page (of `page_size`, by id ascending) that holds the next
/// ones, as far as the last poll saw. Altinn: `after`, the id of the last event the
/// ledger answered (Altinn's own resume position).
#[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq, Eq)]
struct PollState {
    last_id: i64,
    page: u64,
    page_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

fn read_state(path: &Path, page_size: u32) -> Result<PollState> {
    match std::fs::read(path) {
        Ok(b) => {
            let s: PollState = serde_json::from_slice(&b).map_err(|e| {
                anyhow!(InputError(format!(
                    "--state {}: not a poll position: {e}",
                    path.display()
                )))
            })?;
            // Another page size moves the pages: start over from the first, skipping
            // what is in the ledger by id.
            Ok(if s.page_size == page_size {
                s
            } else {
                PollState {
                    last_id: s.last_id,
                    page: 0,
                    page_size,
                    after: s.after,
                }
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PollState {
            last_id: -1,
            page: 0,
            page_size,
            after: None,
        }),
        Err(e) => Err(anyhow!(e).context(format!("read {}", path.display()))),
    }
}

/// Written whole under another name and renamed: a crash leaves the old position or
/// the new, and at worst statuses are posted twice (idempotent).
fn write_state(path: &Path, s: &PollState) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow!(e).context(format!("write {}", path.display())))
}

fn read_text(resp: ureq::http::Response<ureq::Body>, what: &str) -> Result<(u16, String)> {
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| anyhow!("{what}: reading the answer: {e}"))?;
    Ok((status, text))
}

/// One pass: every page from the position on, each page's new records posted, and
/// the position saved after each answer. Returns the records posted.
fn poll_once(sink: &Sink<'_>, from: &str, state_path: &Path, state: &mut PollState) -> Result<u64> {
    let agent = sink.agent;
    let mut posted = 0u64;
    loop {
        let url = format!(
            "{}/api/statuses?page={}&size={}&sort=id,asc",
            from.trim_end_matches('/'),
            state.page,
            state.page_size
        );
        let resp = agent
            .get(&url)
            .call()
            .map_err(|e| anyhow!("GET {url}: {e}"))?;
        let (status, text) = read_text(resp, &format!("GET {url}"))?;
        if status != 200 {
            return Err(anyhow!("GET {url}: HTTP {status}"));
        }
        let page: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("GET {url}: not a page of statuses: {e}"))?;
        let records = page["content"]
            .as_array()
            .ok_or_else(|| anyhow!("GET {url}: the answer has no \"content\" list"))?;
        let fresh: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["id"].as_i64().is_some_and(|id| id > state.last_id))
            .collect();
        if !fresh.is_empty() {
            post_to_ledger(sink, &fresh, &format!("after status id {}", state.last_id))?;
            state.last_id = fresh
                .iter()
                .filter_map(|r| r["id"].as_i64())
                .max()
                .unwrap_or(state.last_id);
            posted += fresh.len() as u64;
        }
        let full = records.len() >= state.page_size as usize;
        let last = page["last"].as_bool().unwrap_or(!full);
        if !last && full {
            state.page += 1;
        }
        write_state(state_path, state)?;
        if last || !full {
            return Ok(posted);
        }
    }
}

/// Where a poll posts: the ledger's address (a hook, or a channel endpoint with a
/// bearer token).
struct Sink<'a> {
    agent: &'a ureq::Agent,
    to: &'a str,
    token: Option<&'a str>,
}

/// Posts `items` to the ledger; an error unless it answered 200.
fn post_to_ledger(sink: &Sink<'_>, items: &[&serde_json::Value], position: &str) -> Result<()> {
    let mut req = sink
        .agent
        .post(sink.to)
        .header("Content-Type", "application/json");
    if let Some(t) = sink.token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req
        .send(&serde_json::to_string(items)?)
        .map_err(|e| anyhow!("POST to the ledger: {e}"))?;
    let (status, why) = read_text(resp, "POST to the ledger")?;
    if status != 200 {
        return Err(anyhow!(
            "the ledger answered HTTP {status} to {} items (the position stays {position}): {}",
            items.len(),
            ledger_pg::redact(&why)
        ));
    }
    Ok(())
}

/// One pass over Altinn Events' query API from `state.after` on, a page at a time,
/// each posted and the position saved after the ledger's answer.
fn poll_altinn_once(
    sink: &Sink<'_>,
    from: &str,
    resource: &str,
    altinn_token: &str,
    state_path: &Path,
    state: &mut PollState,
) -> Result<u64> {
    let agent = sink.agent;
    let mut posted = 0u64;
    loop {
        let after = state.after.clone().unwrap_or_else(|| "0".into());
        let url = format!(
            "{}/events/api/v1/events?after={}&resource={}&size=50",
            from.trim_end_matches('/'),
            crate::remote::enc(&after),
            crate::remote::enc(resource)
        );
        let resp = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {altinn_token}"))
            .header("Accept", "application/cloudevents+json")
            .call()
            .map_err(|e| anyhow!("GET {url}: {e}"))?;
        let (status, text) = read_text(resp, &format!("GET {url}"))?;
        if status != 200 {
            return Err(anyhow!("GET {url}: HTTP {status}"));
        }
        let events: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| anyhow!("GET {url}: not a list of CloudEvents: {e}"))?;
        let Some(last) = events.last() else {
            return Ok(posted);
        };
        let next = last["id"]
            .as_str()
            .ok_or_else(|| anyhow!("GET {url}: an event without a string id"))?
            .to_string();
        let refs: Vec<&serde_json::Value> = events.iter().collect();
        post_to_ledger(sink, &refs, &format!("after event {after}"))?;
        posted += events.len() as u64;
        state.after = Some(next);
        write_state(state_path, state)?;
    }
}

/// `ledger channel poll`.
pub(crate) fn poll(cmd: ChannelCommand, token: Option<&str>, as_json: bool) -> Result<u8> {
    let ChannelCommand::Poll {
        channel,
        from,
        resource,
        altinn_token,
        to,
        state: state_path,
        page_size,
        follow,
        interval,
    } = cmd
    else {
        unreachable!("only poll comes here")
    };
    if page_size == 0 {
        return Err(anyhow!(InputError("--page-size: at least 1".into())));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let altinn_token = match altinn_token.as_deref() {
        Some(t) => Some(match t.strip_prefix('@') {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| anyhow!(e).context(format!("read --altinn-token {f}")))?
                .trim()
                .to_string(),
            None => t.to_string(),
        }),
        None => None,
    };
    let to = match to.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| anyhow!(e).context(format!("read --to {f}")))?
            .trim()
            .to_string(),
        None => to,
    };
    let mut state = read_state(&state_path, page_size)?;
    let sink = Sink {
        agent: &agent,
        to: &to,
        token,
    };
    loop {
        let round = match (channel.as_str(), &resource, &altinn_token) {
            ("altinn", Some(r), Some(t)) => {
                poll_altinn_once(&sink, &from, r, t, &state_path, &mut state)
            }
            _ => poll_once(&sink, &from, &state_path, &mut state),
        };
        let posted = match round {
            Ok(n) => n,
            // Following, a failed round (the channel or the ledger away, a 429) is
            // said and tried again; the position stayed where the ledger last answered.
            Err(e) if follow => {
                eprintln!("warning: {e:#}; trying again in {interval} s");
                std::thread::sleep(std::time::Duration::from_secs(interval));
                continue;
            }
            Err(e) => return Err(e),
        };
        if as_json {
            crate::output::json(&json!({
                "posted": posted, "last_id": state.last_id, "after": state.after
            }))?;
        } else if channel == "altinn" {
            println!(
                "posted {posted} events; the position is after event {}",
                state.after.as_deref().unwrap_or("0")
            );
        } else {
            println!(
                "posted {posted} statuses; the position is after status id {}",
                state.last_id
            );
        }
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(interval));
    }
}
