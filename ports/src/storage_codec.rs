//! How storage adapters persist event ops and outbox items: small JSON documents, readable with a
//! database shell when debugging (they are never on a hot read path). Shared so every adapter
//! stores the same format.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};
use stratos_domain::Cid;
use stratos_domain::boundary::Boundary;
use stratos_domain::repo::Action;
use stratos_domain::syntax::{Did, Nsid, RecordKey};

use crate::enrollment_store::{Enrollment, EnrollmentAction, EnrollmentEvent};
use crate::outbox::{OutboxAction, OutboxItem};
use crate::repo_store::{EventOp, EventProof};

/// Stored bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {0} is malformed")]
pub struct CodecError(pub &'static str);

fn corrupt(what: &'static str) -> CodecError {
    CodecError(what)
}

fn cid_of(s: &str) -> Result<Cid, CodecError> {
    stratos_domain::cid::parse(s).map_err(|_| corrupt("CID"))
}

/// A stored text column as its typed value (`what` names it in the error).
pub fn parse<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<T, CodecError> {
    text.parse().map_err(|_| corrupt(what))
}

/// How a boundary set is stored in one text column: one boundary per line (a boundary holds
/// no whitespace).
pub fn join_boundaries(boundaries: &[Boundary]) -> String {
    let mut out = String::new();
    for (i, b) in boundaries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(b.as_str());
    }
    out
}

/// Decodes what [`join_boundaries`] wrote.
pub fn split_boundaries(text: &str) -> Result<Vec<Boundary>, CodecError> {
    text.split('\n')
        .filter(|b| !b.is_empty())
        .map(|b| parse(b, "boundary"))
        .collect()
}

/// The text columns of an enrollment row (`did, enrolled_at, pds_endpoint, signing_key,
/// enrollment_rkey, boundaries` as [`crate::storage_sql::ServiceSql::enrollment_get`] selects
/// them) as an [`Enrollment`].
pub fn enrollment_from_columns(
    did: &str,
    enrolled_at: &str,
    pds_endpoint: Option<String>,
    signing_key: String,
    enrollment_rkey: Option<&str>,
    boundaries: &str,
) -> Result<Enrollment, CodecError> {
    Ok(Enrollment {
        did: parse(did, "enrollment DID")?,
        enrolled_at: parse(enrolled_at, "enrollment time")?,
        pds_endpoint,
        signing_key,
        enrollment_rkey: enrollment_rkey
            .map(|k| parse(k, "enrollment record key"))
            .transpose()?,
        boundaries: split_boundaries(boundaries)?,
    })
}

/// The columns of an enrollment event row (`seq, did, action, time, boundaries` as
/// [`crate::storage_sql::ServiceSql::events_after`] selects them) as an [`EnrollmentEvent`].
pub fn event_from_columns(
    seq: i64,
    did: &str,
    action: &str,
    time: &str,
    boundaries: &str,
) -> Result<EnrollmentEvent, CodecError> {
    Ok(EnrollmentEvent {
        seq: u64::try_from(seq).map_err(|_| corrupt("enrollment event number"))?,
        did: parse(did, "enrollment event DID")?,
        action: EnrollmentAction::parse(action)
            .ok_or_else(|| corrupt("enrollment event action"))?,
        time: parse(time, "enrollment event time")?,
        boundaries: split_boundaries(boundaries)?,
    })
}

/// Encodes the body of one event: its ops and, when present, its proof. The CAR slice is stored
/// as base64 (a few KB per commit, written once, read on replay).
pub fn encode_event_body(ops: &[EventOp], proof: Option<&EventProof>) -> Vec<u8> {
    let list: Vec<Value> = ops
        .iter()
        .map(|op| {
            json!({
                "action": op.action.as_str(),
                "path": format!("{}/{}", op.collection, op.rkey),
                "cid": op.cid.map(|c| c.to_string()),
                "prev": op.prev.map(|c| c.to_string()),
                "boundaries": op.boundaries,
            })
        })
        .collect();
    let Some(proof) = proof else {
        return Value::Array(list).to_string().into_bytes();
    };
    json!({
        "ops": list,
        "since": proof.since.as_ref().map(|t| t.as_str()),
        "prevData": proof.prev_data.map(|c| c.to_string()),
        "blocks": STANDARD_NO_PAD.encode(&proof.blocks),
    })
    .to_string()
    .into_bytes()
}

/// Decodes what [`encode_event_body`] wrote: the ops, and the proof when the event has one
/// (events stored before proofs existed are a bare list of ops).
pub fn decode_event_body(bytes: &[u8]) -> Result<(Vec<EventOp>, Option<EventProof>), CodecError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| corrupt("event"))?;
    let (list, proof) = match &value {
        Value::Array(list) => (list, None),
        Value::Object(body) => {
            let list = body
                .get("ops")
                .and_then(Value::as_array)
                .ok_or_else(|| corrupt("event"))?;
            let since = match body.get("since") {
                Some(Value::String(s)) => Some(parse(s, "event since")?),
                _ => None,
            };
            let prev_data = match body.get("prevData") {
                Some(Value::String(s)) => Some(cid_of(s)?),
                _ => None,
            };
            let blocks = body
                .get("blocks")
                .and_then(Value::as_str)
                .and_then(|b| STANDARD_NO_PAD.decode(b).ok())
                .ok_or_else(|| corrupt("event blocks"))?;
            (
                list,
                Some(EventProof {
                    since,
                    prev_data,
                    blocks,
                }),
            )
        }
        _ => return Err(corrupt("event")),
    };
    let ops = list
        .iter()
        .map(|op| {
            let text = |k: &str| {
                op.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt("event op"))
            };
            let link = |k: &str| match op.get(k) {
                Some(Value::String(s)) => cid_of(s).map(Some),
                _ => Ok(None),
            };
            let boundaries = op
                .get("boundaries")
                .and_then(Value::as_array)
                .map(|b| {
                    b.iter()
                        .map(|v| {
                            v.as_str()
                                .and_then(|b| Boundary::parse(b).ok())
                                .ok_or_else(|| corrupt("event boundary"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            let action = Action::parse(&text("action")?).ok_or_else(|| corrupt("event action"))?;
            let path = text("path")?;
            let (collection, rkey) = path.split_once('/').ok_or_else(|| corrupt("event path"))?;
            Ok(EventOp {
                action,
                collection: Nsid::parse(collection).map_err(|_| corrupt("event path"))?,
                rkey: RecordKey::parse(rkey).map_err(|_| corrupt("event path"))?,
                cid: link("cid")?,
                prev: link("prev")?,
                boundaries,
            })
        })
        .collect::<Result<_, CodecError>>()?;
    Ok((ops, proof))
}

/// Encodes an outbox item.
pub fn encode_item(item: &OutboxItem) -> Vec<u8> {
    let value = match &item.action {
        OutboxAction::PutRecord {
            collection,
            rkey,
            record_json,
        } => {
            json!({"did": item.did, "op": "put", "collection": collection, "rkey": rkey, "record": record_json})
        }
        OutboxAction::DeleteRecord { collection, rkey } => {
            json!({"did": item.did, "op": "delete", "collection": collection, "rkey": rkey})
        }
        OutboxAction::EndSession { authorized_by } => {
            json!({"did": item.did, "op": "end_session", "authorizedBy": authorized_by})
        }
    };
    value.to_string().into_bytes()
}

/// Decodes what [`encode_item`] wrote.
pub fn decode_item(bytes: &[u8]) -> Result<OutboxItem, CodecError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| corrupt("outbox item"))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| corrupt("outbox item"))
    };
    let collection = || Nsid::parse(&text("collection")?).map_err(|_| corrupt("outbox item"));
    let rkey = || RecordKey::parse(&text("rkey")?).map_err(|_| corrupt("outbox item"));
    let action = match text("op")?.as_str() {
        "put" => OutboxAction::PutRecord {
            collection: collection()?,
            rkey: rkey()?,
            record_json: text("record")?,
        },
        "delete" => OutboxAction::DeleteRecord {
            collection: collection()?,
            rkey: rkey()?,
        },
        "end_session" => OutboxAction::EndSession {
            authorized_by: v
                .get("authorizedBy")
                .and_then(Value::as_i64)
                .ok_or_else(|| corrupt("outbox item"))?,
        },
        _ => return Err(corrupt("outbox item")),
    };
    Ok(OutboxItem {
        did: Did::parse(&text("did")?).map_err(|_| corrupt("outbox item"))?,
        action,
    })
}

/// Parses a stored binary CID.
pub fn cid_from_bytes(bytes: &[u8]) -> Result<Cid, CodecError> {
    Cid::try_from(bytes).map_err(|_| corrupt("CID"))
}

/// How a signing key is stored: its curve's name and its raw private scalar.
pub fn encode_key(key: &stratos_domain::crypto::Keypair) -> (&'static str, [u8; 32]) {
    use stratos_domain::crypto::KeyAlgorithm;
    let alg = match key.public_key().algorithm() {
        KeyAlgorithm::P256 => "p256",
        KeyAlgorithm::K256 => "k256",
    };
    (alg, key.private_bytes())
}

/// Rebuilds a key from what [`encode_key`] stored.
pub fn decode_key(alg: &str, bytes: &[u8]) -> Result<stratos_domain::crypto::Keypair, CodecError> {
    use stratos_domain::crypto::{KeyAlgorithm, Keypair};
    let alg = match alg {
        "p256" => KeyAlgorithm::P256,
        "k256" => KeyAlgorithm::K256,
        _ => return Err(corrupt("signing key")),
    };
    Keypair::from_private_bytes(alg, bytes).map_err(|_| corrupt("signing key"))
}
