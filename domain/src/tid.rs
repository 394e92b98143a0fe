//! TID generation: 53-bit microsecond timestamp + 10-bit clock id, strictly increasing.
//!
//! A generator never hands out the same or a smaller TID twice, even when the wall clock steps
//! backwards (it then keeps counting up from the last value). [`next`] uses one process-wide
//! generator with a random clock id, so TIDs from different processes rarely collide.

use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::syntax::Tid;

/// Largest timestamp a TID can carry (53 bits).
const MAX_MICROS: u64 = (1 << 53) - 1;

/// A monotonic TID source.
#[derive(Debug, Clone)]
pub struct TidGenerator {
    last_micros: u64,
    clock_id: u16,
}

impl TidGenerator {
    /// A generator with a fixed clock id (only the low 10 bits are used).
    pub fn with_clock_id(clock_id: u16) -> Self {
        Self {
            last_micros: 0,
            clock_id: clock_id & 0x3ff,
        }
    }

    /// A generator with a random clock id.
    pub fn new() -> Self {
        let mut bytes = [0u8; 2];
        // Entropy failure only makes collisions across processes likelier; monotonicity holds.
        let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self::with_clock_id(u16::from_le_bytes(bytes))
    }

    /// The next TID given the current time in microseconds since the Unix epoch.
    pub fn next_at(&mut self, now_micros: u64) -> Tid {
        let micros = now_micros
            .max(self.last_micros.saturating_add(1))
            .min(MAX_MICROS);
        self.last_micros = micros;
        Tid::from_parts(micros, self.clock_id)
    }

    /// The next TID by the system clock.
    pub fn next_now(&mut self) -> Tid {
        self.next_at(now_micros())
    }

    /// The next TID that is also strictly greater than `prev` (e.g. a repository's last rev).
    pub fn next_after(&mut self, prev: &Tid) -> Tid {
        self.last_micros = self.last_micros.max(prev.timestamp_micros());
        self.next_now()
    }
}

impl Default for TidGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// Microseconds since the Unix epoch by the system clock (0 if the clock is before 1970).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn global() -> &'static Mutex<TidGenerator> {
    static GLOBAL: OnceLock<Mutex<TidGenerator>> = OnceLock::new();
    GLOBAL.get_or_init(|| Mutex::new(TidGenerator::new()))
}

/// The next TID from the process-wide generator.
pub fn next() -> Tid {
    global()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .next_now()
}

/// The next process-wide TID that is strictly greater than `prev`.
pub fn next_after(prev: &Tid) -> Tid {
    global()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .next_after(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_the_clock_goes_backwards() {
        let mut g = TidGenerator::with_clock_id(7);
        let a = g.next_at(1_000_000);
        let b = g.next_at(500_000); // clock stepped back
        let c = g.next_at(1_000_000); // same instant again
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(c.clock_id(), 7);
    }

    #[test]
    fn next_after_exceeds_a_future_rev() {
        let mut g = TidGenerator::with_clock_id(1);
        let future = Tid::from_parts(now_micros() + 60_000_000, 5);
        assert!(g.next_after(&future) > future);
    }

    #[test]
    fn process_wide_generator_is_strictly_increasing() {
        let mut prev = next();
        for _ in 0..10_000 {
            let t = next();
            assert!(t > prev);
            prev = t;
        }
    }
}
