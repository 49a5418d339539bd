//! The extra load hedging may add. A hedge (a second attempt of a call whose first attempt has
//! not answered after the adopted delay) is sent only while hedges stay within
//! `max_hedge_load` of the calls eligible for one, over a recent window: the strategy proposed
//! the delay from the latency distribution expecting about that share, and a slow provider
//! (every call past the delay) must not make the gateway double its load on it.

use std::sync::Mutex;

/// Counts of eligible calls and hedges sent. Both are halved when the calls pass
/// [`WINDOW`], so the share is over roughly the last `WINDOW` to `2 × WINDOW` calls and a long
/// quiet spell cannot bank hedges for a later burst.
#[derive(Debug, Default)]
pub struct HedgeBudget {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: f64,
    hedges: f64,
}

/// Calls after which the counts are halved.
pub const WINDOW: f64 = 2_000.0;

impl HedgeBudget {
    /// Counts a call that may be hedged (its scope has an adopted delay).
    pub fn eligible(&self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.calls += 1.0;
        if counts.calls > 2.0 * WINDOW {
            counts.calls /= 2.0;
            counts.hedges /= 2.0;
        }
    }

    /// Whether one more hedge keeps the hedges within `max_load` of the eligible calls (one
    /// hedge is always allowed on top, so a small window is not blocked by rounding); counts it
    /// when it does.
    pub fn try_hedge(&self, max_load: f64) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.hedges + 1.0 > max_load * counts.calls + 1.0 {
            return false;
        }
        counts.hedges += 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedges_stay_within_the_load_share() {
        let budget = HedgeBudget::default();
        let mut sent = 0;
        for _ in 0..10_000 {
            budget.eligible();
            // A provider slower than the delay on every call: each one asks for a hedge.
            sent += u32::from(budget.try_hedge(0.05));
        }
        // About 5 % (plus the one allowed on top), never every call.
        assert!((450..=560).contains(&sent), "{sent} hedges for 10,000 calls");
    }

    #[test]
    fn a_quiet_spell_does_not_bank_hedges() {
        let budget = HedgeBudget::default();
        for _ in 0..100_000 {
            budget.eligible();
        }
        let burst = (0..1_000).filter(|_| budget.try_hedge(0.05)).count();
        // At most 5 % of the window (about 2,000 to 4,000 calls), not 5 % of 100,000.
        assert!(burst <= 201, "{burst} hedges in a burst");
    }
}
