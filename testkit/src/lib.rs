//! Testkit: fakes, conformance suites, builders and fixtures for Stratos, plus the workspace's
//! architecture checks.
//!
//! Today it holds the layering rules ([`layering`]); the in-memory fakes of every port and the
//! conformance suites arrive with the ports.

pub mod layering;
