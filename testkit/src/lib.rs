//! Testkit: in-memory fakes of every port, conformance suites, builders and fixtures for
//! Stratos, plus the workspace's architecture checks ([`layering`]).
#![deny(missing_docs)] // a library crate: every public item is documented (checked in CI)

pub mod bench;
pub mod builders;
pub mod conformance;
pub mod e2e;
pub mod hostile;
pub mod http_stub;
pub mod layering;
pub mod legacy;
pub mod memory;
pub mod tokens;

/// A reqwest client builder for tests. The workspace builds reqwest without a rustls crypto
/// provider of its own (the adapters install ring when they make a client); a test that makes
/// its own client first installs ring the same way, or reqwest would panic.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An Err means another thread installed one in between: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
}

/// A default reqwest client for tests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    // Building a default client fails only without a TLS provider, which the builder installs.
    #[allow(clippy::expect_used)]
    http_client_builder()
        .build()
        .expect("a default reqwest client")
}
