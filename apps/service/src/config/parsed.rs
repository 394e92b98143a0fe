//! Every variable of the settings table parsed by its row, with typed access for the assembly
//! (`build.rs`). An invalid value is recorded as a problem and replaced by the row's default, so
//! the rules between variables still check the others and every problem is reported at once.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use stratos_domain::syntax::Did;

use super::setting::{Default, Parsed, Parser, Value};
use super::table::settings;
use super::values::{ConnectionUrl, HttpUrl, Problem, Secret};

/// Every variable parsed by its row, plus what the assembly found.
pub(super) struct Values {
    /// The value of each setting: the operator's, else the table's default; `None` when neither
    /// (or when the operator's is invalid and there is no default).
    parsed: HashMap<&'static str, Option<Value>>,
    /// Settings the operator gave a non-empty value, valid or not.
    set: BTreeSet<&'static str>,
    /// Settings the assembly read, so a test can check it reads exactly the table.
    pub used: BTreeSet<&'static str>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Values {
    /// Parses every setting of the table from `vars`, recording each invalid one.
    pub fn parse(vars: &HashMap<String, String>, mut problems: Vec<Problem>) -> Self {
        let mut parsed = HashMap::new();
        let mut set = BTreeSet::new();
        for s in settings() {
            let given = vars
                .get(s.name)
                .map_or(Parsed::Unset, |raw| s.parser.parse(raw));
            let value = match given {
                Parsed::Ok(value) => {
                    set.insert(s.name);
                    Some(value)
                }
                Parsed::Bad(messages) => {
                    set.insert(s.name);
                    problems.extend(messages.into_iter().map(|message| Problem {
                        variable: s.name.to_owned(),
                        message,
                    }));
                    // Carry on with the default, so the rules that depend on this variable
                    // still check the others.
                    default_value(s.name, s.default, s.parser, &mut problems)
                }
                Parsed::Unset => default_value(s.name, s.default, s.parser, &mut problems),
            };
            parsed.insert(s.name, value);
        }
        Self {
            parsed,
            set,
            used: BTreeSet::new(),
            problems,
            warnings: Vec::new(),
        }
    }

    pub(super) fn problem(&mut self, name: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable: name.to_owned(),
            message: message.into(),
        });
    }

    /// True when the operator gave `name` a non-empty value (valid or not).
    pub(super) fn is_set(&mut self, name: &'static str) -> bool {
        self.used.insert(name);
        self.set.contains(name)
    }

    /// Warns, for each of `names` that is set, that `reason` makes it ineffective.
    pub(super) fn warn_ignored(&mut self, names: &[&'static str], reason: &str) {
        for name in names {
            if self.is_set(name) {
                self.warnings
                    .push(format!("{name} is ignored because {reason}"));
            }
        }
    }

    fn get(&mut self, name: &'static str) -> Option<Value> {
        self.used.insert(name);
        match self.parsed.get(name) {
            Some(value) => value.clone(),
            None => {
                self.problem(name, "is not in the settings table (a bug)");
                None
            }
        }
    }

    /// Records that the table's parser for `name` does not give what the assembly expects.
    fn mismatch<T>(&mut self, name: &str) -> Option<T> {
        self.problem(name, "is parsed as another type than it is used (a bug)");
        None
    }

    pub(super) fn bool(&mut self, name: &'static str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(b),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn int<T: TryFrom<u64> + std::default::Default>(&mut self, name: &'static str) -> T {
        let converted = match self.get(name) {
            Some(Value::Int(n)) => T::try_from(n).ok(),
            _ => None,
        };
        converted.unwrap_or_else(|| {
            self.problem(
                name,
                "has no integer default or does not fit its field (a bug)",
            );
            T::default()
        })
    }

    /// One of `options`, by the spelling the table's parser returned.
    pub(super) fn choice<T: Copy>(
        &mut self,
        name: &'static str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let spelling = match self.get(name)? {
            Value::Choice(spelling) => spelling,
            _ => return self.mismatch(name),
        };
        match options.iter().find(|(s, _)| *s == spelling) {
            Some((_, chosen)) => Some(*chosen),
            None => self.mismatch(name),
        }
    }

    pub(super) fn text(&mut self, name: &'static str) -> Option<String> {
        match self.get(name)? {
            Value::Text(text) => Some(text),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn secret(&mut self, name: &'static str) -> Option<Secret> {
        match self.get(name)? {
            Value::Secret(secret) => Some(secret),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn url(&mut self, name: &'static str) -> Option<HttpUrl> {
        match self.get(name)? {
            Value::Url(url) => Some(url),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn urls(&mut self, name: &'static str) -> Vec<HttpUrl> {
        match self.get(name) {
            None => Vec::new(),
            Some(Value::Urls(urls)) => urls,
            Some(_) => self.mismatch(name).unwrap_or_default(),
        }
    }

    pub(super) fn did(&mut self, name: &'static str) -> Option<Did> {
        match self.get(name)? {
            Value::Did(did) => Some(did),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn dids(&mut self, name: &'static str) -> Vec<Did> {
        match self.get(name) {
            None => Vec::new(),
            Some(Value::Dids(dids)) => dids,
            Some(_) => self.mismatch(name).unwrap_or_default(),
        }
    }

    pub(super) fn list(&mut self, name: &'static str) -> Vec<String> {
        match self.get(name) {
            None => Vec::new(),
            Some(Value::List(list)) => list,
            Some(_) => self.mismatch(name).unwrap_or_default(),
        }
    }

    pub(super) fn ip(&mut self, name: &'static str) -> Option<IpAddr> {
        match self.get(name)? {
            Value::Ip(ip) => Some(ip),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn path(&mut self, name: &'static str) -> Option<PathBuf> {
        match self.get(name)? {
            Value::Path(path) => Some(path),
            _ => self.mismatch(name),
        }
    }

    pub(super) fn connection(&mut self, name: &'static str) -> Option<ConnectionUrl> {
        match self.get(name)? {
            Value::Connection(url) => Some(url),
            _ => self.mismatch(name),
        }
    }
}

/// The table's default for a setting, read by the setting's own parser.
fn default_value(
    name: &str,
    default: Default,
    parser: Parser,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    let Default::Value(text) = default else {
        return None;
    };
    match parser.parse(text) {
        Parsed::Ok(value) => Some(value),
        Parsed::Unset | Parsed::Bad(_) => {
            problems.push(Problem {
                variable: name.to_owned(),
                message: format!("has an invalid default {text:?} in the settings table (a bug)"),
            });
            None
        }
    }
}
