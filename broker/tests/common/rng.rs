//! A small seeded random stream for fault schedules: printed at start, replayable with
//! `SLUICE_TEST_SEED=<seed>`.

use std::time::Duration;

/// xorshift64: deterministic for a seed, which is all a fault schedule needs.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `SLUICE_TEST_SEED` when set, else from the clock; prints the seed either way.
    pub fn from_env_or_clock() -> Self {
        let seed = std::env::var("SLUICE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        println!("seed {seed} (rerun with SLUICE_TEST_SEED={seed})");
        Rng(seed | 1)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A duration between `low` and `high` milliseconds, both included.
    pub fn between_ms(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}
