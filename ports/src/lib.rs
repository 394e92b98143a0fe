//! Ports: arrive with the ports issue. This crate depends only on `stratos-domain`.
