//! The demo scenario of `docs/projections.md` §8: the 2018–2023 incident as ledger
//! events, generated deterministically, with its ground truth.
//!
//! [`generate`] assigns every message a *fate* first and derives its events from it,
//! so the expected verdict of each message ([`Truth::verdicts`]) comes from the fate,
//! never from the projection code it is meant to test.
//!
//! Determinism: an own SplitMix64 generator (no `rand`, whose value streams may change
//! between versions), integer ranges by rejection sampling and every draw in a fixed
//! order. The same seed and message count give byte-identical events on every machine.
//!
//! Memory: events are kept as 12-byte records and rendered as JSON only while writing,
//! so `messages = 2_000_000` (about nine million events) stays well below 1 GB.
//!
//! ```no_run
//! let scenario = ledger_demo::generate(&ledger_demo::Options::default());
//! let mut file = std::fs::File::create("events.jsonl")?;
//! scenario.write_events(&mut file)?;
//! assert_eq!(scenario.truth().now, ledger_demo::T_END);
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::OnceLock;

use ledger_core::EventType as Kind;
use ledger_core::projection::{AnomalyKind as Anomaly, Verdict};
use serde::{Deserialize, Serialize};
use time::Date;
use time::macros::date;

/// "Now" of the demo's findings: every regular message's fate is settled by then.
pub const T_END: &str = "2023-06-30T00:00:00Z";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of original messages: not counting resends (`-BREV`, `-R1`, `-R2`) and
    /// the `GHOST-n` ids of injected orphan events.
    pub messages: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 2023,
            messages: 30_000,
        }
    }
}

/// The expected findings at [`T_END`] under the default policy (`truth.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Truth {
    /// The evaluation time, [`T_END`].
    pub now: String,
    /// The seed the scenario was generated with.
    pub seed: u64,
    /// The number of original messages ([`Options::messages`]).
    pub messages: usize,
    /// Message id → verdict (`open`, `at_risk`, `late`, `completed`, `lost`,
    /// `stuck_in_handoff` or `resolved`), for every message the events mention.
    pub verdicts: BTreeMap<String, String>,
    /// The injected and evaluated anomalies that concern a message, sorted.
    pub anomalies: Vec<TruthAnomaly>,
    /// The `reporter_seq_gap` ranges, sorted by (org, system, from).
    pub gaps: Vec<TruthGap>,
    /// Every message that was ever lost (deleted, expired or failed before anyone
    /// opened it or a resend of it), whatever its verdict now, sorted.
    #[serde(default)]
    pub ever_lost: Vec<TruthIncident>,
    /// The expected rows of `ledger reconcile --sent police-export.csv --received
    /// municipality.csv`, sorted by class (table order), list, line, message.
    pub reconcile: Vec<TruthReconcile>,
}

/// One expected anomaly about a message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TruthAnomaly {
    /// `opened_before_delivered`, `event_for_unknown_message` or `handoff_never_received`.
    pub kind: String,
    /// The message the anomaly is about.
    pub message: String,
}

/// One expected loss incident (docs/projections.md §2.6).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TruthIncident {
    /// `lost_unread` or `failed`.
    pub kind: String,
    /// The message.
    pub message: String,
    /// How it ended by [`T_END`]: `resend_opened`, or `None` while still open.
    pub ended_by: Option<String>,
}

/// One expected `reporter_seq_gap`: the reporter numbers `from ..= to` of a stream never
/// arrive.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TruthGap {
    /// `reporter.org` of the stream.
    pub org: String,
    /// `reporter.system` of the stream.
    pub system: String,
    /// First missing number.
    pub from: u64,
    /// Last missing number (inclusive).
    pub to: u64,
}

/// One expected reconcile row.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct TruthReconcile {
    /// `sent_not_in_ledger`, `in_ledger_not_received` or `received_not_sent`.
    pub class: String,
    /// `sent`, `received` or `ledger`.
    pub list: String,
    /// Line in the CSV file (the header is line 1); `None` for ledger rows.
    pub line: Option<u64>,
    /// The row's `message`, or the ledger message; may be empty.
    pub message: String,
    /// The row's `ref`; for ledger rows the message's refs as `key=value` joined by
    /// `;`, sorted by key. May be empty.
    #[serde(rename = "ref")]
    pub r#ref: String,
}

// ---------------------------------------------------------------------------------
// Time: instants are seconds since 2018-01-01T00:00:00Z, in a u32.

const MIN: u32 = 60;
const HOUR: u32 = 3_600;
const DAY: u32 = 86_400;
/// A message's events are at least this far apart (more than the projection's SKEW).
const SPACING: u32 = 5 * MIN;

/// The base instant's date: instants count seconds from its midnight UTC.
const BASE: Date = date!(2018 - 01 - 01);

/// Midnight UTC of a date, as an instant.
const fn midnight(d: Date) -> u32 {
    (d.to_julian_day() - BASE.to_julian_day()) as u32 * DAY
}

/// The calendar date of an instant.
fn date_of(t: u32) -> Date {
    Date::from_julian_day(BASE.to_julian_day() + (t / DAY) as i32)
        .expect("demo instants are within the calendar")
}

const T_END_AT: u32 = midnight(date!(2023 - 06 - 30));
/// Regular traffic: `[TRAFFIC_FROM, REGULAR_UNTIL)`.
const TRAFFIC_FROM: u32 = midnight(date!(2018 - 07 - 01));
const REGULAR_UNTIL: u32 = T_END_AT - 60 * DAY;
/// Municipalities lose their Altinn roles at a random instant in 2018–2021 …
const LACK_FROM: u32 = midnight(date!(2018 - 01 - 01));
const LACK_UNTIL: u32 = midnight(date!(2022 - 01 - 01));
/// … and get them back on this day.
const ROLES_BACK: u32 = midnight(date!(2023 - 05 - 20));
/// The Familia hand-off bug: `[BUG_FROM, BUG_UNTIL)`.
const BUG_FROM: u32 = midnight(date!(2020 - 09 - 01));
const BUG_UNTIL: u32 = midnight(date!(2023 - 05 - 08));
/// The 2023 response resends on a day in `RESPONSE_FIRST ..= RESPONSE_LAST`.
const RESPONSE_FIRST: u32 = midnight(date!(2023 - 05 - 22));
const RESPONSE_LAST: u32 = midnight(date!(2023 - 06 - 05));
const JUNE_2023: u32 = midnight(date!(2023 - 06 - 01));

/// Appends an instant as `YYYY-MM-DDTHH:MM:SSZ`.
fn push_time(out: &mut String, t: u32) {
    let date = date_of(t);
    let (y, m, d) = (date.year(), u8::from(date.month()), date.day());
    let s = t % DAY;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / HOUR,
        s / MIN % 60,
        s % 60
    );
}

fn time_string(t: u32) -> String {
    let mut s = String::with_capacity(20);
    push_time(&mut s, t);
    s
}

fn year_of(t: u32) -> i32 {
    date_of(t).year()
}

// ---------------------------------------------------------------------------------
// Randomness.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function.
const fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea, Flood 2014), as in `java.util.SplittableRandom`.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        finalize(self.state)
    }

    /// Uniform in `0 .. n`, by rejection sampling.
    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        // 2^64 mod n: values at or above 2^64 − rem would favour the low residues.
        let rem = (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= u64::MAX - rem {
                return x % n;
            }
        }
    }

    /// Uniform in `lo ..= hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        assert!(lo <= hi, "empty range");
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// Uniform index in `0 .. n`.
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }
}

/// Words of a keyed hash, for content digests and correspondence ids (no draw from
/// the generator, so they cost nothing at generation time).
fn hash_words<const N: usize>(seed: u64, tag: u64, index: u32) -> [u64; N] {
    let base = finalize(finalize(seed ^ tag).wrapping_add(u64::from(index)));
    std::array::from_fn(|k| finalize(base.wrapping_add(GOLDEN.wrapping_mul(k as u64 + 1))))
}

const TAG_DIGEST: u64 = 0x6469_6765_7374; // "digest"
const TAG_ALTINN: u64 = 0x616c_7469_6e6e; // "altinn"
const TAG_INVENTED: u64 = 0x696e_7665_6e74; // "invent"

/// Appends lowercase hex of the words, with every eighth character forced to a letter
/// `a`–`f`: no run of more than seven digits, so never anything like an 11-digit
/// national identity number.
fn push_hex(out: &mut String, words: &[u64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, &w) in words.iter().enumerate() {
        for k in 0..16 {
            let nibble = ((w >> (60 - 4 * k)) & 0xf) as u8;
            let c = if (i * 16 + k) % 8 == 7 {
                b'a' + nibble % 6
            } else {
                HEX[usize::from(nibble)]
            };
            out.push(char::from(c));
        }
    }
}

fn hex_string(words: &[u64]) -> String {
    let mut s = String::with_capacity(words.len() * 16);
    push_hex(&mut s, words);
    s
}

// ---------------------------------------------------------------------------------
// The model.

const POLICE: usize = 12;
const MUNICIPALITIES: usize = 356;
const FAMILIA_MUNICIPALITIES: usize = 244;
const OTHER_BODIES: usize = 50;
/// ~10 % of the municipalities lack the Altinn roles for a while.
const NO_ACCESS: usize = 36;
/// ~1 % ("Bergen-like", at least one) have broken outgoing transport.
const BROKEN: usize = 4;
/// Injected `opened_before_delivered` messages and `GHOST-n` orphan opens.
const INJECTED_OBD: usize = 10;
const GHOSTS: u32 = 10;

const WEBSAK: &str = "websak";
const ALTINN_ADAPTER: &str = "altinn-adapter";
const FIKS_MOTTAK: &str = "fiks-mottak";
const FAMILIA: &str = "familia";
const SAK_ANNET: &str = "sak-annet";
const PORTAL_SYSTEM: &str = "bekymringsmelding-portal";
const MOTTAK: &str = "mottak";
const POST_KVITTERING: &str = "post-kvittering";

/// Stream slots of a police district: `websak`, `altinn-adapter`.
const POLICE_WEBSAK: u16 = 0;
const POLICE_ALTINN: u16 = 1;
/// Stream slots of a municipality: `fiks-mottak`, its case system, `altinn-adapter`.
const MUNI_FIKS: u16 = 0;
const MUNI_CASE: u16 = 1;
const MUNI_ALTINN: u16 = 2;

/// `opened.by_role`, indexed by an event's `aux`.
const ROLES: [&str; 3] = ["barnevernsleder", "saksbehandler", "arkivar"];
/// `failed.error`, indexed by an event's `aux`: codes, as format 2 requires (what a
/// person reads about the failure stays in the reporter's own system).
const ERRORS: [&str; 4] = [
    "eformidling:timeout",
    "fiks-io:recipient_not_found",
    "smtp:550",
    "eformidling:transport_unavailable",
];
const ERROR_BROKEN: u8 = 3;
/// `resolved.outcome`, indexed by an event's `aux`.
const RESOLUTIONS: [&str; 2] = ["resent_and_confirmed", "known_via_other_channel"];
const RESOLVED_RESENT: u8 = 0;
const RESOLVED_OTHER_CHANNEL: u8 = 1;
/// Flag in `Ev::aux`: the event is dropped before appending (an injected gap).
const DROPPED: u8 = 0x80;

#[derive(Debug, Clone)]
struct Org {
    /// Nine ASCII digits.
    number: [u8; 9],
    /// Index of the organisation's first reporter stream; its systems follow.
    streams: u16,
    familia: bool,
    lacks_roles_from: Option<u32>,
    broken: bool,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    org: u16,
    system: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Pol,
    Portal,
    Kom,
    Ghost,
}

impl Prefix {
    fn name(self) -> &'static str {
        match self {
            Prefix::Pol => "POL",
            Prefix::Portal => "PORTAL",
            Prefix::Kom => "KOM",
            Prefix::Ghost => "GHOST",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suffix {
    Original,
    Brev,
    R1,
    R2,
}

impl Suffix {
    fn name(self) -> &'static str {
        match self {
            Suffix::Original => "",
            Suffix::Brev => "-BREV",
            Suffix::R1 => "-R1",
            Suffix::R2 => "-R2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Altinn,
    Eformidling,
    FiksIo,
    Portal,
    Letter,
    Email,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Altinn => "altinn",
            Channel::Eformidling => "eformidling",
            Channel::FiksIo => "fiks_io",
            Channel::Portal => "portal",
            Channel::Letter => "letter",
            Channel::Email => "email",
        }
    }

    /// The `failed.error` text of a transport failure on this channel.
    fn error(self) -> u8 {
        match self {
            Channel::FiksIo => 1,
            Channel::Email => 2,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Bekymringsmelding,
    Underretning,
    Document,
}

impl Category {
    fn name(self) -> &'static str {
        match self {
            Category::Bekymringsmelding => "bekymringsmelding",
            Category::Underretning => "underretning",
            Category::Document => "document",
        }
    }
}

/// Fates of a regular police report (§8 traffic table, first row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoliceFate {
    Ok,
    NoAccess,
    LateOpen,
    NoAck,
    AckLate,
    Failed,
    FailedTwice,
}

/// A message: an original, a resend, or a ghost id.
#[derive(Debug, Clone, Copy)]
struct Msg {
    /// Number in its prefix's series (resends keep their original's).
    num: u32,
    /// The message a resend was resent from; `NO_PARENT` otherwise.
    parent: u32,
    /// `sent.at`, or the `resent.at` of a resend.
    sent_at: u32,
    from: u16,
    to: u16,
    prefix: Prefix,
    suffix: Suffix,
    /// Inherited by resends.
    category: Category,
    /// The message's own channel (for a resend, that of the `resent` event).
    channel: Channel,
    verdict: Verdict,
    flags: u8,
}

const NO_PARENT: u32 = u32::MAX;
/// Fate `ok` of a police report: its `delivered` may be dropped (an injected gap).
const F_OK: u8 = 1;
/// Carries the injected `opened_before_delivered`: its `delivered` is never dropped.
const F_OBD: u8 = 2;

/// One event, compact: the JSON is rendered from this and the message table.
#[derive(Debug, Clone, Copy)]
struct Ev {
    at: u32,
    /// The event's message; for `resent`, the *new* message (the event's `message` is
    /// its parent).
    msg: u32,
    /// Reporter stream.
    stream: u16,
    kind: Kind,
    /// Role, error or outcome index by kind, plus the `DROPPED` flag.
    aux: u8,
}

/// Moves each event of a story to at least `SPACING` after the previous one.
struct Cursor(u32);

impl Cursor {
    fn at(&mut self, desired: u32) -> u32 {
        let at = desired.max(self.0 + SPACING);
        self.0 = at;
        at
    }
}

// ---------------------------------------------------------------------------------
// Generation.

struct Gen {
    rng: SplitMix64,
    orgs: Vec<Org>,
    streams: Vec<Stream>,
    police: Vec<u16>,
    municipalities: Vec<u16>,
    portal: u16,
    bodies: Vec<u16>,
    msgs: Vec<Msg>,
    events: Vec<Ev>,
    /// Next number per `Prefix`.
    numbers: [u32; 4],
    /// Index of the `sent` event of each regular altinn police report of fate `ok`
    /// (followed by its `delivered`, `opened` and `acknowledged`).
    obd_candidates: Vec<u32>,
    anomalies: Vec<(Anomaly, u32)>,
    /// Loss incidents: (message, `lost_unread` or `failed`, ended by a resend's open).
    losses: Vec<(u32, &'static str, bool)>,
    gaps: Vec<(u16, u32, u32)>,
    dropped: usize,
}

/// Generates the scenario. Deterministic in `opts`.
///
/// The draw order is: organisation numbers (police districts, municipalities, the
/// portal, other bodies), the Familia shuffle, the shuffle choosing no-access and
/// broken municipalities, the no-access start instants; then per regular message its
/// flow and that flow's draws; the fresh cohorts; the ghosts; the choice of the
/// `opened_before_delivered` messages; after sorting, one draw per droppable
/// `delivered` in append order.
pub fn generate(opts: &Options) -> Scenario {
    let n = opts.messages;
    assert!(n <= 200_000_000, "at most 200 million messages");
    // Fresh cohorts: police reports of the last five days (about the regular rate) and
    // one day of altinn documents 25 days before T_END.
    let fresh_open = if n == 0 { 0 } else { (n / 500).max(1) };
    let fresh_expiring = (n / 1000).max(1).min(n - fresh_open);
    let regular = n - fresh_open - fresh_expiring;

    let mut g = Gen::new(opts.seed, n);
    g.organisations();
    for _ in 0..regular {
        match g.rng.below(100) {
            0..60 => g.police_report(),
            60..85 => g.portal_report(),
            _ => g.municipal_document(),
        }
    }
    for _ in 0..fresh_open {
        g.fresh_report();
    }
    for _ in 0..fresh_expiring {
        g.fresh_document();
    }
    g.ghosts();
    g.inject_opened_before_delivered();
    // Append order: by `at`, ties in generation order (the sort is stable).
    g.events.sort_by_key(|e| e.at);
    g.drop_delivered();
    Scenario {
        seed: opts.seed,
        messages: n,
        orgs: g.orgs,
        streams: g.streams,
        police: g.police,
        msgs: g.msgs,
        events: g.events,
        dropped: g.dropped,
        anomalies: g.anomalies,
        losses: g.losses,
        gaps: g.gaps,
        truth: OnceLock::new(),
    }
}

impl Gen {
    fn new(seed: u64, messages: usize) -> Self {
        Gen {
            rng: SplitMix64::new(seed),
            orgs: Vec::new(),
            streams: Vec::new(),
            police: Vec::new(),
            municipalities: Vec::new(),
            portal: 0,
            bodies: Vec::new(),
            msgs: Vec::with_capacity(messages + messages / 10 + 16),
            events: Vec::with_capacity(messages * 9 / 2 + 16),
            numbers: [0; 4],
            obd_candidates: Vec::new(),
            anomalies: Vec::new(),
            losses: Vec::new(),
            gaps: Vec::new(),
            dropped: 0,
        }
    }

    /// A fictitious organisation number: `9`, seven uniform digits, the mod-11 check
    /// digit; drawn again when no check digit exists or the number is taken.
    fn orgnr(&mut self, taken: &mut HashSet<[u8; 9]>) -> [u8; 9] {
        const WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
        loop {
            let mut d = [9u8; 8];
            for x in &mut d[1..] {
                *x = self.rng.below(10) as u8;
            }
            let s: u32 = d.iter().zip(WEIGHTS).map(|(&x, w)| u32::from(x) * w).sum();
            let c = match 11 - s % 11 {
                11 => 0,
                10 => continue,
                c => c as u8,
            };
            let mut number = [b'0'; 9];
            for (o, &x) in number.iter_mut().zip(&d) {
                *o = b'0' + x;
            }
            number[8] = b'0' + c;
            if taken.insert(number) {
                return number;
            }
        }
    }

    fn add_org(&mut self, number: [u8; 9], systems: &[&'static str]) -> u16 {
        let id = u16::try_from(self.orgs.len()).expect("few organisations");
        let first = u16::try_from(self.streams.len()).expect("few streams");
        for &system in systems {
            self.streams.push(Stream { org: id, system });
        }
        self.orgs.push(Org {
            number,
            streams: first,
            familia: false,
            lacks_roles_from: None,
            broken: false,
        });
        id
    }

    fn organisations(&mut self) {
        let mut taken = HashSet::new();
        let mut numbers = Vec::with_capacity(POLICE + MUNICIPALITIES + 1 + OTHER_BODIES);
        for _ in 0..POLICE + MUNICIPALITIES + 1 + OTHER_BODIES {
            numbers.push(self.orgnr(&mut taken));
        }

        let mut order: Vec<usize> = (0..MUNICIPALITIES).collect();
        self.rng.shuffle(&mut order);
        let mut familia = vec![false; MUNICIPALITIES];
        for &k in &order[..FAMILIA_MUNICIPALITIES] {
            familia[k] = true;
        }
        self.rng.shuffle(&mut order);
        let mut lacks = vec![None; MUNICIPALITIES];
        for &k in &order[..NO_ACCESS] {
            lacks[k] = Some(self.rng.range(LACK_FROM, LACK_UNTIL - 1));
        }
        let mut broken = vec![false; MUNICIPALITIES];
        for &k in &order[NO_ACCESS..NO_ACCESS + BROKEN] {
            broken[k] = true;
        }

        let mut numbers = numbers.into_iter();
        let mut next = || numbers.next().expect("one number per organisation");
        // Police districts 1–12: Oslo, Øst, Innlandet, Sør-Øst, Agder, Sør-Vest, Vest,
        // Møre og Romsdal, Trøndelag, Nordland, Troms, Finnmark.
        for _ in 0..POLICE {
            let org = self.add_org(next(), &[WEBSAK, ALTINN_ADAPTER]);
            self.police.push(org);
        }
        // Kommune 001 … 356; Kommune k belongs to district (k − 1) mod 12 + 1.
        for ((&is_familia, &lacks_from), &is_broken) in familia.iter().zip(&lacks).zip(&broken) {
            let case = if is_familia { FAMILIA } else { SAK_ANNET };
            let org = self.add_org(next(), &[FIKS_MOTTAK, case, ALTINN_ADAPTER]);
            let o = &mut self.orgs[usize::from(org)];
            o.familia = is_familia;
            o.lacks_roles_from = lacks_from;
            o.broken = is_broken;
            self.municipalities.push(org);
        }
        self.portal = self.add_org(next(), &[PORTAL_SYSTEM]);
        for _ in 0..OTHER_BODIES {
            let org = self.add_org(next(), &[MOTTAK]);
            self.bodies.push(org);
        }
    }

    fn stream(&self, org: u16, slot: u16) -> u16 {
        self.orgs[usize::from(org)].streams + slot
    }

    fn push(&mut self, at: u32, msg: u32, stream: u16, kind: Kind, aux: u8) -> u32 {
        let index = u32::try_from(self.events.len()).expect("fewer than 2^32 events");
        self.events.push(Ev {
            at,
            msg,
            stream,
            kind,
            aux,
        });
        index
    }

    fn new_message(
        &mut self,
        prefix: Prefix,
        from: u16,
        to: u16,
        category: Category,
        channel: Channel,
        sent_at: u32,
    ) -> u32 {
        let index = u32::try_from(self.msgs.len()).expect("fewer than 2^32 messages");
        let counter = &mut self.numbers[prefix as usize];
        *counter += 1;
        let num = *counter;
        self.msgs.push(Msg {
            num,
            parent: NO_PARENT,
            sent_at,
            from,
            to,
            prefix,
            suffix: Suffix::Original,
            category,
            channel,
            verdict: Verdict::Open,
            flags: 0,
        });
        index
    }

    /// Declares a resend of `parent` (a `resent` event reported on `stream`) and
    /// returns the new message.
    fn resend(
        &mut self,
        parent: u32,
        stream: u16,
        suffix: Suffix,
        channel: Channel,
        at: u32,
    ) -> u32 {
        let index = u32::try_from(self.msgs.len()).expect("fewer than 2^32 messages");
        let p = self.msgs[parent as usize];
        self.msgs.push(Msg {
            parent,
            sent_at: at,
            suffix,
            channel,
            verdict: Verdict::Open,
            flags: 0,
            ..p
        });
        self.push(at, index, stream, Kind::Resent, 0);
        index
    }

    fn settle(&mut self, msg: u32, verdict: Verdict, flags: u8) {
        let m = &mut self.msgs[msg as usize];
        m.verdict = verdict;
        m.flags |= flags;
    }

    /// A working-day instant of the regular traffic.
    fn send_time(&mut self) -> u32 {
        let day = self.rng.range(TRAFFIC_FROM / DAY, REGULAR_UNTIL / DAY - 1);
        let time = self.rng.range(7 * HOUR, 16 * HOUR - 1);
        day * DAY + time
    }

    /// Police → municipality of its district: 60 % of the regular traffic.
    fn police_report(&mut self) {
        let k = self.rng.index(MUNICIPALITIES);
        let (muni, police) = (self.municipalities[k], self.police[k % POLICE]);
        let category = if self.rng.below(10) < 6 {
            Category::Bekymringsmelding
        } else {
            Category::Underretning
        };
        let channel = match self.rng.below(100) {
            0..85 => Channel::Altinn,
            85..95 => Channel::Eformidling,
            _ => Channel::FiksIo,
        };
        let sent = self.send_time();
        let drawn = match self.rng.below(1000) {
            0..875 => PoliceFate::Ok,
            875..925 => PoliceFate::LateOpen,
            925..955 => PoliceFate::NoAck,
            955..975 => PoliceFate::AckLate,
            975..995 => PoliceFate::Failed,
            _ => PoliceFate::FailedTwice,
        };
        let role = self.rng.below(2) as u8;
        let lacks_roles = self.orgs[usize::from(muni)]
            .lacks_roles_from
            .is_some_and(|from| from <= sent && sent < ROLES_BACK);
        let fate = match drawn {
            _ if channel == Channel::Altinn && lacks_roles => PoliceFate::NoAccess,
            PoliceFate::Failed if channel == Channel::Altinn => PoliceFate::Ok,
            PoliceFate::FailedTwice if channel != Channel::Eformidling => PoliceFate::Ok,
            f => f,
        };

        let msg = self.new_message(Prefix::Pol, police, muni, category, channel, sent);
        let websak = self.stream(police, POLICE_WEBSAK);
        let police_altinn = self.stream(police, POLICE_ALTINN);
        // Altinn: the sender's adapter reports delivery, the recipient's adapter the
        // reading; eFormidling and FIKS IO: the recipient's fiks-mottak and case system.
        let (deliverer, reader) = if channel == Channel::Altinn {
            (police_altinn, self.stream(muni, MUNI_ALTINN))
        } else {
            (self.stream(muni, MUNI_FIKS), self.stream(muni, MUNI_CASE))
        };
        let first = self.push(sent, msg, websak, Kind::Sent, 0);
        let mut c = Cursor(sent);
        match fate {
            PoliceFate::Ok => {
                let d = self.rng.range(5 * MIN, 15 * MIN);
                let o = self.rng.range(0, 5 * DAY);
                let a = self.rng.range(o + HOUR, 13 * DAY);
                self.push(c.at(sent + d), msg, deliverer, Kind::Delivered, 0);
                self.push(c.at(sent + o), msg, reader, Kind::Opened, role);
                self.push(c.at(sent + a), msg, reader, Kind::Acknowledged, 0);
                self.settle(msg, Verdict::Completed, F_OK);
                if channel == Channel::Altinn {
                    self.obd_candidates.push(first);
                }
            }
            PoliceFate::LateOpen => {
                let d = self.rng.range(5 * MIN, 15 * MIN);
                let o = self.rng.range(8 * DAY, 25 * DAY);
                self.push(c.at(sent + d), msg, deliverer, Kind::Delivered, 0);
                let opened = c.at(sent + o);
                self.push(opened, msg, reader, Kind::Opened, role);
                self.push(c.at(opened + DAY), msg, reader, Kind::Acknowledged, 0);
                self.settle(msg, Verdict::Late, 0);
            }
            PoliceFate::NoAck => {
                let d = self.rng.range(5 * MIN, 15 * MIN);
                let o = self.rng.range(0, 5 * DAY);
                self.push(c.at(sent + d), msg, deliverer, Kind::Delivered, 0);
                self.push(c.at(sent + o), msg, reader, Kind::Opened, role);
                self.settle(msg, Verdict::AtRisk, 0);
            }
            PoliceFate::AckLate => {
                let d = self.rng.range(5 * MIN, 15 * MIN);
                let o = self.rng.range(0, 5 * DAY);
                let a = self.rng.range(15 * DAY, 25 * DAY);
                self.push(c.at(sent + d), msg, deliverer, Kind::Delivered, 0);
                self.push(c.at(sent + o), msg, reader, Kind::Opened, role);
                self.push(c.at(sent + a), msg, reader, Kind::Acknowledged, 0);
                self.settle(msg, Verdict::Late, 0);
            }
            PoliceFate::Failed => {
                let f = self.rng.range(5 * MIN, 30 * MIN);
                let r = self.rng.range(2 * DAY, 4 * DAY);
                let a = self.rng.range(DAY, 2 * DAY);
                self.push(c.at(sent + f), msg, websak, Kind::Failed, channel.error());
                self.losses.push((msg, "failed", true));
                let resent = c.at(sent + DAY);
                let letter = self.resend(msg, websak, Suffix::Brev, Channel::Letter, resent);
                let received = c.at(resent + r);
                self.push(received, letter, websak, Kind::Received, 0);
                self.push(c.at(received + a), letter, websak, Kind::Acknowledged, 0);
                self.settle(msg, Verdict::Completed, 0);
                self.settle(letter, Verdict::Completed, 0);
            }
            PoliceFate::FailedTwice => {
                self.push(
                    c.at(sent + 10 * MIN),
                    msg,
                    websak,
                    Kind::Failed,
                    channel.error(),
                );
                let r1_at = c.at(sent + HOUR);
                let r1 = self.resend(msg, websak, Suffix::R1, Channel::Email, r1_at);
                let error = Channel::Email.error();
                self.push(c.at(r1_at + 10 * MIN), r1, websak, Kind::Failed, error);
                // Both failures end when the letter (the second resend) arrives.
                self.losses.push((msg, "failed", true));
                self.losses.push((r1, "failed", true));
                let r2_at = c.at(sent + DAY);
                let r2 = self.resend(r1, websak, Suffix::R2, Channel::Letter, r2_at);
                self.push(c.at(sent + 3 * DAY), r2, websak, Kind::Received, 0);
                self.push(c.at(sent + 4 * DAY), r2, websak, Kind::Acknowledged, 0);
                for m in [msg, r1, r2] {
                    self.settle(m, Verdict::Completed, 0);
                }
            }
            PoliceFate::NoAccess => {
                let d = self.rng.range(5 * MIN, 15 * MIN);
                let response = self.rng.below(100);
                self.push(c.at(sent + d), msg, police_altinn, Kind::Delivered, 0);
                let expired = c.at(sent + 30 * DAY);
                self.push(expired, msg, police_altinn, Kind::Expired, 0);
                // Expired unread; a resend's receipt (a letter's open) ends it.
                self.losses.push((msg, "lost_unread", response < 95));
                if response >= 95 {
                    // Never resent: still lost at T_END.
                    self.settle(msg, Verdict::Lost, 0);
                    return;
                }
                let day = self.rng.range(RESPONSE_FIRST / DAY, RESPONSE_LAST / DAY) * DAY;
                let time = self.rng.range(8 * HOUR, 15 * HOUR);
                let r = self.rng.range(2 * DAY, 5 * DAY);
                let a = self.rng.range(DAY, 3 * DAY);
                let resent = c.at((day + time).max(expired + DAY));
                let letter = self.resend(msg, websak, Suffix::Brev, Channel::Letter, resent);
                let received = c.at(resent + r);
                self.push(received, letter, websak, Kind::Received, 0);
                let ack = c.at(received + a);
                self.push(ack, letter, websak, Kind::Acknowledged, 0);
                if response < 85 {
                    let z = self.rng.range(0, 5 * DAY);
                    self.push(c.at(ack + z), msg, websak, Kind::Resolved, RESOLVED_RESENT);
                    self.settle(msg, Verdict::Resolved, 0);
                    self.settle(letter, Verdict::Resolved, 0);
                } else {
                    // The letter's receipt opens the original, long after its deadline.
                    self.settle(msg, Verdict::Late, 0);
                    self.settle(letter, Verdict::Completed, 0);
                }
            }
        }
    }

    /// Portal → municipality, handed off from `fiks-mottak` to the case system: 25 %.
    fn portal_report(&mut self) {
        let k = self.rng.index(MUNICIPALITIES);
        let muni = self.municipalities[k];
        let sent = self.send_time();
        let bug = self.rng.below(1000);
        let unread = self.rng.below(1000);
        let h = self.rng.range(5 * MIN, 30 * MIN);
        let lost = self.orgs[usize::from(muni)].familia
            && (BUG_FROM..BUG_UNTIL).contains(&sent)
            && bug < 30;

        let msg = self.new_message(
            Prefix::Portal,
            self.portal,
            muni,
            Category::Bekymringsmelding,
            Channel::Portal,
            sent,
        );
        let portal = self.stream(self.portal, 0);
        let fiks = self.stream(muni, MUNI_FIKS);
        let case = self.stream(muni, MUNI_CASE);
        self.push(sent, msg, portal, Kind::Sent, 0);
        let mut c = Cursor(sent);
        let hop = c.at(sent + h);
        self.push(hop, msg, fiks, Kind::HandedOff, 0);
        if lost {
            self.anomalies.push((Anomaly::HandoffNeverReceived, msg));
            if self.rng.below(8) == 0 {
                let at = self.rng.range(JUNE_2023, T_END_AT - HOUR);
                self.push(c.at(at), msg, case, Kind::Resolved, RESOLVED_OTHER_CHANNEL);
                self.settle(msg, Verdict::Resolved, 0);
            } else {
                self.settle(msg, Verdict::StuckInHandoff, 0);
            }
            return;
        }
        let r = self.rng.range(5 * MIN, 30 * MIN);
        self.push(c.at(hop + r), msg, case, Kind::Received, 0);
        if unread < 20 {
            // Received is not opened: the open deadline passes.
            self.settle(msg, Verdict::AtRisk, 0);
            return;
        }
        let o = self.rng.range(0, 5 * DAY);
        let a = self.rng.range(o + HOUR, 13 * DAY);
        let role = self.rng.below(2) as u8;
        self.push(c.at(sent + o), msg, case, Kind::Opened, role);
        self.push(c.at(sent + a), msg, case, Kind::Acknowledged, 0);
        self.settle(msg, Verdict::Completed, 0);
    }

    /// Municipality → another public body, a document: 15 %.
    fn municipal_document(&mut self) {
        let k = self.rng.index(MUNICIPALITIES);
        let muni = self.municipalities[k];
        let body = self.bodies[self.rng.index(OTHER_BODIES)];
        let channel = if self.rng.below(10) < 7 {
            Channel::Eformidling
        } else {
            Channel::Email
        };
        let sent = self.send_time();
        let broken = self.rng.below(100);
        let unread = self.rng.below(1000);

        let msg = self.new_message(Prefix::Kom, muni, body, Category::Document, channel, sent);
        let case = self.stream(muni, MUNI_CASE);
        let fiks = self.stream(muni, MUNI_FIKS);
        self.push(sent, msg, case, Kind::Sent, 0);
        let mut c = Cursor(sent);
        if self.orgs[usize::from(muni)].broken && broken < 40 {
            let f = self.rng.range(5 * MIN, 30 * MIN);
            self.push(c.at(sent + f), msg, fiks, Kind::Failed, ERROR_BROKEN);
            self.losses.push((msg, "failed", false));
            self.settle(msg, Verdict::Lost, 0);
            return;
        }
        let d = self.rng.range(5 * MIN, 15 * MIN);
        self.push(c.at(sent + d), msg, fiks, Kind::Delivered, 0);
        if unread < 30 {
            self.settle(msg, Verdict::AtRisk, 0);
            return;
        }
        let o = self.rng.range(0, 20 * DAY);
        let role = 1 + self.rng.below(2) as u8;
        let reader = self.stream(body, 0);
        self.push(c.at(sent + o), msg, reader, Kind::Opened, role);
        self.settle(msg, Verdict::Completed, 0);
    }

    /// Fresh cohort: a police report by altinn in the last five days, delivered,
    /// unopened → `open`.
    fn fresh_report(&mut self) {
        let k = self.rng.index(MUNICIPALITIES);
        let (muni, police) = (self.municipalities[k], self.police[k % POLICE]);
        let sent = self.rng.range(T_END_AT - 5 * DAY, T_END_AT - DAY);
        let d = self.rng.range(5 * MIN, 15 * MIN);
        let msg = self.new_message(
            Prefix::Pol,
            police,
            muni,
            Category::Bekymringsmelding,
            Channel::Altinn,
            sent,
        );
        let websak = self.stream(police, POLICE_WEBSAK);
        let police_altinn = self.stream(police, POLICE_ALTINN);
        self.push(sent, msg, websak, Kind::Sent, 0);
        self.push(sent + d, msg, police_altinn, Kind::Delivered, 0);
        self.settle(msg, Verdict::Open, 0);
    }

    /// Fresh cohort: a municipal document by altinn sent 25 days before T_END,
    /// delivered, unopened → `at_risk` (expiry warning).
    fn fresh_document(&mut self) {
        let k = self.rng.index(MUNICIPALITIES);
        let muni = self.municipalities[k];
        let body = self.bodies[self.rng.index(OTHER_BODIES)];
        let sent = T_END_AT - 25 * DAY + self.rng.range(0, DAY - HOUR);
        let d = self.rng.range(5 * MIN, 15 * MIN);
        let msg = self.new_message(
            Prefix::Kom,
            muni,
            body,
            Category::Document,
            Channel::Altinn,
            sent,
        );
        let case = self.stream(muni, MUNI_CASE);
        let altinn = self.stream(muni, MUNI_ALTINN);
        self.push(sent, msg, case, Kind::Sent, 0);
        self.push(sent + d, msg, altinn, Kind::Delivered, 0);
        self.settle(msg, Verdict::AtRisk, 0);
    }

    /// `opened` events for the never-sent ids `GHOST-1 … GHOST-10`.
    fn ghosts(&mut self) {
        for _ in 0..GHOSTS {
            let k = self.rng.index(MUNICIPALITIES);
            let muni = self.municipalities[k];
            let at = self.send_time();
            let role = self.rng.below(2) as u8;
            let msg = self.new_message(
                Prefix::Ghost,
                muni,
                muni,
                Category::Document,
                Channel::Altinn,
                at,
            );
            let altinn = self.stream(muni, MUNI_ALTINN);
            self.push(at, msg, altinn, Kind::Opened, role);
            // An orphan has no deadlines; its open makes it `completed`.
            self.settle(msg, Verdict::Completed, 0);
            self.anomalies.push((Anomaly::EventForUnknownMessage, msg));
        }
    }

    /// Ten `ok` altinn police reports get `delivered` at +30 min and `opened` at
    /// +20 min (before the sort, so their reporter numbers follow the new order).
    fn inject_opened_before_delivered(&mut self) {
        let n = self.obd_candidates.len();
        for i in 0..n.min(INJECTED_OBD) {
            let j = i + self.rng.index(n - i);
            self.obd_candidates.swap(i, j);
            let first = self.obd_candidates[i] as usize;
            let sent = self.events[first].at;
            let msg = self.events[first].msg;
            debug_assert_eq!(self.events[first + 1].kind, Kind::Delivered);
            debug_assert_eq!(self.events[first + 2].kind, Kind::Opened);
            debug_assert_eq!(self.events[first + 3].kind, Kind::Acknowledged);
            self.events[first + 1].at = sent + 30 * MIN;
            self.events[first + 2].at = sent + 20 * MIN;
            let ack = &mut self.events[first + 3];
            ack.at = ack.at.max(sent + 35 * MIN);
            self.msgs[msg as usize].flags |= F_OBD;
            self.anomalies.push((Anomaly::OpenedBeforeDelivered, msg));
        }
    }

    /// Drops ~0.2 % of the `altinn-adapter` `delivered` events of `ok` reports, never
    /// the last event of its stream, and records the resulting gaps. Runs on the sorted
    /// events, numbering each stream as the writer does.
    fn drop_delivered(&mut self) {
        let mut totals = vec![0u32; self.streams.len()];
        for e in &self.events {
            totals[usize::from(e.stream)] += 1;
        }
        let mut counters = vec![0u32; self.streams.len()];
        let mut dropped: Vec<(u16, u32)> = Vec::new();
        for e in &mut self.events {
            let s = usize::from(e.stream);
            counters[s] += 1;
            let seq = counters[s];
            if e.kind != Kind::Delivered || self.streams[s].system != ALTINN_ADAPTER {
                continue;
            }
            let flags = self.msgs[e.msg as usize].flags;
            if flags & F_OK == 0 || flags & F_OBD != 0 {
                continue;
            }
            if self.rng.below(1000) < 2 && seq < totals[s] {
                e.aux |= DROPPED;
                dropped.push((e.stream, seq));
            }
        }
        self.dropped = dropped.len();
        dropped.sort_unstable();
        for (stream, seq) in dropped {
            match self.gaps.last_mut() {
                Some(gap) if gap.0 == stream && gap.2 + 1 == seq => gap.2 = seq,
                _ => self.gaps.push((stream, seq, seq)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The scenario.

/// A generated scenario: its events (compact, rendered while writing) and its truth.
pub struct Scenario {
    seed: u64,
    messages: usize,
    orgs: Vec<Org>,
    streams: Vec<Stream>,
    police: Vec<u16>,
    msgs: Vec<Msg>,
    /// In append order; some carry `DROPPED`.
    events: Vec<Ev>,
    dropped: usize,
    anomalies: Vec<(Anomaly, u32)>,
    /// Loss incidents: (message, `lost_unread` or `failed`, ended by a resend's open).
    losses: Vec<(u32, &'static str, bool)>,
    gaps: Vec<(u16, u32, u32)>,
    truth: OnceLock<Truth>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("seed", &self.seed)
            .field("messages", &self.messages)
            .field("message_ids", &self.msgs.len())
            .field("events", &self.event_count())
            .finish_non_exhaustive()
    }
}

/// A row of `police-export.csv` or `municipality.csv`.
struct CsvRow {
    message: String,
    reference: String,
    at: String,
}

/// The two reconcile lists and the district-1 messages no received row matches.
struct Lists {
    sent: Vec<CsvRow>,
    received: Vec<CsvRow>,
    /// Rows of `sent` and `received` that are invented (at the end of each list).
    invented_sent: usize,
    invented_received: usize,
    unreceived: Vec<u32>,
}

impl Scenario {
    /// Number of events written (dropped ones excluded).
    pub fn event_count(&self) -> usize {
        self.events.len() - self.dropped
    }

    /// Writes the events as JSON Lines in append order (sorted by `at`, ties by
    /// generation order); one event per line.
    pub fn write_events(&self, w: &mut dyn io::Write) -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(1 << 16, w);
        self.for_each_event(&mut |line| {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")
        })?;
        out.flush()
    }

    /// Calls `f` with each event's JSON text (no newline) in append order (for batching
    /// appends without a file).
    pub fn for_each_event(&self, f: &mut dyn FnMut(&str) -> io::Result<()>) -> io::Result<()> {
        let mut counters = vec![0u32; self.streams.len()];
        let mut line = String::with_capacity(512);
        for e in &self.events {
            let counter = &mut counters[usize::from(e.stream)];
            *counter += 1;
            let seq = *counter;
            if e.aux & DROPPED != 0 {
                continue;
            }
            line.clear();
            self.write_json(&mut line, e, seq);
            f(&line)?;
        }
        Ok(())
    }

    /// The ground truth (built on first use).
    pub fn truth(&self) -> &Truth {
        self.truth.get_or_init(|| self.build_truth())
    }

    /// `police-export.csv`: every original message of police district 1 (Oslo) with its
    /// websak ref and send time, by time, then 5 invented rows. Header `message,ref,at`.
    pub fn police_export_csv(&self) -> String {
        csv(&self.lists().sent)
    }

    /// `municipality.csv`: those district-1 messages with an own `opened` event (by
    /// altinn ref with `message` empty where the channel is altinn, else by message
    /// id), by first opening time, then 3 invented rows. Header `message,ref,at`.
    pub fn municipality_csv(&self) -> String {
        csv(&self.lists().received)
    }

    /// `organisations.csv`: the scenario's organisations in the shape of the
    /// Enhetsregisteret's download (`organisasjonsnummer,navn,organisasjonsform.kode`).
    /// Every number is fictitious and every name says `(demo)`: no real
    /// organisation is given a number it does not have.
    pub fn organisations_csv(&self) -> String {
        const DISTRICTS: [&str; POLICE] = [
            "Oslo",
            "Øst",
            "Innlandet",
            "Sør-Øst",
            "Agder",
            "Sør-Vest",
            "Vest",
            "Møre og Romsdal",
            "Trøndelag",
            "Nordland",
            "Troms",
            "Finnmark",
        ];
        let mut out = String::from("organisasjonsnummer,navn,organisasjonsform.kode\n");
        for i in 0..self.orgs.len() {
            let (name, kind) = match i {
                i if i < POLICE => (format!("{} politidistrikt (demo)", DISTRICTS[i]), "ORGL"),
                i if i < POLICE + MUNICIPALITIES => {
                    (format!("Kommune {:03} (demo)", i - POLICE + 1), "KOMM")
                }
                i if i == POLICE + MUNICIPALITIES => ("Bekymringsportalen (demo)".into(), "ORGL"),
                i => (
                    format!("Statsetat {:02} (demo)", i - POLICE - MUNICIPALITIES),
                    "STAT",
                ),
            };
            let _ = writeln!(out, "{},{name},{kind}", self.org_number(i as u16));
        }
        out
    }

    fn org_number(&self, org: u16) -> &str {
        std::str::from_utf8(&self.orgs[usize::from(org)].number).expect("ASCII digits")
    }

    fn case_system(&self, municipality: u16) -> &'static str {
        let org = &self.orgs[usize::from(municipality)];
        self.streams[usize::from(org.streams + MUNI_CASE)].system
    }

    fn push_name(&self, out: &mut String, index: u32) {
        let m = &self.msgs[index as usize];
        let _ = match m.prefix {
            Prefix::Ghost => write!(out, "GHOST-{}", m.num),
            p => write!(out, "{}-{:06}", p.name(), m.num),
        };
        out.push_str(m.suffix.name());
    }

    fn name(&self, index: u32) -> String {
        let mut s = String::with_capacity(20);
        self.push_name(&mut s, index);
        s
    }

    fn push_websak_ref(&self, out: &mut String, index: u32) {
        let m = &self.msgs[index as usize];
        let _ = write!(out, "{}/{:05}-1", year_of(m.sent_at), m.num);
    }

    fn push_altinn_ref(&self, out: &mut String, index: u32) {
        push_hex(out, &hash_words::<2>(self.seed, TAG_ALTINN, index));
    }

    /// The refs of a police report as `key=value` joined by `;`, sorted by key.
    fn refs_string(&self, index: u32) -> String {
        let mut s = String::new();
        if self.msgs[index as usize].channel == Channel::Altinn {
            s.push_str("altinn=");
            self.push_altinn_ref(&mut s, index);
            s.push(';');
        }
        s.push_str("websak=");
        self.push_websak_ref(&mut s, index);
        s
    }

    fn write_json(&self, out: &mut String, e: &Ev, seq: u32) {
        let stream = self.streams[usize::from(e.stream)];
        let system = stream.system;
        let org = self.org_number(stream.org);
        let m = &self.msgs[e.msg as usize];
        let about = if e.kind == Kind::Resent {
            m.parent
        } else {
            e.msg
        };
        let _ = write!(
            out,
            "{{\"id\":\"{system}-{org}-e{seq}\",\"type\":\"{}\",\"message\":\"",
            e.kind.name()
        );
        self.push_name(out, about);
        out.push_str("\",\"at\":\"");
        push_time(out, e.at);
        let _ = write!(
            out,
            "\",\"reporter\":{{\"org\":\"{org}\",\"system\":\"{system}\",\"seq\":{seq}}}"
        );
        if e.kind != Kind::Sent {
            // Format 2: every event names its message's parties (a resend keeps
            // its original's).
            let about = &self.msgs[about as usize];
            let _ = write!(
                out,
                ",\"from\":\"{}\",\"to\":\"{}\"",
                self.org_number(about.from),
                self.org_number(about.to)
            );
        }
        let aux = usize::from(e.aux & !DROPPED);
        match e.kind {
            Kind::Sent => self.write_sent(out, e.msg),
            Kind::HandedOff => {
                let _ = write!(
                    out,
                    ",\"from_system\":\"{FIKS_MOTTAK}\",\"to_system\":\"{}\"",
                    self.case_system(m.to)
                );
            }
            Kind::Received => {
                if m.suffix == Suffix::Original {
                    let _ = write!(
                        out,
                        ",\"system\":\"{system}\",\"journal_ref\":\"{}/{:06}\"",
                        year_of(e.at),
                        m.num
                    );
                } else {
                    let _ = write!(out, ",\"system\":\"{POST_KVITTERING}\"");
                }
            }
            Kind::Opened => {
                let _ = write!(out, ",\"by_role\":\"{}\"", ROLES[aux]);
            }
            Kind::Failed => {
                let _ = write!(out, ",\"error\":\"{}\"", ERRORS[aux]);
            }
            Kind::Resent => {
                out.push_str(",\"new_message\":\"");
                self.push_name(out, e.msg);
                let _ = write!(out, "\",\"channel\":\"{}\"", m.channel.name());
            }
            Kind::Resolved => {
                let _ = write!(out, ",\"outcome\":\"{}\"", RESOLUTIONS[aux]);
            }
            // delivered, acknowledged, expired: nothing beyond the common fields
            _ => {}
        }
        out.push('}');
    }

    fn write_sent(&self, out: &mut String, index: u32) {
        let m = &self.msgs[index as usize];
        let _ = write!(
            out,
            ",\"from\":\"{}\",\"to\":\"{}\",\"channel\":\"{}\",\"category\":\"{}\",\
             \"content_digest\":\"sha256:",
            self.org_number(m.from),
            self.org_number(m.to),
            m.channel.name(),
            m.category.name()
        );
        push_hex(out, &hash_words::<4>(self.seed, TAG_DIGEST, index));
        out.push('"');
        if m.channel == Channel::Altinn {
            out.push_str(",\"expires_at\":\"");
            push_time(out, m.sent_at + 30 * DAY);
            out.push('"');
        }
        if m.prefix == Prefix::Pol {
            out.push_str(",\"refs\":{");
            if m.channel == Channel::Altinn {
                out.push_str("\"altinn\":\"");
                self.push_altinn_ref(out, index);
                out.push_str("\",");
            }
            out.push_str("\"websak\":\"");
            self.push_websak_ref(out, index);
            out.push_str("\"}");
        }
    }

    fn lists(&self) -> Lists {
        let oslo = self.police[0];
        let mut district: Vec<u32> = self
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.prefix == Prefix::Pol && m.suffix == Suffix::Original && m.from == oslo
            })
            .map(|(i, _)| i as u32)
            .collect();
        district.sort_by_key(|&i| (self.msgs[i as usize].sent_at, i));

        let mut sent: Vec<CsvRow> = district
            .iter()
            .map(|&i| {
                let mut reference = String::new();
                self.push_websak_ref(&mut reference, i);
                CsvRow {
                    message: self.name(i),
                    reference,
                    at: time_string(self.msgs[i as usize].sent_at),
                }
            })
            .collect();
        let invented_sent = 5;
        sent.extend((1..=invented_sent).map(|k| CsvRow {
            message: format!("POL-X{k:05}"),
            reference: format!("1999/{k:05}-1"),
            at: format!("2022-{:02}-15T10:00:00Z", 2 * k),
        }));

        // First own `opened` of each district-1 message (events are in `at` order).
        let wanted: HashSet<u32> = district.iter().copied().collect();
        let mut opened: HashMap<u32, u32> = HashMap::new();
        for e in &self.events {
            if e.kind == Kind::Opened && wanted.contains(&e.msg) {
                opened.entry(e.msg).or_insert(e.at);
            }
        }
        let mut by_time: Vec<(u32, u32)> = opened.iter().map(|(&m, &at)| (at, m)).collect();
        by_time.sort_unstable();
        let mut received: Vec<CsvRow> = by_time
            .into_iter()
            .map(|(at, i)| {
                if self.msgs[i as usize].channel == Channel::Altinn {
                    let mut reference = String::new();
                    self.push_altinn_ref(&mut reference, i);
                    CsvRow {
                        message: String::new(),
                        reference,
                        at: time_string(at),
                    }
                } else {
                    CsvRow {
                        message: self.name(i),
                        reference: String::new(),
                        at: time_string(at),
                    }
                }
            })
            .collect();
        let invented_received = 3;
        received.extend((1..=invented_received).map(|k| CsvRow {
            message: String::new(),
            reference: hex_string(&hash_words::<2>(self.seed, TAG_INVENTED, k)),
            at: format!("2023-0{k}-10T12:00:00Z"),
        }));

        let unreceived = district
            .into_iter()
            .filter(|i| !opened.contains_key(i))
            .collect();
        Lists {
            sent,
            received,
            invented_sent: invented_sent as usize,
            invented_received: invented_received as usize,
            unreceived,
        }
    }

    fn reconcile_truth(&self) -> Vec<TruthReconcile> {
        let lists = self.lists();
        let mut rows = Vec::new();
        let row = |class: &str, list: &str, line: Option<usize>, message: String, r: String| {
            TruthReconcile {
                class: class.to_owned(),
                list: list.to_owned(),
                line: line.map(|l| l as u64),
                message,
                r#ref: r,
            }
        };
        // Data rows start on line 2, after the header.
        let first_invented = lists.sent.len() - lists.invented_sent;
        for (k, r) in lists.sent.into_iter().enumerate().skip(first_invented) {
            rows.push(row(
                "sent_not_in_ledger",
                "sent",
                Some(k + 2),
                r.message,
                r.reference,
            ));
        }
        for &i in &lists.unreceived {
            rows.push(row(
                "in_ledger_not_received",
                "ledger",
                None,
                self.name(i),
                self.refs_string(i),
            ));
        }
        let first_invented = lists.received.len() - lists.invented_received;
        for (k, r) in lists.received.into_iter().enumerate().skip(first_invented) {
            rows.push(row(
                "received_not_sent",
                "received",
                Some(k + 2),
                r.message,
                r.reference,
            ));
        }
        rows.sort_by(|a, b| reconcile_key(a).cmp(&reconcile_key(b)));
        rows
    }

    fn build_truth(&self) -> Truth {
        let verdicts = self
            .msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (self.name(i as u32), m.verdict.name().to_owned()))
            .collect();
        let mut anomalies: Vec<TruthAnomaly> = self
            .anomalies
            .iter()
            .map(|&(kind, m)| TruthAnomaly {
                kind: kind.name().to_owned(),
                message: self.name(m),
            })
            .collect();
        anomalies.sort();
        let mut gaps: Vec<TruthGap> = self
            .gaps
            .iter()
            .map(|&(s, from, to)| {
                let stream = self.streams[usize::from(s)];
                TruthGap {
                    org: self.org_number(stream.org).to_owned(),
                    system: stream.system.to_owned(),
                    from: u64::from(from),
                    to: u64::from(to),
                }
            })
            .collect();
        gaps.sort();
        let mut ever_lost: Vec<TruthIncident> = self
            .losses
            .iter()
            .map(|&(m, kind, ended)| TruthIncident {
                kind: kind.to_owned(),
                message: self.name(m),
                ended_by: ended.then(|| "resend_opened".to_owned()),
            })
            .collect();
        ever_lost.sort();
        Truth {
            now: T_END.to_owned(),
            seed: self.seed,
            messages: self.messages,
            verdicts,
            anomalies,
            gaps,
            ever_lost,
            reconcile: self.reconcile_truth(),
        }
    }
}

/// §7 order: class in table order (`ambiguous_ref` last), list, line, message.
fn reconcile_key(r: &TruthReconcile) -> (usize, usize, Option<u64>, &str) {
    const CLASSES: [&str; 4] = [
        "sent_not_in_ledger",
        "in_ledger_not_received",
        "received_not_sent",
        "ambiguous_ref",
    ];
    const LISTS: [&str; 3] = ["sent", "received", "ledger"];
    let class = CLASSES
        .iter()
        .position(|c| *c == r.class)
        .unwrap_or(CLASSES.len());
    let list = LISTS
        .iter()
        .position(|l| *l == r.list)
        .unwrap_or(LISTS.len());
    (class, list, r.line, r.message.as_str())
}

fn csv(rows: &[CsvRow]) -> String {
    let mut s = String::with_capacity(32 + rows.len() * 64);
    s.push_str("message,ref,at\n");
    for r in rows {
        s.push_str(&r.message);
        s.push(',');
        s.push_str(&r.reference);
        s.push(',');
        s.push_str(&r.at);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests;
