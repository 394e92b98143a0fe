//! A commit as one SQL script: `BEGIN; …; COMMIT;` executed in a single call.
//!
//! With sqlx-sqlite every statement is a round trip to the connection's thread, and that hand-off
//! dominated the cost of a commit (~10 statements). A script runs all of them in one call. Every
//! value is written as a hex blob literal (`X'…'`, cast to TEXT where the column is text), so
//! no input can change the SQL. Checks that must abort the commit insert a 0 into a guard table
//! whose named CHECK constraint fails: the error names the guard, and the caller rolls back.

use std::collections::HashSet;

use stratos_domain::Cid;
use stratos_ports::repo_store::{CommitUnit, IndexChange};

use crate::codec::{encode_item, encode_ops};

/// Guard tables (part of the actor schema).
pub(crate) const GUARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS guard_head (ok INTEGER CONSTRAINT head_moved CHECK (ok = 1));
CREATE TABLE IF NOT EXISTS guard_index (ok INTEGER CONSTRAINT index_mismatch CHECK (ok = 1))";

/// The constraint a lost compare-and-swap violates.
pub(crate) const HEAD_MOVED: &str = "head_moved";
/// The constraint a commit that disagrees with the record index violates.
pub(crate) const INDEX_MISMATCH: &str = "index_mismatch";

const HEX: &[u8; 16] = b"0123456789abcdef";

fn blob(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out.push('\'');
}

fn text(out: &mut String, s: &str) {
    out.push_str("CAST(");
    blob(out, s.as_bytes());
    out.push_str(" AS TEXT)");
}

fn cid(out: &mut String, c: &Cid) {
    blob(out, &c.to_bytes());
}

fn path_eq(out: &mut String, collection: &str, rkey: &str) {
    out.push_str("collection = ");
    text(out, collection);
    out.push_str(" AND rkey = ");
    text(out, rkey);
}

/// The script for `unit`. The event row is inserted last, so the connection's last insert rowid
/// afterwards is the event's sequence number.
pub(crate) fn commit_script(unit: &CommitUnit) -> String {
    let mut s = String::with_capacity(4096 + unit.new_blocks.byte_len() * 2);
    s.push_str("BEGIN IMMEDIATE;\n");

    // Compare-and-swap on the head.
    match &unit.prev {
        Some(prev) => {
            s.push_str("INSERT INTO guard_head SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM repo_root WHERE id = 1 AND commit_cid = ");
            cid(&mut s, prev);
            s.push_str(");\n");
        }
        None => {
            s.push_str("INSERT INTO guard_head SELECT 0 WHERE EXISTS (SELECT 1 FROM repo_root);\n")
        }
    }
    s.push_str("INSERT OR REPLACE INTO repo_root (id, commit_cid, rev, data_cid) VALUES (1, ");
    cid(&mut s, &unit.head.commit);
    s.push_str(", ");
    text(&mut s, unit.head.rev.as_str());
    s.push_str(", ");
    cid(&mut s, &unit.head.data);
    s.push_str(");\n");

    // Blocks.
    if !unit.new_blocks.is_empty() {
        s.push_str("INSERT OR IGNORE INTO block (cid, content) VALUES ");
        for (i, (c, bytes)) in unit.new_blocks.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push('(');
            cid(&mut s, c);
            s.push_str(", ");
            blob(&mut s, bytes);
            s.push(')');
        }
        s.push_str(";\n");
    }
    if !unit.removed_blocks.is_empty() {
        s.push_str("DELETE FROM block WHERE cid IN (");
        for (i, c) in unit.removed_blocks.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            cid(&mut s, c);
        }
        s.push_str(");\n");
    }

    // Record index. Paths the event marks as created have no old rows to clear.
    let created: HashSet<&str> = unit
        .event
        .iter()
        .flat_map(|e| e.ops.iter())
        .filter(|op| op.action == "create")
        .map(|op| op.path.as_str())
        .collect();
    let mut puts = Vec::new();
    for change in &unit.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid: record,
                boundaries,
            } => {
                if !unit.new_blocks.contains(record) {
                    s.push_str("INSERT INTO guard_index SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM block WHERE cid = ");
                    cid(&mut s, record);
                    s.push_str(");\n");
                }
                if !created.contains(format!("{collection}/{rkey}").as_str()) {
                    s.push_str("DELETE FROM record_boundary WHERE ");
                    path_eq(&mut s, collection, rkey);
                    s.push_str(";\n");
                }
                puts.push((collection, rkey, record, boundaries));
            }
            IndexChange::Delete { collection, rkey } => {
                s.push_str("INSERT INTO guard_index SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM record WHERE ");
                path_eq(&mut s, collection, rkey);
                s.push_str(");\nDELETE FROM record WHERE ");
                path_eq(&mut s, collection, rkey);
                s.push_str(";\nDELETE FROM record_boundary WHERE ");
                path_eq(&mut s, collection, rkey);
                s.push_str(";\n");
            }
        }
    }
    if !puts.is_empty() {
        s.push_str("INSERT OR REPLACE INTO record (collection, rkey, cid, boundaries) VALUES ");
        for (i, (collection, rkey, record, boundaries)) in puts.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push('(');
            text(&mut s, collection);
            s.push_str(", ");
            text(&mut s, rkey);
            s.push_str(", ");
            cid(&mut s, record);
            s.push_str(", ");
            text(&mut s, &boundaries.join("\n"));
            s.push(')');
        }
        s.push_str(";\n");
        let rows: Vec<_> = puts
            .iter()
            .flat_map(|(c, r, _, bs)| bs.iter().map(move |b| (c, r, b)))
            .collect();
        if !rows.is_empty() {
            s.push_str(
                "INSERT OR IGNORE INTO record_boundary (collection, boundary, rkey) VALUES ",
            );
            for (i, (collection, rkey, boundary)) in rows.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push('(');
                text(&mut s, collection);
                s.push_str(", ");
                text(&mut s, boundary);
                s.push_str(", ");
                text(&mut s, rkey);
                s.push(')');
            }
            s.push_str(";\n");
        }
    }

    // Outbox, then the event (last insert: its rowid is the sequence number).
    for item in &unit.outbox {
        s.push_str("INSERT INTO outbox (item, due_ms) VALUES (");
        blob(&mut s, &encode_item(item));
        s.push_str(", 0);\n");
    }
    if let Some(event) = &unit.event {
        s.push_str("INSERT INTO event (rev, commit_cid, time, ops) VALUES (");
        text(&mut s, &event.rev);
        s.push_str(", ");
        cid(&mut s, &event.commit);
        s.push_str(", ");
        text(&mut s, &event.time);
        s.push_str(", ");
        blob(&mut s, &encode_ops(&event.ops));
        s.push_str(");\n");
    }
    s.push_str("COMMIT;");
    s
}
