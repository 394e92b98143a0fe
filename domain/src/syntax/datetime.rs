//! atproto datetimes: RFC 3339 restricted to what ISO 8601 also accepts —
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, uppercase `T` and `Z`, `-00:00` not allowed —
//! and denoting a real instant (valid calendar date and time, not before year 0 after the offset).

use super::string_newtype;
use crate::{Error, Result};

/// A valid atproto datetime string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Datetime(String);
string_newtype!(Datetime);

struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Offset east of UTC in minutes.
    offset: i32,
}

fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// The shape check only: digits and separators in the right places.
fn shape(s: &str) -> Option<Fields> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let mut f = Fields {
        year: num(&b[0..4])?,
        month: num(&b[5..7])?,
        day: num(&b[8..10])?,
        hour: num(&b[11..13])?,
        minute: num(&b[14..16])?,
        second: num(&b[17..19])?,
        offset: 0,
    };
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    match &b[i..] {
        [b'Z'] => {}
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = num(&[*h1, *h2])? as i32;
            let minutes = num(&[*m1, *m2])? as i32;
            if hours > 23 || minutes > 59 {
                return None;
            }
            if *sign == b'-' && hours == 0 && minutes == 0 {
                return None; // RFC 3339 "unknown offset", not ISO 8601
            }
            f.offset = if *sign == b'+' { 1 } else { -1 } * (hours * 60 + minutes);
        }
        _ => return None,
    }
    Some(f)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

impl Datetime {
    /// The UTC datetime of a Unix timestamp in milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`
    /// (clamped to years 1970–9999).
    pub fn from_unix_millis(ms: i64) -> Self {
        const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let ms = ms.clamp(0, MAX_MS);
        let (days, rem) = (ms / 86_400_000, ms % 86_400_000);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Datetime(format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000
        ))
    }

    /// Milliseconds since the Unix epoch of this instant (offset applied; fractions beyond
    /// milliseconds truncated). Instants before 1970 are negative.
    pub fn to_unix_millis(&self) -> i64 {
        let Some(f) = shape(&self.0) else {
            return 0; // unreachable for a parsed value; 0 keeps this total
        };
        // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
        let (y, m) = (i64::from(f.year), i64::from(f.month));
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(f.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400
            + i64::from(f.hour) * 3600
            + i64::from(f.minute) * 60
            + i64::from(f.second)
            - i64::from(f.offset) * 60;
        let b = self.0.as_bytes();
        let mut ms = 0i64;
        if b.get(19) == Some(&b'.') {
            for (i, c) in b[20..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .take(3)
                .enumerate()
            {
                ms += i64::from(c - b'0') * [100, 10, 1][i];
            }
        }
        secs * 1000 + ms
    }

    /// Whether `s` has the datetime shape (without checking that the values make sense).
    pub fn is_valid_syntax(s: &str) -> bool {
        shape(s).is_some()
    }

    /// Parses a datetime, checking shape and values.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason| Err(Error::syntax("datetime", s, reason));
        let Some(f) = shape(s) else {
            return err("not YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)");
        };
        if !(1..=12).contains(&f.month) || f.day == 0 || f.day > days_in_month(f.year, f.month) {
            return err("no such date");
        }
        if f.hour > 23 || f.minute > 59 || f.second > 59 {
            return err("no such time of day");
        }
        // A positive offset on the first day of year 0 would put the instant before year 0.
        let minutes_into_year0 = ((f.day as i32 - 1) * 24 + f.hour as i32) * 60 + f.minute as i32;
        if f.year == 0 && f.month == 1 && minutes_into_year0 - f.offset < 0 {
            return err("before year 0 in UTC");
        }
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code
    use super::Datetime;

    #[test]
    fn from_unix_millis_known_instants() {
        assert_eq!(
            Datetime::from_unix_millis(0).as_str(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Datetime::from_unix_millis(951_782_400_000).as_str(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Datetime::from_unix_millis(1_795_000_000_123).as_str(),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            Datetime::from_unix_millis(i64::MAX).as_str(),
            "9999-12-31T23:59:59.999Z"
        );
        for ms in [0, 1, 86_399_999, 1_795_000_000_123, 4_102_444_800_000] {
            assert!(Datetime::parse(Datetime::from_unix_millis(ms).as_str()).is_ok());
        }
    }

    #[test]
    fn to_unix_millis_round_trips_and_applies_offsets() {
        for ms in [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,
            1_795_000_000_123,
            4_102_444_800_000,
        ] {
            assert_eq!(Datetime::from_unix_millis(ms).to_unix_millis(), ms);
        }
        let with_offset = Datetime::parse("2026-11-18T13:06:40.1234+02:00").unwrap();
        assert_eq!(with_offset.to_unix_millis(), 1_795_000_000_123);
        let west = Datetime::parse("1969-12-31T23:00:00-01:00").unwrap();
        assert_eq!(west.to_unix_millis(), 0);
        assert!(
            Datetime::parse("1969-12-31T23:59:59Z")
                .unwrap()
                .to_unix_millis()
                < 0
        );
    }
}
