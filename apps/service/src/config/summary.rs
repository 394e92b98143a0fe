//! The start-up summary: one `NAME=value` line per setting that applies, in the table's order.
//! A setting's secrecy decides how its value is shown, so a secret cannot reach the log through
//! a row that forgot to hide it.

use std::fmt;

use super::Config;
use super::setting::{Secrecy, Shown};
use super::table::settings;
use super::values::{REDACTED, redact_url};

/// Renders the effective configuration with the variable names an operator would change.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in settings() {
            let value = match (s.show)(self) {
                Shown::Skip => continue,
                Shown::Unset => "(unset)".to_owned(),
                Shown::UnsetMeaning(meaning) => format!("(unset: {meaning})"),
                Shown::Value(value) => match s.secret {
                    Secrecy::Public => value,
                    Secrecy::Secret => REDACTED.to_owned(),
                    Secrecy::PasswordInUrl => redact_url(&value),
                },
            };
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{}={value}", s.name)?;
        }
        Ok(())
    }
}
