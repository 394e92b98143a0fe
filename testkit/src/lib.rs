//! Testkit: fakes, conformance suites, builders and fixtures (see docs/architecture.md).
