//! Alerts an operator receives (`[alerts]` in `ledger.toml`): a message's verdict
//! turning `at_risk`, `lost` or `stuck_in_handoff`, a witness alarm, and the store
//! stopping after a failed write or `fdatasync`. Each is POSTed as JSON to the
//! configured webhook and/or sent as an e-mail over SMTP, in order, each way retried
//! with a doubling wait until delivered or `max_attempts` is spent (then logged and
//! counted).
//!
//! An alert never carries personal data: a message is named by its id and its two
//! organisation numbers, with its verdict, reason and a link to its page in the
//! console (where only a token that may see it sees it); never refs, digests,
//! systems' references or any text an event holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use ledger_core::projection::{Instant, Verdict};
use serde::Serialize;
use serde_json::json;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{SmtpTransport, Transport as _};

use crate::config::{AlertsConfig, EmailConfig};
use crate::metrics::Metrics;
use crate::projector::{Projector, VerdictChange};

/// Alerts waiting for delivery at most; beyond, new ones are counted and logged as
/// dropped (the webhook is down for long: the log line and the metric say so).
const QUEUE: usize = 10_000;
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One alert, as POSTed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// `verdict`, `witness_alarm` or `store_stopped`.
    pub kind: &'static str,
    /// When the ledger noticed it (RFC 3339 UTC).
    pub noticed_at: String,
    /// One line for a human.
    pub summary: String,
    /// The message, for a verdict alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<serde_json::Value>,
    /// The message's page in the console (with `alerts.console_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The reporting system, for a silent-reporter alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<serde_json::Value>,
}

/// Whether a verdict change is one an operator is alerted to.
fn alerting(c: &VerdictChange) -> bool {
    matches!(
        c.to,
        Verdict::AtRisk | Verdict::Lost | Verdict::StuckInHandoff
    ) && c.from != Some(c.to)
}

/// The alert of a verdict change: ids, organisation numbers, verdicts, the reason.
pub(crate) fn verdict_alert(c: &VerdictChange, console_url: Option<&str>) -> Alert {
    let id = ledger_core::event::split_message_key(&c.message).1;
    let path = ledger_core::questions::message_path(&c.message);
    let summary = format!(
        "{} is {} ({}){}",
        path,
        c.to.name(),
        c.reason,
        c.from
            .map(|f| format!(", was {}", f.name()))
            .unwrap_or_default()
    );
    Alert {
        kind: "verdict",
        noticed_at: c.noticed_at.to_string(),
        summary,
        message: Some(json!({
            "id": id,
            "sender": c.sender,
            "recipient": c.recipient,
            "verdict": c.to.name(),
            "was": c.from.map(|f| f.name()),
            "reason": c.reason,
        })),
        link: console_url.map(|u| {
            format!(
                "{u}/console/#/message/{}",
                ledger_core::questions::url_component(&path)
            )
        }),
        reporter: None,
    }
}

fn now() -> String {
    Instant::now().to_string()
}

/// The sending end: alerts go to one delivery thread per way (webhook, e-mail),
/// each with its own queue, so a way that is down never holds up the other.
#[derive(Clone)]
pub(crate) struct Alerter {
    ways: Vec<(&'static str, mpsc::SyncSender<Alert>)>,
    metrics: Arc<Metrics>,
}

impl Alerter {
    /// Starts the delivery threads.
    pub(crate) fn start(config: AlertsConfig, metrics: Arc<Metrics>) -> Alerter {
        let mut ways = Vec::new();
        let mut spawn = |via: &'static str, deliver: Box<dyn FnMut(&Alert) -> Attempt + Send>| {
            let (tx, rx) = mpsc::sync_channel::<Alert>(QUEUE);
            let (config, m) = (config.clone(), metrics.clone());
            let mut deliver = deliver;
            std::thread::Builder::new()
                .name(format!("ledger-alerts-{via}"))
                .spawn(move || {
                    for alert in rx {
                        retried(&config, &m, via, &alert, || deliver(&alert));
                    }
                })
                .expect("spawn an alert thread");
            ways.push((via, tx));
        };
        if let Some(url) = config.webhook_url.clone() {
            spawn("webhook", Box::new(webhook(url)));
        }
        if let Some(e) = config.email.clone()
            && let Ok(smtp) = SmtpTransport::from_url(&e.smtp_url)
        {
            let smtp = smtp.timeout(Some(Duration::from_secs(20))).build();
            spawn("email", Box::new(mail(e, smtp)));
        }
        Alerter { ways, metrics }
    }

    /// Queues an alert for every way; counted and logged when a queue is full.
    pub(crate) fn send(&self, a: Alert) {
        for (via, tx) in &self.ways {
            if let Err(mpsc::TrySendError::Full(a) | mpsc::TrySendError::Disconnected(a)) =
                tx.try_send(a.clone())
            {
                self.metrics.alert(via, "dropped");
                eprintln!(
                    "ledger serve: alert not queued for {via} ({QUEUE} waiting already): {}",
                    a.summary
                );
            }
        }
    }
}

/// What one attempt at delivering came to.
pub(crate) enum Attempt {
    /// Delivered (to every recipient).
    Delivered,
    /// Not yet: try again after the wait.
    Again,
    /// Refused for good (a permanent SMTP error): why.
    Refused(String),
}

/// The webhook way: a POST of the alert's JSON, delivered on a 2xx.
fn webhook(url: String) -> impl FnMut(&Alert) -> Attempt + Send {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    move |alert| {
        let body = serde_json::to_string(alert).expect("alerts serialize");
        let status = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(&body)
            .map(|r| r.status().as_u16());
        match status {
            Ok(200..=299) => Attempt::Delivered,
            _ => Attempt::Again,
        }
    }
}

/// The e-mail way: one message, sent to each recipient on its own (so one refused
/// address never keeps it from the others); a recipient the server took, or refused
/// for good (5xx), is not sent it again when the others are retried.
fn mail(e: EmailConfig, smtp: SmtpTransport) -> impl FnMut(&Alert) -> Attempt + Send {
    // The alert being delivered and the recipients it has yet to reach.
    let mut pending: Option<(Alert, Vec<lettre::Address>)> = None;
    let mut refused: Vec<String> = Vec::new();
    move |alert| {
        let m = match email(&e, alert) {
            Ok(m) => m,
            Err(err) => return Attempt::Refused(format!("the mail could not be made: {err}")),
        };
        if pending.as_ref().is_none_or(|(a, _)| a != alert) {
            pending = Some((alert.clone(), m.envelope().to().to_vec()));
            refused.clear();
        }
        let (_, to) = pending.as_mut().expect("set above");
        let raw = m.formatted();
        let from = m.envelope().from().cloned();
        to.retain(|addr| {
            let Ok(envelope) = lettre::address::Envelope::new(from.clone(), vec![addr.clone()])
            else {
                return false;
            };
            match smtp.send_raw(&envelope, &raw) {
                Ok(_) => false,
                Err(err) if err.is_permanent() => {
                    refused.push(format!("{addr}: {err}"));
                    false
                }
                Err(_) => true,
            }
        });
        match (to.is_empty(), refused.is_empty()) {
            (false, _) => Attempt::Again,
            (true, true) => Attempt::Delivered,
            (true, false) => Attempt::Refused(refused.join("; ")),
        }
    }
}

/// Checks an e-mail configuration as far as can be done without sending: the SMTP
/// address and every mailbox parse. The error never repeats the address (it may hold
/// a password).
pub(crate) fn check_email(e: &EmailConfig) -> Result<(), String> {
    let implicit_tls = e.smtp_url.starts_with("smtps://");
    if !(implicit_tls || e.smtp_url.starts_with("smtp://")) {
        return Err("alerts.smtp_url: an smtp:// or smtps:// address".into());
    }
    // A password goes only where nobody on the way can read it: over TLS from the
    // start, or STARTTLS that must succeed (`tls=opportunistic` can be stripped).
    let rest = e.smtp_url.split_once("://").map(|(_, r)| r).unwrap_or("");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let has_credentials = authority.contains('@');
    if has_credentials && !implicit_tls && !e.smtp_url.contains("tls=required") {
        return Err(
            "alerts.smtp_url holds a user and password but no TLS: use smtps://… or add \
             ?tls=required (STARTTLS), so that the password never crosses the network in clear"
                .into(),
        );
    }
    SmtpTransport::from_url(&e.smtp_url)
        .map_err(|err| format!("alerts.smtp_url is not a usable SMTP address: {err}"))?;
    e.from
        .parse::<Mailbox>()
        .map_err(|err| format!("alerts.email_from {:?}: {err}", e.from))?;
    if e.to.is_empty() {
        return Err("alerts.email_to: at least one address".into());
    }
    for to in &e.to {
        to.parse::<Mailbox>()
            .map_err(|err| format!("alerts.email_to {to:?}: {err}"))?;
    }
    Ok(())
}

/// The e-mail of an alert: its summary as the subject, its fields as text, the same
/// fields as JSON for a machine (nothing more than the webhook gets).
fn email(e: &EmailConfig, alert: &Alert) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(e.from.parse().map_err(|err| format!("{err}"))?)
        .subject(format!("[ledger] {}", alert.summary));
    for to in &e.to {
        b = b.to(to.parse().map_err(|err| format!("{err}"))?);
    }
    let mut text = format!("{}\n\n", alert.summary);
    if let Some(link) = &alert.link {
        text.push_str(&format!("Open it: {link}\n\n"));
    }
    text.push_str(&format!(
        "kind: {}\nnoticed at: {}\n\n{}\n",
        alert.kind,
        alert.noticed_at,
        serde_json::to_string_pretty(alert).expect("alerts serialize")
    ));
    b.header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|err| format!("{err}"))
}

/// Tries `attempt` until it delivers, is refused for good, or `max_attempts` are
/// spent, waiting twice as long after each failure; counts and logs the outcome.
fn retried(
    config: &AlertsConfig,
    metrics: &Metrics,
    via: &str,
    alert: &Alert,
    mut attempt: impl FnMut() -> Attempt,
) {
    let mut wait = config.retry_initial;
    for n in 1..=config.max_attempts {
        match attempt() {
            Attempt::Delivered => {
                metrics.alert(via, "delivered");
                return;
            }
            Attempt::Refused(why) => {
                metrics.alert(via, "given_up");
                eprintln!(
                    "ledger serve: alert refused by {via} ({why}): {}",
                    alert.summary
                );
                return;
            }
            Attempt::Again if n < config.max_attempts => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            }
            Attempt::Again => {}
        }
    }
    metrics.alert(via, "given_up");
    eprintln!(
        "ledger serve: alert not delivered by {via} after {} attempts: {}",
        config.max_attempts, alert.summary
    );
}

/// What the follower has already alerted, so each thing is said once.
#[derive(Default)]
pub(crate) struct Said {
    store_stopped: bool,
    witness_alarms: HashSet<String>,
}

/// When each reporting system (organisation, system) last reported, by the record
/// time of its newest entry: read from the whole log once, then from each new entry.
#[derive(Default)]
pub(crate) struct Reporters {
    next_seq: u64,
    last: std::collections::HashMap<(String, String), Instant>,
    silent: HashSet<(String, String)>,
}

#[derive(serde::Deserialize)]
struct Reported {
    reporter: Reporter,
}

#[derive(serde::Deserialize)]
struct Reporter {
    org: String,
    system: String,
}

impl Reporters {
    /// Reads the entries appended since the last call.
    fn observe(&mut self, store: &dyn ledger_core::Store) -> Result<(), ledger_core::StoreError> {
        let size = store.size();
        let (last, silent) = (&mut self.last, &mut self.silent);
        store.scan(self.next_seq, size, &mut |_, bytes| {
            let Ok(p) = ledger_core::entry::parse_envelope(bytes) else {
                return Ok(());
            };
            let (Ok(r), Some(at)) = (
                serde_json::from_str::<Reported>(p.event),
                Instant::parse(p.recorded_at),
            ) else {
                return Ok(());
            };
            let key = (r.reporter.org, r.reporter.system);
            silent.remove(&key);
            last.insert(key, at);
            Ok(())
        })?;
        self.next_seq = size;
        Ok(())
    }

    /// The systems silent for longer than `after` that were not alerted yet.
    fn newly_silent(&mut self, after: Duration) -> Vec<((String, String), Instant)> {
        let cutoff = Instant::now().plus_seconds(-(after.as_secs() as i64));
        let mut out = Vec::new();
        for (k, at) in &self.last {
            if *at < cutoff && self.silent.insert(k.clone()) {
                out.push((k.clone(), *at));
            }
        }
        out.sort();
        out
    }
}

/// Follows the projector's verdict changes, the witness alarms and the store's
/// state, from now on (history is what reports are for), alerting as it goes.
pub(crate) async fn follow(
    alerter: Alerter,
    projector: Arc<Projector>,
    store: Arc<ledger_pg::Engine>,
    witnessing: Option<Arc<crate::witnessing::Witnessing>>,
    console_url: Option<String>,
    silent_after: Option<Duration>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut changed = projector.subscribe();
    let mut stop = stop;
    let mut pos = projector.head();
    let mut said = Said::default();
    let mut reporters = Some(Reporters::default());
    loop {
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => return,
        }
        loop {
            let (changes, gap) = projector.changes_after(pos, 1000);
            if gap {
                alerter.send(Alert {
                    kind: "alerts_gap",
                    noticed_at: now(),
                    summary: "alerts fell behind the verdict changes and some were not sent: run `ledger report at-risk|lost|stuck`".into(),
                    message: None,
                    link: None,
                    reporter: None,
                });
                pos = projector.head();
                break;
            }
            let Some(last) = changes.last() else { break };
            pos = last.pos;
            for c in changes.iter().filter(|c| alerting(c)) {
                alerter.send(verdict_alert(c, console_url.as_deref()));
            }
        }
        if !said.store_stopped && ledger_core::Store::is_poisoned(&*store) {
            said.store_stopped = true;
            alerter.send(Alert {
                kind: "store_stopped",
                noticed_at: now(),
                summary: "the store stopped taking appends after a failed write or fsync: \
                          appends are answered 503; see docs/operations.md"
                    .into(),
                message: None,
                link: None,
                reporter: None,
            });
        }
        if let Some(after) = silent_after
            && let Some(mut r) = reporters.take()
        {
            let s = store.clone();
            let (r, result) = tokio::task::spawn_blocking(move || {
                let result = r.observe(&*s);
                (r, result)
            })
            .await
            .expect("the reporters' scan does not panic");
            let mut r = r;
            if let Err(e) = result {
                eprintln!("ledger serve: alerts: reading the log for reporters: {e}");
            }
            for ((org, system), at) in r.newly_silent(after) {
                alerter.send(Alert {
                    kind: "silent_reporter",
                    noticed_at: now(),
                    summary: format!(
                        "{org}/{system} has reported nothing since {at} (alerts.silent_reporter_after_seconds = {})",
                        after.as_secs()
                    ),
                    message: None,
                    link: None,
                    reporter: Some(json!({"org": org, "system": system, "last_reported_at": at.to_string()})),
                });
            }
            reporters = Some(r);
        }
        if let Some(w) = &witnessing {
            for a in w.status().alarms {
                if said.witness_alarms.insert(a.clone()) {
                    alerter.send(Alert {
                        kind: "witness_alarm",
                        noticed_at: now(),
                        summary: a,
                        message: None,
                        link: None,
                        reporter: None,
                    });
                }
            }
        }
    }
}
