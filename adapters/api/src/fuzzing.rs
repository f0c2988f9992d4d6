//! What the fuzz targets' unit tests share (each crate keeps the body of its targets in a
//! `fuzzing` module): reading a target's seed corpus and mutating it the way libFuzzer does, so
//! that `cargo test` runs every target on its seeds and on thousands of inputs near them.

use std::path::{Path, PathBuf};

/// The seed corpus of `target`: the files of `fuzz/seeds/<target>/` under `root` (the
/// repository), in name order; at least one.
pub fn seeds(root: &Path, target: &str) -> Vec<Vec<u8>> {
    let dir = root.join("fuzz/seeds").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    let out: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect();
    assert!(!out.is_empty(), "{} has seeds", dir.display());
    out
}

/// A small deterministic generator (xorshift), so that a failure reproduces.
pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator(seed | 1)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    /// `seed` with a few byte changes, insertions of `special` bytes, deletions and splices of
    /// `other`.
    pub fn mutate(&mut self, seed: &[u8], other: &[u8], special: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(4) {
                0 if at < out.len() => out[at] = self.below(256) as u8,
                1 if !special.is_empty() => out.insert(at, special[self.below(special.len())]),
                2 if at < out.len() => {
                    let end = (at + self.below(8)).min(out.len());
                    out.drain(at..end);
                }
                _ => {
                    let from = self.below(other.len() + 1);
                    let end = (from + self.below(32)).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
            }
        }
        out
    }

    /// Runs `body` on every seed of `target`, then on `rounds` mutations of them.
    pub fn run(
        &mut self,
        root: &Path,
        target: &str,
        special: &[u8],
        rounds: usize,
        body: fn(&[u8]),
    ) {
        let seeds = seeds(root, target);
        for s in &seeds {
            body(s);
        }
        for _ in 0..rounds {
            let a = &seeds[self.below(seeds.len())];
            let b = &seeds[self.below(seeds.len())];
            body(&self.mutate(a, b, special));
        }
    }
}
