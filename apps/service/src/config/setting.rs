//! What one row of the settings table is, and how each kind of value is parsed.
//!
//! A row names a variable and gives its parser, default, secrecy, documentation and its line in
//! the start-up summary. The parser checks one variable on its own; rules that tie variables
//! together (dev mode and the bind address, the backend and its settings) are in `build.rs`.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use stratos_domain::syntax::Did;

use super::Config;
use super::values::{ConnectionUrl, HttpUrl, Secret, check_connection_url, check_hostname};

/// One environment variable the service reads.
#[derive(Debug)]
pub(super) struct Setting {
    /// The variable's name.
    pub name: &'static str,
    /// How its value is read and checked.
    pub parser: Parser,
    /// What applies when it is unset or empty.
    pub default: Default,
    /// How the start-up summary shows it.
    pub secret: Secrecy,
    /// Its meaning, one Markdown paragraph for docs/configuration.md.
    pub doc: &'static str,
    /// Its effective value in a parsed configuration, for the start-up summary.
    pub show: fn(&Config) -> Shown,
}

/// A titled group of settings: one table of docs/configuration.md.
#[derive(Debug)]
pub(super) struct Section {
    /// The heading.
    pub title: &'static str,
    /// Markdown after the table, if any.
    pub note: Option<&'static str>,
    /// The rows, in the documentation's order.
    pub settings: &'static [Setting],
}

/// How a value is shown in the start-up summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secrecy {
    /// As it is.
    Public,
    /// Only whether it is set: `<redacted>`.
    Secret,
    /// A URL whose password (user part or `…password=` parameter) is masked.
    PasswordInUrl,
}

/// The default of a setting.
#[derive(Debug, Clone, Copy)]
pub(super) enum Default {
    /// This text, read by the setting's own parser (so the documented default is the used one).
    Value(&'static str),
    /// Nothing: unset, or an empty list.
    Unset,
    /// Computed from other settings when the configuration is assembled; the text says how
    /// (Markdown, for the documentation).
    Derived(&'static str),
}

/// How a setting's value is read. Every parser trims the value first, except [`Parser::Secret`],
/// and an empty value counts as unset.
#[derive(Debug, Clone, Copy)]
pub(super) enum Parser {
    /// `true`, `false`, `1` or `0`, in any letter case.
    Bool,
    /// Plain decimal digits in `min..=max`.
    Int { min: u64, max: u64 },
    /// A size in bytes from 1 to `max` (documented in MiB as well).
    ByteSize { max: u64 },
    /// One of these spellings, in any letter case; the value is the spelling as listed.
    Choice(&'static [&'static str]),
    /// Free text without control characters (it ends up in headers and metadata).
    Text,
    /// ASCII text without control characters, for an HTTP header.
    HeaderText,
    /// Text without whitespace or control characters (a key name).
    Token,
    /// An S3 bucket name: no `/`, no whitespace.
    Bucket,
    /// A DID-document fragment: letters, digits, `_`, `-`, `.`.
    Fragment,
    /// An IP address.
    Ip,
    /// A Postgres host: a host name or an IP address (IPv6 is bracketed for the URL).
    PgHost,
    /// A file system path.
    Path,
    /// A DID.
    Did,
    /// A comma list of DIDs.
    DidList,
    /// A comma list of names (boundaries, qualified later with the service DID).
    List,
    /// An http(s) URL.
    Url,
    /// An http(s) base URL (no query or fragment, trailing `/` removed).
    BaseUrl,
    /// A comma list of base URLs.
    BaseUrlList,
    /// A password or token, taken verbatim: surrounding whitespace is refused rather than
    /// trimmed, since it is nearly always a quoting or CRLF mistake and trimming would make the
    /// effective secret differ from the one the operator wrote down.
    Secret,
    /// Secret key material (a private JWK), trimmed: a key file's trailing newline means nothing.
    Key,
    /// A connection URL with one of these schemes; never echoed (it may hold a password).
    Connection(&'static [&'static str]),
}

/// A parsed value.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Bool(bool),
    Int(u64),
    Choice(&'static str),
    Text(String),
    Ip(IpAddr),
    Path(PathBuf),
    Did(Did),
    Dids(Vec<Did>),
    List(Vec<String>),
    Url(HttpUrl),
    Urls(Vec<HttpUrl>),
    Secret(Secret),
    Connection(ConnectionUrl),
}

/// A setting's line in the start-up summary.
#[derive(Debug)]
pub(super) enum Shown {
    /// The effective value (masked according to the setting's [`Secrecy`]).
    Value(String),
    /// No value.
    Unset,
    /// No value, and what that means.
    UnsetMeaning(&'static str),
    /// Not used with this configuration (for example S3 settings with local blobs): no line.
    Skip,
}

impl Shown {
    pub fn of(value: impl std::fmt::Display) -> Self {
        Self::Value(value.to_string())
    }

    pub fn opt<T: std::fmt::Display>(value: Option<&T>) -> Self {
        value.map_or(Self::Unset, Self::of)
    }

    pub fn list<T: std::fmt::Display>(items: &[T]) -> Self {
        let joined: Vec<String> = items.iter().map(ToString::to_string).collect();
        Self::Value(joined.join(","))
    }

    pub fn secret(value: Option<&Secret>) -> Self {
        value.map_or(Self::Unset, |s| Self::of(s.expose()))
    }
}

/// What one variable's value gave.
#[derive(Debug)]
pub(super) enum Parsed {
    /// Unset or empty.
    Unset,
    Ok(Value),
    /// Invalid, with one message per fault (a list may have several bad entries).
    Bad(Vec<String>),
}

/// A value for an error message: quoted, and cut short so a pasted file does not flood the log.
pub(super) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() > MAX {
        format!("{:?}…", value.chars().take(MAX).collect::<String>())
    } else {
        format!("{value:?}")
    }
}

/// A comma list: entries trimmed, empty entries dropped.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses each entry of a comma list, collecting one message per bad entry.
fn parse_each<T>(
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, Vec<String>> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for entry in split_list(value) {
        match parse(&entry) {
            Ok(item) => good.push(item),
            Err(why) => bad.push(why),
        }
    }
    if bad.is_empty() { Ok(good) } else { Err(bad) }
}

impl Parser {
    /// Reads one raw value.
    pub fn parse(self, raw: &str) -> Parsed {
        if raw.trim().is_empty() {
            return Parsed::Unset;
        }
        match self.parse_set(raw) {
            Ok(value) => Parsed::Ok(value),
            Err(why) => Parsed::Bad(why),
        }
    }

    fn parse_set(self, raw: &str) -> Result<Value, Vec<String>> {
        let one = |why: String| vec![why];
        let value = raw.trim();
        match self {
            Self::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(one(format!(
                    "expected true, false, 1 or 0, got {}",
                    shown(value)
                ))),
            },
            Self::Int { min, max } => parse_int(value, min, max).map(Value::Int).map_err(one),
            Self::ByteSize { max } => parse_int(value, 1, max).map(Value::Int).map_err(one),
            Self::Choice(options) => options
                .iter()
                .find(|spelling| spelling.eq_ignore_ascii_case(value))
                .map(|spelling| Value::Choice(spelling))
                .ok_or_else(|| {
                    one(format!(
                        "expected one of {}, got {}",
                        options.join(", "),
                        shown(value)
                    ))
                }),
            Self::Text => text(value).map(Value::Text).map_err(one),
            Self::HeaderText => text(value)
                .and_then(|v| match v.is_ascii() {
                    true => Ok(v),
                    false => Err("must be ASCII (it is sent in an HTTP header)".to_owned()),
                })
                .map(Value::Text)
                .map_err(one),
            Self::Token => text(value)
                .and_then(|v| match v.chars().any(char::is_whitespace) {
                    true => Err("must not contain whitespace".to_owned()),
                    false => Ok(v),
                })
                .map(Value::Text)
                .map_err(one),
            Self::Bucket => text(value)
                .and_then(
                    |v| match v.contains('/') || v.chars().any(char::is_whitespace) {
                        true => Err("must be a bucket name, without `/` or whitespace".to_owned()),
                        false => Ok(v),
                    },
                )
                .map(Value::Text)
                .map_err(one),
            Self::Fragment => {
                if value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    Ok(Value::Text(value.to_owned()))
                } else {
                    Err(one(format!(
                        "expected letters, digits, `_`, `-` or `.` (no leading `#`), got {}",
                        shown(value)
                    )))
                }
            }
            Self::Ip => value.parse::<IpAddr>().map(Value::Ip).map_err(|_| {
                one(format!(
                    "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::, got {}",
                    shown(value)
                ))
            }),
            Self::PgHost => {
                if value.parse::<Ipv6Addr>().is_ok() {
                    Ok(Value::Text(format!("[{value}]")))
                } else if check_hostname(value).is_ok() {
                    Ok(Value::Text(value.to_owned()))
                } else {
                    Err(one(format!(
                        "expected a host name or IP address, got {} (use STRATOS_POSTGRES_URL \
                         for socket paths)",
                        shown(value)
                    )))
                }
            }
            Self::Path => Ok(Value::Path(PathBuf::from(value))),
            Self::Did => Did::parse(value)
                .map(Value::Did)
                .map_err(|e| one(e.to_string())),
            Self::DidList => {
                parse_each(value, |entry| Did::parse(entry).map_err(|e| e.to_string()))
                    .map(Value::Dids)
            }
            Self::List => Ok(Value::List(split_list(value))),
            Self::Url => HttpUrl::parse(value)
                .map(Value::Url)
                .map_err(|why| one(format!("{why}, got {}", shown(value)))),
            Self::BaseUrl => HttpUrl::parse_base(value)
                .map(Value::Url)
                .map_err(|why| one(format!("{why}, got {}", shown(value)))),
            Self::BaseUrlList => parse_each(value, |entry| {
                HttpUrl::parse_base(entry).map_err(|why| format!("{why}, got {}", shown(entry)))
            })
            .map(Value::Urls),
            Self::Secret => {
                if raw.trim() != raw {
                    return Err(one(
                        "has leading or trailing whitespace (a quoting or CRLF mistake?); \
                         remove it"
                            .to_owned(),
                    ));
                }
                Ok(Value::Secret(Secret::new(raw)))
            }
            Self::Key => Ok(Value::Secret(Secret::new(value))),
            Self::Connection(schemes) => check_connection_url(value, schemes)
                .map(|()| Value::Connection(ConnectionUrl(value.to_owned())))
                .map_err(one),
        }
    }

    /// The type column of docs/configuration.md.
    pub fn doc_type(self) -> String {
        let code_list = |items: &[&str], suffix: &str| {
            let items: Vec<String> = items.iter().map(|i| format!("`{i}{suffix}`")).collect();
            items.join(", ")
        };
        match self {
            Self::Bool => "bool".to_owned(),
            Self::Int { min, max } => format!("int {}..{}", doc_int(min), doc_int(max)),
            Self::ByteSize { max } => format!("int 1..{}", doc_int(max)),
            Self::Choice(options) => format!("enum {}", code_list(options, "")),
            Self::Text => "text".to_owned(),
            Self::HeaderText => "ASCII text".to_owned(),
            Self::Token => "text without whitespace".to_owned(),
            Self::Bucket => "bucket name".to_owned(),
            Self::Fragment => "`[A-Za-z0-9_.-]+`".to_owned(),
            Self::Ip => "IP address".to_owned(),
            Self::PgHost => "host name or IP".to_owned(),
            Self::Path => "path".to_owned(),
            Self::Did => "DID".to_owned(),
            Self::DidList => "list of DIDs".to_owned(),
            Self::List => "list".to_owned(),
            Self::Url => "URL".to_owned(),
            Self::BaseUrl => "base URL".to_owned(),
            Self::BaseUrlList => "list of base URLs".to_owned(),
            Self::Secret => "secret".to_owned(),
            Self::Key => "secret (JWK)".to_owned(),
            Self::Connection(schemes) => format!("{} URL", code_list(schemes, "://")),
        }
    }

    /// True for the comma-list parsers, whose "no value" is documented as "empty".
    pub fn is_list(self) -> bool {
        matches!(self, Self::DidList | Self::List | Self::BaseUrlList)
    }
}

/// Plain decimal digits (no sign, no exponent) inside `min..=max`.
fn parse_int(value: &str, min: u64, max: u64) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n) && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!(
                "expected an integer from {} to {}, got {}",
                min,
                max,
                shown(value)
            )
        })
}

/// A range bound for the documentation: large powers of two as `2^n`, others in decimal.
fn doc_int(n: u64) -> String {
    if n >= 1 << 20 && n.is_power_of_two() {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

/// Free text: control characters are refused.
fn text(value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(value.to_owned())
}
