//! TEMPORARY shim (replaced by the syntax module): minimal newtypes for compiling the repo core.
#![allow(missing_docs, clippy::should_implement_trait)]
use crate::{Error, Result};
macro_rules! newtype {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);
        impl $name {
            pub fn parse(s: &str) -> Result<Self> {
                if s.is_empty() {
                    return Err(Error::syntax(stringify!($name), s, "empty"));
                }
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
newtype!(Did);
newtype!(Nsid);
newtype!(RecordKey);
newtype!(Tid);
const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
impl Tid {
    pub fn from_parts(micros: u64, clock_id: u16) -> Tid {
        let v = (micros << 10) | u64::from(clock_id & 0x3ff);
        let mut s = String::with_capacity(13);
        for i in (0..13).rev() {
            s.push(ALPHABET[((v >> (i * 5)) & 31) as usize] as char);
        }
        Tid(s)
    }
    fn value(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, b| {
            (acc << 5) | ALPHABET.iter().position(|&c| c == b).unwrap_or(0) as u64
        })
    }
    pub fn timestamp_micros(&self) -> u64 {
        self.value() >> 10
    }
    pub fn clock_id(&self) -> u16 {
        (self.value() & 0x3ff) as u16
    }
}
