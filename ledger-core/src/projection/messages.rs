//! The facts of every message, split into a fixed number of shards by a stable hash
//! of the message id, so loading and judging a million messages can use every core
//! (each shard is persisted, decoded and judged on its own).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

use super::facts::MessageFacts;
use super::names::Names;

/// Number of shards. Part of the persisted layout (`projection.facts` version 2):
/// changing it, or [`shard_of`], needs a new file version.
pub(crate) const SHARDS: usize = 16;

/// One shard. foldhash is seeded per process, so ids chosen by reporters cannot be
/// crafted to collide. Facts are boxed: a table sized for growth would otherwise hold
/// a kilobyte per empty bucket.
pub(crate) type Shard = HashMap<String, Box<MessageFacts>, foldhash::fast::RandomState>;

/// Which shard holds a message: stable across processes and machines.
fn shard_of(id: &str) -> usize {
    crc32c::crc32c(id.as_bytes()) as usize % SHARDS
}

/// Every message's facts, by id.
#[derive(Clone, Debug)]
pub(crate) struct MessageMap {
    shards: Vec<Shard>,
    /// Format-2 keys by their bare message id: two organisations may use one id, and
    /// a reader asks by the id it knows.
    scoped: ScopedIndex,
}

impl Default for MessageMap {
    fn default() -> Self {
        MessageMap {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            scoped: ScopedIndex::default(),
        }
    }
}

/// Two maps of messages are equal when their facts are: the index of bare ids is
/// made from them.
impl PartialEq for MessageMap {
    fn eq(&self, other: &Self) -> bool {
        self.shards == other.shards
    }
}

impl Eq for MessageMap {}

/// The parties of the format-2 messages of each bare id, without a second copy of
/// any key: a key is `FROM␟TO␟ID` with two organisation numbers, so it is kept as
/// the two numbers (one `u64`) under a per-process hash of `ID`, and rebuilt and
/// looked up when asked. A hash that two ids share only costs a lookup that finds
/// nothing. Keys of another shape (none that validation lets through) are kept
/// whole.
#[derive(Clone, Debug, Default)]
struct ScopedIndex {
    hasher: foldhash::fast::RandomState,
    /// The first parties seen for an id's hash, and any further ones.
    first: HashMap<u64, u64, foldhash::fast::RandomState>,
    more: HashMap<u64, Vec<u64>, foldhash::fast::RandomState>,
    odd: HashMap<String, Vec<String>, foldhash::fast::RandomState>,
}

/// The two organisation numbers of a format-2 key, packed, if they are that.
fn parties(from: &str, to: &str) -> Option<u64> {
    let number = |s: &str| {
        (s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some(u64::from(number(from)?) << 32 | u64::from(number(to)?))
}

impl ScopedIndex {
    fn insert(&mut self, key: &str) {
        let (Some((from, to)), id) = crate::event::split_message_key(key) else {
            return;
        };
        let Some(p) = parties(from, to) else {
            self.odd
                .entry(id.to_string())
                .or_default()
                .push(key.to_string());
            return;
        };
        let h = self.hasher.hash_one(id);
        match self.first.entry(h) {
            Entry::Vacant(e) => {
                e.insert(p);
            }
            Entry::Occupied(e) if *e.get() == p => {}
            Entry::Occupied(_) => {
                let more = self.more.entry(h).or_default();
                if !more.contains(&p) {
                    more.push(p);
                }
            }
        }
    }

    /// The keys that may have bare id `id` (the caller looks each up).
    fn candidates(&self, id: &str) -> Vec<String> {
        let h = self.hasher.hash_one(id);
        let mut out: Vec<String> = self
            .first
            .get(&h)
            .into_iter()
            .chain(self.more.get(&h).into_iter().flatten())
            .map(|p| {
                crate::event::message_key(
                    2,
                    &format!("{:09}", p >> 32),
                    &format!("{:09}", p & 0xffff_ffff),
                    id,
                )
                .into_owned()
            })
            .collect();
        out.extend(self.odd.get(id).into_iter().flatten().cloned());
        out
    }
}

impl MessageMap {
    /// From decoded shards; `None` if there are not [`SHARDS`] of them or a message
    /// sits in the wrong one (the file was written with another layout).
    pub(crate) fn from_shards(shards: Vec<Shard>) -> Option<MessageMap> {
        let placed = shards.len() == SHARDS
            && shards
                .iter()
                .enumerate()
                .all(|(i, s)| s.keys().all(|k| shard_of(k) == i));
        if !placed {
            return None;
        }
        let mut scoped = ScopedIndex::default();
        for k in shards.iter().flat_map(|s| s.keys()) {
            scoped.insert(k);
        }
        Some(MessageMap { shards, scoped })
    }

    /// The format-2 keys whose bare message id is `id`, in key order.
    pub(crate) fn scoped_keys(&self, id: &str) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .scoped
            .candidates(id)
            .iter()
            .filter_map(|k| self.get_key_value(k).map(|(k, _)| k.as_str()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The shards, in order.
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub(crate) fn get(&self, id: &str) -> Option<&MessageFacts> {
        self.shards[shard_of(id)].get(id).map(|m| &**m)
    }

    pub(crate) fn get_key_value(&self, id: &str) -> Option<(&String, &MessageFacts)> {
        self.shards[shard_of(id)]
            .get_key_value(id)
            .map(|(k, m)| (k, &**m))
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut MessageFacts> {
        self.shards[shard_of(id)].get_mut(id).map(|m| &mut **m)
    }

    /// The message's facts, created empty if it is new.
    pub(crate) fn entry(&mut self, id: &str) -> &mut MessageFacts {
        let shard = &mut self.shards[shard_of(id)];
        if !shard.contains_key(id) {
            shard.insert(id.to_string(), Box::default());
            self.scoped.insert(id);
        }
        shard.get_mut(id).expect("inserted")
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &MessageFacts)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, m)| (k, &**m)))
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(Shard::len).sum()
    }
}

/// Decodes one shard written as a sequence of (id, facts) pairs, sized up front from
/// the sequence's length (bounded by `max_len`, so a damaged length cannot ask for
/// unbounded memory), and refusing an id twice.
pub(crate) struct ShardSeed {
    pub max_len: usize,
}

impl<'de> DeserializeSeed<'de> for ShardSeed {
    type Value = (Shard, Names);

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

/// A shard and the names its messages share.
impl<'de> Visitor<'de> for ShardSeed {
    type Value = (Shard, Names);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence of (message id, facts)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let n = seq.size_hint().unwrap_or(0).min(self.max_len);
        let mut shard = Shard::with_capacity_and_hasher(n, Default::default());
        let mut names = Names::default();
        while let Some((id, mut m)) = seq.next_element::<(String, Box<MessageFacts>)>()? {
            m.share_names(&mut names);
            match shard.entry(id) {
                Entry::Occupied(e) => {
                    return Err(de::Error::custom(format!(
                        "message {:?} appears twice",
                        e.key()
                    )));
                }
                Entry::Vacant(e) => {
                    e.insert(m);
                }
            }
        }
        Ok((shard, names))
    }
}

/// Runs `f` on every shard index, spread over the machine's cores; results in order.
pub(crate) fn per_shard<T: Send>(f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(SHARDS);
    let mut out: Vec<Option<T>> = (0..SHARDS).map(|_| None).collect();
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..SHARDS)
                        .step_by(threads)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a shard worker panicked") {
                out[i] = Some(r);
            }
        }
    });
    out.into_iter().map(|r| r.expect("every shard")).collect()
}
