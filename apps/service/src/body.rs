//! Request bodies: read with a size limit and a deadline, admitted under per-address and global
//! caps, and turned into XRPC errors, not actix text errors.
//!
//! A client that announces a body and then sends nothing used to hold its connection (and a
//! file descriptor) forever, on endpoints anonymous callers may use; twenty thousand of them
//! stopped the service answering at all. Now the whole body must arrive within
//! `STRATOS_BODY_TIMEOUT_SECS` (plus a second per MiB), and a [`BodyGate`] caps how many bodies
//! may be *being read* at once per client address and in total, refusing the excess before
//! reading anything. Bodies are counted only while they arrive, not while their request is
//! handled, so clients that send whole bodies at once (a proxy, a load generator with fifty
//! connections) never meet the cap; clients that trickle do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{self, BytesMut};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Counts requests carrying a body that are in flight, per client address and in total.
#[derive(Debug)]
pub struct BodyGate {
    per_ip: u32,
    total: u32,
    /// `STRATOS_BODY_TIMEOUT_SECS`: the deadline of a small body.
    base_timeout_secs: u32,
    in_flight: Mutex<(u32, HashMap<IpAddr, u32>)>,
}

/// One admitted request; gives its place back when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    gate: Arc<BodyGate>,
    ip: Option<IpAddr>,
}

impl BodyGate {
    /// A gate allowing `per_ip` requests per address (0: unlimited) and `total` overall.
    pub fn new(per_ip: u32, total: u32, base_timeout_secs: u32) -> Arc<Self> {
        Arc::new(Self {
            per_ip,
            total,
            base_timeout_secs,
            in_flight: Mutex::new((0, HashMap::new())),
        })
    }

    /// A permit, or the error to answer with: 429 when the address has too many in flight,
    /// 503 when the process has.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<BodyPermit, ApiError> {
        let mut guard = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "too many request bodies arriving at once; retry",
            ));
        }
        if let Some(ip) = ip
            && self.per_ip > 0
        {
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                return Err(ApiError::rate_limited(
                    "too many request bodies arriving at once from this address",
                    1,
                ));
            }
            *n += 1;
        }
        *total += 1;
        Ok(BodyPermit {
            gate: Arc::clone(self),
            ip: ip.filter(|_| self.per_ip > 0),
        })
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let mut guard = self
            .gate
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// Bytes per second a large body is granted on top of the base deadline: a 256 MiB import is
/// not expected in 30 s, but it must not take forever either.
const SLOW_BODY_BYTES_PER_SEC: u64 = 1 << 20;

/// Reads the whole body, refusing more than `limit` bytes with 413 (early, from
/// `Content-Length`, when the client announces it), and a body that does not arrive whole
/// within its deadline with 408. The deadline is `STRATOS_BODY_TIMEOUT_SECS` plus one second
/// per MiB of the announced length (of `limit` when none is announced).
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    // The gate is app data of its own (not read through `AppState`, which holds it): the body
    // module stays below the state in the module graph.
    let gate = req.app_data::<web::Data<BodyGate>>();
    let base = gate.map_or(30, |g| g.base_timeout_secs);
    // Held while the body is being read, not while the request is handled: a fast client's
    // body is read in microseconds, so only bodies that trickle (the attack) pile up here.
    let _reading = match gate {
        Some(g) => Some(
            g.clone()
                .into_inner()
                .admit(req.peer_addr().map(|a| a.ip()))
                .map_err(ApiError::closing)?,
        ),
        None => None,
    };
    let limit_bytes = u64::try_from(limit).unwrap_or(u64::MAX);
    let size = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(limit_bytes, |n| n.min(limit_bytes));
    let secs = u64::from(base).saturating_add(size / SLOW_BODY_BYTES_PER_SEC);
    match tokio::time::timeout(Duration::from_secs(secs), read_all(req, payload, limit)).await {
        Ok(read) => read,
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request body did not arrive within {secs} s"),
        )
        .closing()),
    }
}

async fn read_all(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(ApiError::too_large(limit));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Reads and parses a JSON body into `T`.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let buf = read_limited(req, payload, limit).await?;
    Ok(stratos_ports::xrpc::parse_json_body(&buf)?)
}
