//! The ledger's hash function `H` and the domain-separated hashes built from it.
//!
//! One ledger uses one function for its whole life (chosen at `ledger init`):
//! BLAKE3 by default, SHA-256 where NIST algorithms are required or RFC 6962
//! tools must check the proofs unmodified.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A 32-byte hash value.
pub type Hash = [u8; 32];

/// Domain prefix of a leaf (an entry) hash.
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of an interior Merkle node hash.
pub const NODE_PREFIX: u8 = 0x01;
/// Domain prefix of the genesis `prev` value, hashed with the origin.
pub const GENESIS_PREFIX: u8 = 0x02;

/// The hash function of one ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// BLAKE3 with 32-byte output (the default).
    Blake3,
    /// SHA-256; with it the Merkle tree is exactly RFC 6962's.
    Sha256,
}

/// H over input given in pieces ([`HashAlg::hasher`]).
pub enum Hasher {
    /// BLAKE3 (boxed: its state is large).
    Blake3(Box<blake3::Hasher>),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// H of everything added.
    pub fn finalize(self) -> Hash {
        match self {
            Hasher::Blake3(h) => *h.finalize().as_bytes(),
            Hasher::Sha256(h) => h.finalize().into(),
        }
    }
}

impl HashAlg {
    /// The name used in `ledger.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Blake3 => "blake3",
            HashAlg::Sha256 => "sha256",
        }
    }

    /// H(parts concatenated).
    pub fn digest(self, parts: &[&[u8]]) -> Hash {
        // On the stack, not through [`Hasher`]: every leaf and node hash comes here.
        match self {
            HashAlg::Blake3 => {
                let mut h = blake3::Hasher::new();
                for p in parts {
                    h.update(p);
                }
                *h.finalize().as_bytes()
            }
            HashAlg::Sha256 => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
        }
    }

    /// An incremental H, for input that comes in pieces.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlg::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Leaf hash: H(0x00 ‖ data). For an entry this is the entry hash.
    pub fn leaf(self, data: &[u8]) -> Hash {
        self.digest(&[&[LEAF_PREFIX], data])
    }

    /// Interior node hash: H(0x01 ‖ left ‖ right).
    pub fn node(self, left: &Hash, right: &Hash) -> Hash {
        self.digest(&[&[NODE_PREFIX], left, right])
    }

    /// Root of the empty tree: H of no bytes.
    pub fn empty(self) -> Hash {
        self.digest(&[])
    }

    /// The `prev` of entry 0: H(0x02 ‖ origin).
    pub fn genesis(self, origin: &str) -> Hash {
        self.digest(&[&[GENESIS_PREFIX], origin.as_bytes()])
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hash function name that is not `blake3` or `sha256`.
#[derive(Debug, thiserror::Error)]
#[error("unknown hash function {0:?} (expected \"blake3\" or \"sha256\")")]
pub struct UnknownHashAlg(pub String);

impl FromStr for HashAlg {
    type Err = UnknownHashAlg;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blake3" => Ok(HashAlg::Blake3),
            "sha256" => Ok(HashAlg::Sha256),
            other => Err(UnknownHashAlg(other.to_string())),
        }
    }
}

/// Lowercase hex of a hash.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// Parses 64 lowercase or uppercase hex digits into a hash.
pub fn from_hex(s: &str) -> Option<Hash> {
    // Table-driven: this runs once per entry when a chain is verified.
    const fn table() -> [u8; 256] {
        let mut t = [0xff; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    }
    static HEX: [u8; 256] = table();
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        if (hi | lo) == 0xff {
            return None;
        }
        *o = hi << 4 | lo;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_empty_is_the_well_known_value() {
        assert_eq!(
            to_hex(&HashAlg::Sha256.empty()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn blake3_empty_is_the_well_known_value() {
        assert_eq!(
            to_hex(&HashAlg::Blake3.empty()),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn domains_differ() {
        let a = HashAlg::Blake3;
        assert_ne!(a.leaf(b"x"), a.genesis("x"));
        assert_ne!(a.leaf(b""), a.empty());
    }
}
