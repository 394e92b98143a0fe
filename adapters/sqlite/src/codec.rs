//! How event ops and outbox items are stored: small JSON documents (readable with the sqlite3
//! shell when debugging; they are never on a hot read path).

use serde_json::{Value, json};
use stratos_domain::Cid;
use stratos_ports::outbox::{OutboxAction, OutboxItem};
use stratos_ports::repo_store::EventOp;

use crate::SqliteError;

fn corrupt(what: &str) -> SqliteError {
    SqliteError::Corrupt(format!("stored {what} is malformed"))
}

fn cid_of(s: &str) -> Result<Cid, SqliteError> {
    stratos_domain::cid::parse(s).map_err(|_| corrupt("CID"))
}

/// Encodes the ops of one event.
pub(crate) fn encode_ops(ops: &[EventOp]) -> Vec<u8> {
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
pub(crate) fn decode_ops(bytes: &[u8]) -> Result<Vec<EventOp>, SqliteError> {
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
pub(crate) fn encode_item(item: &OutboxItem) -> Vec<u8> {
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
pub(crate) fn decode_item(bytes: &[u8]) -> Result<OutboxItem, SqliteError> {
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
pub(crate) fn cid_from_bytes(bytes: &[u8]) -> Result<Cid, SqliteError> {
    Cid::try_from(bytes).map_err(|_| corrupt("CID"))
}
