//! `ledger channel add|list|revoke`: the addresses channels deliver to
//! (`/v1/hooks/<secret>`, ledger_server::tokens), and the steps to register each.

use std::path::Path;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use ledger_server::tokens::{HOOK_CHANNELS, TokenError, TokenStore};
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
             integrasjonspunkt does not retry a push that fails: statuses sent while the ledger was down are\n\
             lost to the hook; fetch them from its GET /api/statuses and post them to the same address."
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
    if !dir.join("ledger.json").exists() && !dir.join(ledger_pg::engine::STORE_FILE).exists() {
        return Err(anyhow!(InputError(format!(
            "no ledger at {} (create one with `ledger init --origin NAME`)",
            dir.display()
        ))));
    }
    let mut store = TokenStore::load(tokens_file)?;
    let usage = |e: TokenError| match e {
        TokenError::Usage(m) => anyhow!(InputError(m)),
        other => anyhow::Error::new(other),
    };
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
                .map_err(usage)?;
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
            let rec = store.revoke(&hook).map_err(usage)?;
            if as_json {
                crate::output::json(&json!(rec))?;
            } else {
                println!("revoked {} ({})", rec.id, rec.name);
            }
        }
    }
    Ok(0)
}
