//! TIDs: 13 chars of base32-sortable (`234567a-z`) for a 64-bit value: 53 bits of microseconds
//! since the Unix epoch, then a 10-bit clock id, under a top bit that TIDs made by
//! [`Tid::from_parts`] leave 0 but the atproto syntax does not require to be.

use super::string_newtype;
use crate::{Error, Result};

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A syntactically valid TID. Ordering of the strings equals ordering of the values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(String);
string_newtype!(Tid);

fn digit(c: u8) -> Option<u64> {
    match c {
        b'2'..=b'7' => Some(u64::from(c - b'2')),
        b'a'..=b'z' => Some(u64::from(c - b'a') + 6),
        _ => None,
    }
}

impl Tid {
    /// Parses a TID.
    pub fn parse(s: &str) -> Result<Self> {
        let b = s.as_bytes();
        if b.len() != 13 {
            return Err(Error::syntax("TID", s, "must be 13 characters"));
        }
        if !b.iter().all(|&c| digit(c).is_some()) {
            return Err(Error::syntax(
                "TID",
                s,
                "characters outside base32-sortable [2-7a-z]",
            ));
        }
        // 13×5 = 65 bits for a 64-bit value: the first char carries the top 4 bits, so it is at
        // most 'j' (the atproto syntax). That admits values with bit 63 set (first char 'c' to
        // 'j'), which no 53-bit timestamp produces: generated TIDs start with '2'..'7', 'a', 'b'.
        if digit(b[0]).unwrap_or(u64::MAX) > 15 {
            return Err(Error::syntax("TID", s, "high bit set"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Encodes a timestamp (53 bits, microseconds) and clock id (10 bits).
    pub fn from_parts(micros: u64, clock_id: u16) -> Tid {
        let value = ((micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
        let mut s = String::with_capacity(13);
        for i in (0..13).rev() {
            s.push(ALPHABET[((value >> (i * 5)) & 31) as usize] as char);
        }
        Tid(s)
    }

    fn value(&self) -> u64 {
        self.0
            .bytes()
            .fold(0, |acc, c| (acc << 5) | digit(c).unwrap_or(0))
    }

    /// Microseconds since the Unix epoch (2^53 or more for a TID whose first char is past
    /// 'b', which only a foreign writer makes).
    pub fn timestamp_micros(&self) -> u64 {
        self.value() >> 10
    }

    /// The 10-bit clock id.
    pub fn clock_id(&self) -> u16 {
        (self.value() & 0x3ff) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_parts() {
        for (micros, clock) in [
            (0u64, 0u16),
            (1, 1),
            (1_700_000_000_000_000, 1023),
            ((1 << 53) - 1, 512),
        ] {
            let tid = Tid::from_parts(micros, clock);
            assert_eq!(Tid::parse(tid.as_str()).unwrap(), tid);
            assert_eq!((tid.timestamp_micros(), tid.clock_id()), (micros, clock));
        }
        assert_eq!(Tid::from_parts(0, 0).as_str(), "2222222222222");
        assert!(Tid::from_parts(5, 0) < Tid::from_parts(5, 1));
        assert!(Tid::from_parts(5, 1023) < Tid::from_parts(6, 0));
    }
}
