//! The Stratos service.
pub mod config;
