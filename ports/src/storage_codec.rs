//! How storage adapters persist event ops and outbox items: small JSON documents, readable with a
//! database shell when debugging (they are never on a hot read path). Shared so every adapter
//! stores the same format.

use serde_json::{Value, json};
use stratos_domain::Cid;

use crate::outbox::{OutboxAction, OutboxItem};
use crate::repo_store::EventOp;

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

/// Encodes the ops of one event.
pub fn encode_ops(ops: &[EventOp]) -> Vec<u8> {
    let list: Vec<Value> = ops
        .iter()
        .map(|op| {
            json!({
                "action": op.action,
                "path": op.path,
                "cid": op.cid.map(|c| c.to_string()),
                "boundaries": op.boundaries,
            })
        })
        .collect();
    Value::Array(list).to_string().into_bytes()
}

/// Decodes what [`encode_ops`] wrote.
pub fn decode_ops(bytes: &[u8]) -> Result<Vec<EventOp>, CodecError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| corrupt("event"))?;
    let list = value.as_array().ok_or_else(|| corrupt("event"))?;
    list.iter()
        .map(|op| {
            let text = |k: &str| {
                op.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt("event op"))
            };
            let cid = match op.get("cid") {
                Some(Value::String(s)) => Some(cid_of(s)?),
                _ => None,
            };
            let boundaries = op
                .get("boundaries")
                .and_then(Value::as_array)
                .map(|b| {
                    b.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok(EventOp {
                action: text("action")?,
                path: text("path")?,
                cid,
                boundaries,
            })
        })
        .collect()
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
    let action = match text("op")?.as_str() {
        "put" => OutboxAction::PutRecord {
            collection: text("collection")?,
            rkey: text("rkey")?,
            record_json: text("record")?,
        },
        "delete" => OutboxAction::DeleteRecord {
            collection: text("collection")?,
            rkey: text("rkey")?,
        },
        _ => return Err(corrupt("outbox item")),
    };
    Ok(OutboxItem {
        did: text("did")?,
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
