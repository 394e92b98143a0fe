//! `./.env`: settings from a file, for a start without exported variables (the README's
//! `cp .env.example .env`).
//!
//! The file is read with `dotenvy` (the dotenv syntax: `NAME=value`, `export NAME=value`, `#`
//! comments, single and double quotes, `${NAME}` expansion outside single quotes) into a map that
//! is merged under the process environment. The process environment itself is never changed:
//! `std::env::set_var` is `unsafe` in Rust 2024 (other threads may read the environment), and the
//! workspace forbids `unsafe`. So only the service's own variables come from the file; other
//! programs' variables (`AWS_*` for the S3 client's credential chain, for instance) must still be
//! exported.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use super::values::Problem;

/// The file read from the working directory at start-up.
pub const DOTENV_FILE: &str = ".env";

/// What `.env` gave.
#[derive(Debug, Default)]
pub(super) struct DotEnv {
    /// Every variable of the file; for a name given twice, the first (as `dotenvy` does).
    pub vars: HashMap<String, String>,
    /// Likely mistakes in the file.
    pub warnings: Vec<String>,
}

/// Reads `path` when it exists; a file that cannot be read or parsed is a problem named after
/// the file. Values are never put into a message: the file holds secrets.
pub(super) fn read(path: &Path, problems: &mut Vec<Problem>) -> DotEnv {
    let mut file = DotEnv::default();
    let shown = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return file,
        Err(e) => {
            problems.push(Problem {
                variable: shown,
                message: format!("cannot be read: {e}"),
            });
            return file;
        }
    };
    // Editors on Windows save UTF-8 with a byte-order mark; it is not part of the first name.
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
    for entry in dotenvy::from_read_iter(text) {
        match entry {
            Ok((name, value)) => match file.vars.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => file.warnings.push(format!(
                    "{} is set twice in {shown}; the first value is used",
                    slot.key()
                )),
            },
            Err(e) => {
                problems.push(Problem {
                    variable: shown.clone(),
                    message: describe(&e),
                });
                // A line that does not parse may have swallowed the rest of the file (an
                // unclosed quote): stop rather than guess.
                break;
            }
        }
    }
    file
}

/// A parse error without the line's text, which may hold a secret; the variable's name is kept
/// when the line starts with one.
fn describe(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(line, at) => {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            let position = at + 1;
            if name.is_empty() {
                format!(
                    "has a line that is not NAME=value (at character {position}); check its \
                     quotes"
                )
            } else {
                format!(
                    "cannot parse the line of {name} (at character {position}); check its quotes \
                     and escapes"
                )
            }
        }
        dotenvy::Error::Io(e) => format!("cannot be read: {e}"),
        // `VarError`'s message would quote the offending value.
        dotenvy::Error::EnvVar(_) => {
            "expands a variable whose value is not valid Unicode".to_owned()
        }
        _ => "cannot be read".to_owned(),
    }
}
