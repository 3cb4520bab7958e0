//! Interned names: the organisations, channels and categories a million messages
//! share are a few hundred strings. Each message points at one shared copy, so the
//! facts take less memory and judging them reads strings that stay in the cache
//! (a question compares a message's channel and category with the policy's and
//! groups by its sender, for every message).

use std::sync::Arc;

/// A shared, immutable name.
pub type Name = Arc<str>;

/// The set of names seen so far. A cache: two sets are always equal, so facts
/// compare by what they say, not by what was interned along the way.
#[derive(Clone, Default)]
pub(crate) struct Names(foldhash::HashSet<Name>);

impl Names {
    /// The shared copy of `s`, made on first sight.
    pub fn intern(&mut self, s: &str) -> Name {
        if let Some(n) = self.0.get(s) {
            return n.clone();
        }
        let n: Name = Arc::from(s);
        self.0.insert(n.clone());
        n
    }

    /// `n` replaced by the shared copy of its text (for names decoded one by one).
    pub fn share(&mut self, n: &mut Name) {
        match self.0.get(&**n) {
            Some(shared) => *n = shared.clone(),
            None => {
                self.0.insert(n.clone());
            }
        }
    }
}

impl PartialEq for Names {
    fn eq(&self, _: &Names) -> bool {
        true
    }
}

impl Eq for Names {}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Names({})", self.0.len())
    }
}
