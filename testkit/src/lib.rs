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
