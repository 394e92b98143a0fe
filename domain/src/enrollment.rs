//! Enrollment: who may enroll, which boundaries they start with, and the enrollment record that
//! is published on the user's PDS (`zone.stratos.actor.enrollment`).
//!
//! Eligibility is decided in two sans-I/O steps: [`EnrollmentPolicy::precheck`] answers from
//! configuration alone (and the caller's external allow-list lookup) or asks for the DID document;
//! [`EnrollmentPolicy::decide_with_document`] finishes with the resolved document.

use std::collections::{BTreeMap, HashSet};

use ipld_core::ipld::Ipld;
use serde_json::Value;

use crate::attestation::Attestation;
use crate::boundary::Boundary;
use crate::did_doc::DidDocument;
use crate::syntax::{Datetime, Did, RecordKey};
use crate::{Error, Result};

/// NSID of the enrollment record.
pub const ENROLLMENT_COLLECTION: &str = "zone.stratos.actor.enrollment";

/// How a service admits new accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnrollmentMode {
    /// Anyone may enroll.
    Open,
    /// Only listed DIDs, accounts on listed PDSes, or accounts on the external allow-list.
    #[default]
    Allowlist,
    /// No new enrollments (existing ones keep working).
    Closed,
}

impl EnrollmentMode {
    /// Parses `open`, `allowlist` or `closed` (exactly; configuration typos must not silently
    /// open a service).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "open" => Ok(Self::Open),
            "allowlist" => Ok(Self::Allowlist),
            "closed" => Ok(Self::Closed),
            _ => Err(Error::syntax(
                "enrollment mode",
                s,
                "expected open, allowlist or closed",
            )),
        }
    }
}

/// Why an account may not enroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialReason {
    /// Neither the DID, its PDS, nor the external allow-list admits it.
    NotInAllowlist,
    /// The DID document could not be resolved.
    DidNotResolved,
    /// The DID document names no `#atproto_pds` service endpoint.
    PdsEndpointNotFound,
    /// The service is not accepting new enrollments.
    ServiceClosed,
}

impl DenialReason {
    /// Stable machine name.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotInAllowlist => "NotInAllowlist",
            Self::DidNotResolved => "DidNotResolved",
            Self::PdsEndpointNotFound => "PdsEndpointNotFound",
            Self::ServiceClosed => "ServiceClosed",
        }
    }

    /// The user-facing message.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotInAllowlist => {
                "Your DID is not in the enrollment allowlist for this Stratos service"
            }
            Self::DidNotResolved => "Could not resolve your DID document",
            Self::PdsEndpointNotFound => "Could not find a PDS endpoint in your DID document",
            Self::ServiceClosed => "This Stratos service is not accepting new enrollments",
        }
    }
}

/// The outcome of the configuration-only step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// Admitted without looking at the DID document.
    Allowed,
    /// Admission depends on the account's PDS: resolve the DID document and call
    /// [`EnrollmentPolicy::decide_with_document`].
    NeedsDidDocument,
    /// Refused.
    Denied(DenialReason),
}

/// An admitted enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The account's PDS, when admission went through the DID document.
    pub pds_endpoint: Option<String>,
    /// The boundaries a new enrollment starts with.
    pub boundaries: Vec<Boundary>,
}

/// The enrollment rules of one service.
#[derive(Debug, Clone, Default)]
pub struct EnrollmentPolicy {
    /// Admission mode.
    pub mode: EnrollmentMode,
    /// DIDs admitted in allow-list mode.
    pub allowed_dids: HashSet<String>,
    /// PDS endpoints whose accounts are admitted, stored without a trailing `/`.
    allowed_pds: HashSet<String>,
    /// Every boundary the service offers.
    pub allowed_boundaries: Vec<Boundary>,
    /// Boundaries a new enrollment receives; empty means "all offered boundaries".
    pub auto_enroll: Vec<Boundary>,
}

/// Drops one trailing `/`, so `https://pds.example/` and `https://pds.example` compare equal.
pub fn normalize_endpoint(url: &str) -> &str {
    url.strip_suffix('/').unwrap_or(url)
}

impl EnrollmentPolicy {
    /// A policy in `mode` offering `allowed_boundaries`.
    pub fn new(mode: EnrollmentMode, allowed_boundaries: Vec<Boundary>) -> Self {
        Self {
            mode,
            allowed_boundaries,
            ..Self::default()
        }
    }

    /// Admits these DIDs in allow-list mode.
    pub fn with_allowed_dids<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        dids: I,
    ) -> Self {
        self.allowed_dids.extend(dids.into_iter().map(Into::into));
        self
    }

    /// Admits accounts hosted on these PDS endpoints.
    pub fn with_allowed_pds<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, urls: I) -> Self {
        self.allowed_pds.extend(
            urls.into_iter()
                .map(|u| normalize_endpoint(u.as_ref()).to_owned()),
        );
        self
    }

    /// Gives new enrollments these boundaries instead of all offered ones. Each must be offered.
    pub fn with_auto_enroll(mut self, boundaries: Vec<Boundary>) -> Result<Self> {
        if let Some(b) = boundaries
            .iter()
            .find(|b| !self.allowed_boundaries.contains(b))
        {
            return Err(Error::BoundaryNotAllowed {
                boundary: b.to_string(),
            });
        }
        self.auto_enroll = boundaries;
        Ok(self)
    }

    /// The boundaries a new enrollment starts with.
    pub fn enroll_boundaries(&self) -> Vec<Boundary> {
        if self.auto_enroll.is_empty() {
            self.allowed_boundaries.clone()
        } else {
            self.auto_enroll.clone()
        }
    }

    fn admit(&self, pds_endpoint: Option<String>) -> Admission {
        Admission {
            pds_endpoint,
            boundaries: self.enroll_boundaries(),
        }
    }

    /// Step one: decide from configuration and `on_external_list` (the caller's lookup in the
    /// external allow-list, `false` when none is configured).
    pub fn precheck(&self, did: &Did, on_external_list: bool) -> Precheck {
        match self.mode {
            EnrollmentMode::Closed => Precheck::Denied(DenialReason::ServiceClosed),
            EnrollmentMode::Open => Precheck::Allowed,
            EnrollmentMode::Allowlist => {
                if self.allowed_dids.contains(did.as_str()) || on_external_list {
                    Precheck::Allowed
                } else if self.allowed_pds.is_empty() {
                    Precheck::Denied(DenialReason::NotInAllowlist)
                } else {
                    Precheck::NeedsDidDocument
                }
            }
        }
    }

    /// The whole decision when the precheck admitted the account.
    pub fn admission(&self) -> Admission {
        self.admit(None)
    }

    /// Step two: decide from the resolved DID document (`None` when resolution failed).
    pub fn decide_with_document(&self, did_document: Option<&Value>) -> Result<Admission> {
        let doc = did_document.ok_or(Error::EnrollmentDenied(DenialReason::DidNotResolved))?;
        // A document that cannot be read has no PDS endpoint either.
        let doc = DidDocument::from_json(doc)
            .map_err(|_| Error::EnrollmentDenied(DenialReason::PdsEndpointNotFound))?;
        let pds = doc
            .pds_endpoint()
            .ok_or(Error::EnrollmentDenied(DenialReason::PdsEndpointNotFound))?;
        if self.allowed_pds.contains(normalize_endpoint(pds)) {
            Ok(self.admit(Some(pds.to_owned())))
        } else {
            Err(Error::EnrollmentDenied(DenialReason::NotInAllowlist))
        }
    }
}

/// The record key of a service's enrollment record: the service DID with `%3A` decoded to `:`
/// (`did:web:localhost%3A3100` → `did:web:localhost:3100`), case-insensitively. Fails for a
/// DID that keeps another percent-escape, which no record key may contain.
pub fn enrollment_rkey(service_did: &Did) -> Result<RecordKey> {
    let service_did = service_did.as_str();
    let mut out = String::with_capacity(service_did.len());
    let mut rest = service_did;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.len() >= 3 && tail[1..3].eq_ignore_ascii_case("3A") {
            out.push(':');
            rest = &tail[3..];
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    RecordKey::parse(&out)
}

/// The enrollment record published on the user's PDS (`zone.stratos.actor.enrollment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    /// The Stratos service endpoint URL.
    pub service: String,
    /// The boundaries the user holds (qualified).
    pub boundaries: Vec<String>,
    /// The user's repository signing key (`did:key`).
    pub signing_key: String,
    /// The service's signature over `{boundaries, did, signingKey}`.
    pub attestation: Attestation,
    /// When the record was written.
    pub created_at: Datetime,
}

impl EnrollmentRecord {
    /// The record value, with `$type`.
    pub fn to_ipld(&self) -> Ipld {
        let boundaries = self
            .boundaries
            .iter()
            .map(|b| {
                Ipld::Map(BTreeMap::from([(
                    "value".to_owned(),
                    Ipld::String(b.clone()),
                )]))
            })
            .collect();
        Ipld::Map(BTreeMap::from([
            (
                "$type".to_owned(),
                Ipld::String(ENROLLMENT_COLLECTION.to_owned()),
            ),
            ("service".to_owned(), Ipld::String(self.service.clone())),
            ("boundaries".to_owned(), Ipld::List(boundaries)),
            (
                "signingKey".to_owned(),
                Ipld::String(self.signing_key.clone()),
            ),
            ("attestation".to_owned(), self.attestation.to_ipld()),
            (
                "createdAt".to_owned(),
                Ipld::String(self.created_at.to_string()),
            ),
        ]))
    }

    /// Reads a record value (IPLD, e.g. from atproto JSON via [`crate::data::json_to_ipld`]).
    /// `boundaries` defaults to empty; everything else is required.
    pub fn from_ipld(value: &Ipld) -> Result<Self> {
        let bad = |m: &str| Error::EnrollmentRecord(m.to_owned());
        let Ipld::Map(map) = value else {
            return Err(bad("not an object"));
        };
        let string = |key: &str| match map.get(key) {
            Some(Ipld::String(s)) => Ok(s.clone()),
            _ => Err(Error::EnrollmentRecord(format!("`{key}` must be a string"))),
        };
        let boundaries = match map.get("boundaries") {
            None | Some(Ipld::Null) => Vec::new(),
            Some(Ipld::List(items)) => items
                .iter()
                .map(|item| match item {
                    Ipld::Map(m) => match m.get("value") {
                        Some(Ipld::String(v)) => Ok(v.clone()),
                        _ => Err(bad("boundary without a string `value`")),
                    },
                    _ => Err(bad("boundary is not an object")),
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("`boundaries` must be an array")),
        };
        let created_at = Datetime::parse(&string("createdAt")?)
            .map_err(|e| Error::EnrollmentRecord(e.to_string()))?;
        let attestation = Attestation::from_ipld(
            map.get("attestation")
                .ok_or_else(|| bad("`attestation` is required"))?,
        )?;
        Ok(Self {
            service: string("service")?,
            boundaries,
            signing_key: string("signingKey")?,
            attestation,
            created_at,
        })
    }
}
