//! [`Cause`]: a driver's error kept as the source of an adapter's error without naming its type.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The underlying failure of an adapter error (a database driver's, a client library's): kept
/// whole as the error's `source` so logs and debuggers see it, but opaque, so an adapter's public
/// error type never names a driver's types and a driver upgrade is not a breaking change of the
/// adapter. Cheap to clone; two causes are equal when their messages are (for tests).
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps `error`.
    pub fn new<E: Error + Send + Sync + 'static>(error: E) -> Self {
        Self(Arc::new(error))
    }

    /// A cause that is only a message (a failure found by the adapter itself, not by a driver).
    pub fn message(text: impl Into<String>) -> Self {
        Self(Arc::new(Message(text.into())))
    }

    /// The wrapped error, for code that knows the driver (inside its adapter).
    pub fn get(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The error of [`Cause::message`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

/// Transparent: the cause's own source comes next in the chain.
impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;
    use crate::repo_store::RepoStoreError;
    use crate::usecases::UseCaseError;

    /// A driver's error survives two conversions as a source, not only as text.
    #[test]
    fn the_driver_error_stays_in_the_chain() {
        let driver = std::io::Error::new(std::io::ErrorKind::TimedOut, "socket timed out");
        let port = RepoStoreError::Backend(Cause::new(driver));
        let case = UseCaseError::from(port);
        let mut chain = Vec::new();
        let mut driver = None;
        let mut next: Option<&(dyn Error + 'static)> = Some(&case);
        while let Some(e) = next {
            chain.push(e.to_string());
            if let Some(cause) = e.downcast_ref::<Cause>() {
                driver = cause
                    .get()
                    .downcast_ref::<std::io::Error>()
                    .map(|io| io.kind());
            }
            next = e.source();
        }
        // UseCaseError → RepoStoreError → Cause, whose driver error is the io::Error itself.
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert_eq!(driver, Some(std::io::ErrorKind::TimedOut));
        assert!(matches!(case, UseCaseError::Unavailable(_)));
    }

    #[test]
    fn message_causes_compare_by_text() {
        assert_eq!(Cause::message("down"), Cause::message("down"));
        assert_ne!(Cause::message("down"), Cause::message("up"));
    }
}
