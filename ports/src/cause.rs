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
