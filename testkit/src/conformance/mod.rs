//! Conformance suites: the behaviour every implementation of a port must show, as one named test
//! per case.
//!
//! Each port has a module of cases (one `pub async fn` per behaviour, taking the implementation
//! under test) and a macro that expands to a module of that port's name holding one `#[test]` per
//! case, named after it:
//!
//! | port | cases | macro |
//! |---|---|---|
//! | `RepoStore` | [`repo_store`] | [`repo_store_conformance!`](crate::repo_store_conformance) |
//! | `EnrollmentStore` | [`enrollment_store`] | [`enrollment_store_conformance!`](crate::enrollment_store_conformance) |
//! | `SigningKeyStore` | [`keys`] | [`key_store_conformance!`](crate::key_store_conformance) (tests in `key_store`) |
//! | `Outbox` | [`outbox`] | [`outbox_conformance!`](crate::outbox_conformance) |
//! | `OAuthStore` | [`oauth_store`] | [`oauth_store_conformance!`](crate::oauth_store_conformance) |
//! | `BlobStore` | [`blob_store`] | [`blob_store_conformance!`](crate::blob_store_conformance) |
//! | `Cache` | [`cache`] | [`cache_conformance!`](crate::cache_conformance) |
//! | `Notifier` | [`notifier`] | [`notifier_conformance!`](crate::notifier_conformance) |
//! | `AppViewIndex` | [`appview_index`] | [`appview_index_conformance!`](crate::appview_index_conformance) |
//!
//! The macro's argument is an expression, evaluated afresh for every case, giving a future of the
//! implementation: an `Arc` of it, a [`Fixture`] (when something must live as long as the case,
//! or be cleaned up after it), or an `Option` of either (`None` skips the case, for suites that
//! need a server that is not there). In an adapter's `tests/conformance.rs` (here the in-memory
//! fakes stand in for the adapter):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use stratos_testkit::memory::{MemoryKeyStore, MemoryRepoStore};
//!
//! stratos_testkit::repo_store_conformance!(async { Arc::new(MemoryRepoStore::new()) });
//! stratos_testkit::key_store_conformance!(async { Arc::new(MemoryKeyStore::new()) });
//! # fn main() {}
//! ```
//!
//! gives the tests `repo_store::lifecycle`, `repo_store::racing_writers_exactly_one_wins`, …, so
//! `cargo test --test conformance repo_store::lifecycle` runs one case. The list of cases lives
//! in the macro only: a case added there reaches every implementation. Two instances of one
//! suite in a file go in modules of their own (`mod relaxed { stratos_testkit::… }`).
//!
//! Each case runs on a fresh multi-threaded tokio runtime (two workers), in a task of its own;
//! the fixture's clean-up runs after it whether it passed or failed.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // test support code: failures are assertions

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub mod appview_index;
pub mod blob_store;
pub mod cache;
pub mod enrollment_store;
pub mod keys;
pub mod notifier;
pub mod oauth_store;
pub mod outbox;
pub mod repo_store;

/// A future run once after a case (see [`Fixture::cleanup`]).
type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The implementation a case runs against (`subject`), what must live as long as the case, and
/// what to do after it.
///
/// ```ignore
/// let dir = tempfile::tempdir().unwrap();
/// let storage = MyStorage::open(dir.path()).await.unwrap();
/// Fixture::new(Arc::new(storage.repos.clone()))
///     .keep(dir)
///     .cleanup(async move { storage.drop_everything().await.unwrap() })
/// ```
pub struct Fixture<S> {
    subject: S,
    keep: Vec<Box<dyn Any>>,
    cleanup: Vec<Cleanup>,
}

impl<S> Fixture<S> {
    /// A fixture of `subject` alone.
    pub fn new(subject: S) -> Self {
        Self {
            subject,
            keep: Vec::new(),
            cleanup: Vec::new(),
        }
    }

    /// Keeps `guard` (a temporary directory, a connection) alive until the case and its clean-up
    /// are over.
    pub fn keep(mut self, guard: impl Any) -> Self {
        self.keep.push(Box::new(guard));
        self
    }

    /// Runs `cleanup` after the case, whether it passed or failed (dropping a database schema,
    /// say). A failing clean-up fails a case that passed.
    pub fn cleanup(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup.push(Box::pin(cleanup));
        self
    }

    /// The same fixture around `f(subject)`.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Fixture<T> {
        Fixture {
            subject: f(self.subject),
            keep: self.keep,
            cleanup: self.cleanup,
        }
    }
}

impl<S> fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("subject", &std::any::type_name::<S>())
            .field("guards", &self.keep.len())
            .field("cleanups", &self.cleanup.len())
            .finish()
    }
}

/// What a suite macro's expression may give: a [`Fixture`], an `Arc` of the implementation, or an
/// `Option` of either (`None` skips the case).
pub trait IntoFixture {
    /// The implementation under test.
    type Subject;
    /// The fixture, or `None` to skip the case.
    fn into_fixture(self) -> Option<Fixture<Self::Subject>>;
}

impl<S> IntoFixture for Fixture<S> {
    type Subject = S;
    fn into_fixture(self) -> Option<Fixture<S>> {
        Some(self)
    }
}

impl<S> IntoFixture for Option<Fixture<S>> {
    type Subject = S;
    fn into_fixture(self) -> Option<Fixture<S>> {
        self
    }
}

impl<T: ?Sized> IntoFixture for Arc<T> {
    type Subject = Arc<T>;
    fn into_fixture(self) -> Option<Fixture<Arc<T>>> {
        Some(Fixture::new(self))
    }
}

impl<T: ?Sized> IntoFixture for Option<Arc<T>> {
    type Subject = Arc<T>;
    fn into_fixture(self) -> Option<Fixture<Arc<T>>> {
        self.map(Fixture::new)
    }
}

/// Runs one case: builds the fixture, runs `case` on its subject in a task, runs the clean-up,
/// then re-raises the case's failure (or the clean-up's). Called by the suite macros.
#[doc(hidden)]
pub fn run_case<S, C, F>(setup: impl Future<Output = Option<Fixture<S>>>, case: C)
where
    C: FnOnce(S) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the case");
    runtime.block_on(async move {
        let Some(Fixture {
            subject,
            keep,
            cleanup,
        }) = setup.await
        else {
            return;
        };
        let outcome = tokio::spawn(case(subject)).await;
        let mut cleaned = Ok(());
        for c in cleanup {
            let done = tokio::spawn(c).await;
            if cleaned.is_ok() {
                cleaned = done;
            }
        }
        drop(keep);
        for result in [outcome, cleaned] {
            match result {
                Ok(()) => {}
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("the case did not finish: {e}"),
            }
        }
    });
}

/// Expands to `mod $module { #[test] fn $case() … }`, one test per case of
/// `stratos_testkit::conformance::$port`. The suite macros give the case list; the port's
/// `Subject` type coerces what the fixture expression gives (`Arc<MyStore>` becomes
/// `Arc<dyn Port>`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_suite {
    (
        module: $module:ident,
        port: $port:ident,
        fixture: $fixture:expr,
        cases: [$($case:ident),+ $(,)?] $(,)?
    ) => {
        #[doc = concat!("The `", stringify!($port), "` conformance suite, one test per case.")]
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $case() {
                    $crate::conformance::run_case(
                        async {
                            $crate::conformance::IntoFixture::into_fixture($fixture.await).map(
                                |fixture| {
                                    fixture.map(
                                        |subject| -> $crate::conformance::$port::Subject { subject },
                                    )
                                },
                            )
                        },
                        $crate::conformance::$port::$case,
                    );
                }
            )+
        }
    };
}
