//! The log as c2sp.org/tlog-tiles: hash tiles and entry bundles, computed from the
//! store, for monitors and mirrors that check the log without asking it for proofs.
//!
//! A tile at level `L`, index `N`, holds up to 256 hashes: hash `i` is the Merkle
//! Tree Hash of entries `[(N·256+i)·256^L, (N·256+i+1)·256^L)`, which is the store's
//! perfect subtree at tree level `8L`. An entry bundle holds entries `[N·256,
//! N·256+W)`, each a big-endian u16 length and the entry's stored bytes. The tree's
//! hash is the ledger's (SHA-256 as the spec says, or BLAKE3 for BLAKE3 ledgers).

use crate::store::{Store, StoreError};

/// Hashes in a full tile.
pub const WIDTH: u64 = 256;

/// Which resource a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePath {
    /// `None` for an entry bundle, else the tile's level (0–63).
    pub level: Option<u8>,
    /// The tile's index within its level.
    pub index: u64,
    /// 256 for a full tile, 1–255 for a partial one.
    pub width: u64,
}

/// Why a tile cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// Not a tile path.
    #[error("not a tile path: {0}")]
    BadPath(String),
    /// The tile needs entries no checkpoint covers yet.
    #[error("tile {0} is beyond the newest checkpoint")]
    Beyond(String),
    /// An entry is too long for a bundle's u16 length.
    #[error(
        "entry {seq} is {len} bytes, more than the 65,535 an entry bundle's length can say; read it from /v1/entries"
    )]
    EntryTooLong {
        /// The entry.
        seq: u64,
        /// Its length.
        len: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TilePath {
    /// Parses `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]` (the part after `tile/`).
    pub fn parse(path: &str) -> Result<TilePath, TileError> {
        let bad = || TileError::BadPath(path.to_string());
        let (head, rest) = path.split_once('/').ok_or_else(bad)?;
        let level = if head == "entries" {
            None
        } else {
            let l: u8 = head.parse().ok().filter(|l| *l <= 63).ok_or_else(bad)?;
            if head != l.to_string() {
                return Err(bad());
            }
            Some(l)
        };
        let (n_path, width) = match rest.split_once(".p/") {
            Some((n, w)) => {
                let width: u64 = w
                    .parse()
                    .ok()
                    .filter(|w| (1..WIDTH).contains(w))
                    .ok_or_else(bad)?;
                if w != width.to_string() {
                    return Err(bad());
                }
                (n, width)
            }
            None => (rest, WIDTH),
        };
        let parts: Vec<&str> = n_path.split('/').collect();
        let mut index = 0u64;
        for (i, p) in parts.iter().enumerate() {
            let digits = if i + 1 < parts.len() {
                p.strip_prefix('x').ok_or_else(bad)?
            } else {
                p
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            index = index
                .checked_mul(1000)
                .and_then(|x| x.checked_add(digits.parse::<u64>().expect("3 digits")))
                .ok_or_else(bad)?;
        }
        let tile = TilePath {
            level,
            index,
            width,
        };
        if tile.to_path() != path {
            return Err(bad());
        }
        Ok(tile)
    }

    /// The path, as the spec writes it (without `tile/`).
    pub fn to_path(&self) -> String {
        let mut groups = Vec::new();
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        groups.reverse();
        let last = groups.len() - 1;
        let n: Vec<String> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if i < last {
                    format!("x{g:03}")
                } else {
                    format!("{g:03}")
                }
            })
            .collect();
        let head = self.level.map_or("entries".to_string(), |l| l.to_string());
        let mut out = format!("{head}/{}", n.join("/"));
        if self.width < WIDTH {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Entries the tile needs: the end of its last hash's range.
    fn needs(&self) -> Option<u64> {
        let span = WIDTH.checked_pow(u32::from(self.level.unwrap_or(0)))?;
        (self.index.checked_mul(WIDTH)?.checked_add(self.width))?.checked_mul(span)
    }

    /// The tile's bytes, if the tree of `size` entries (a checkpoint's) holds it.
    pub fn read(&self, store: &dyn Store, size: u64) -> Result<Vec<u8>, TileError> {
        if self.needs().is_none_or(|n| n > size) {
            return Err(TileError::Beyond(self.to_path()));
        }
        let first = self.index * WIDTH;
        let mut out = Vec::new();
        match self.level {
            Some(l) => {
                for i in first..first + self.width {
                    out.extend_from_slice(&store.subtree(8 * u32::from(l), i)?);
                }
            }
            None => {
                let mut too_long = None;
                store.scan(first, first + self.width, &mut |seq, bytes| {
                    match u16::try_from(bytes.len()) {
                        Ok(n) => {
                            out.extend_from_slice(&n.to_be_bytes());
                            out.extend_from_slice(bytes);
                        }
                        Err(_) => too_long = too_long.or(Some((seq, bytes.len()))),
                    }
                    Ok(())
                })?;
                if let Some((seq, len)) = too_long {
                    return Err(TileError::EntryTooLong { seq, len });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_the_spec_writes_them() {
        let t = TilePath::parse("0/x001/x234/067").unwrap();
        assert_eq!((t.level, t.index, t.width), (Some(0), 1_234_067, 256));
        let t = TilePath::parse("entries/001.p/44").unwrap();
        assert_eq!((t.level, t.index, t.width), (None, 1, 44));
        assert_eq!(TilePath::parse("2/000.p/1").unwrap().to_path(), "2/000.p/1");
        for bad in [
            "0/1",
            "0/x1/000",
            "0/000/001",
            "64/000",
            "01/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/044",
            "logs/000",
            "0/x000/001",
            "0",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad}");
        }
        // The spec's example: a tree of 70,000 entries.
        let needs = |p: &str| TilePath::parse(p).unwrap().needs().unwrap();
        assert_eq!(needs("0/273.p/112"), 70_000);
        assert_eq!(needs("1/001.p/17"), 69_888);
        assert!(needs("1/001") > 70_000);
    }
}
