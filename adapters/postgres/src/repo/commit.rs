//! The commit transaction: one [`CommitUnit`] applied atomically, with the compare-and-swap on
//! the root row, in statements of constant text (see the crate docs).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use sea_orm::sqlx::postgres::PgArguments;
use sea_orm::sqlx::{self, AssertSqlSafe, Postgres, Row as _};
use stratos_domain::Cid;
use stratos_domain::syntax::Did;
use stratos_ports::repo_store::{CommitUnit, IndexChange, SeqEvent};
use stratos_ports::storage_codec::{encode_event_body, encode_item, join_boundaries};

use crate::PostgresError;

/// The commit statements that name the service schema (fixed per deployment, so their text is
/// constant too).
#[derive(Debug, Clone)]
pub(crate) struct CommitSql {
    /// The outbox insert: one row per item, in order.
    outbox: Arc<str>,
    /// A plain unit in one statement ([`apply_plain`]).
    plain: Arc<str>,
}

impl CommitSql {
    pub(crate) fn new(service: &str) -> Self {
        let outbox = format!(
            "INSERT INTO {service}.outbox (did, item, due_ms) \
             SELECT $1, i.item, 0 FROM unnest($2::bytea[]) WITH ORDINALITY AS i(item, n) \
             ORDER BY i.n"
        );
        let plain = format!(
            "WITH root AS (UPDATE repo_root SET commit_cid = $1, rev = $2, data_cid = $3 \
             WHERE id = 1 AND commit_cid = $4 RETURNING 1), \
             blocks AS (INSERT INTO block (cid, content) SELECT n.cid, n.content \
             FROM unnest($5::bytea[], $6::bytea[]) AS n(cid, content) \
             WHERE EXISTS (SELECT 1 FROM root) ON CONFLICT (cid) DO NOTHING), \
             removed AS (DELETE FROM block WHERE cid = ANY($7::bytea[]) \
             AND EXISTS (SELECT 1 FROM root)), \
             records AS (INSERT INTO record (collection, rkey, cid, boundaries) \
             SELECT p.collection, p.rkey, p.cid, string_to_array(p.boundaries, E'\\n') \
             FROM unnest($8::text[], $9::text[], $10::bytea[], $11::text[]) \
             AS p(collection, rkey, cid, boundaries) WHERE EXISTS (SELECT 1 FROM root) \
             ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, \
             boundaries = excluded.boundaries), \
             event AS (INSERT INTO event (rev, commit_cid, time, ops) \
             SELECT $12::text, $13::bytea, $14::text, $15::bytea \
             WHERE EXISTS (SELECT 1 FROM root) RETURNING seq), \
             outbox AS (INSERT INTO {service}.outbox (did, item, due_ms) \
             SELECT $16::text, i.item, 0 FROM unnest($17::bytea[]) WITH ORDINALITY AS i(item, n) \
             WHERE EXISTS (SELECT 1 FROM root) ORDER BY i.n) \
             SELECT (SELECT count(*) FROM root), COALESCE((SELECT seq FROM event), 0)"
        );
        Self {
            outbox: outbox.into(),
            plain: plain.into(),
        }
    }
}

/// The actor transaction's connection: every statement in it names tables unqualified, resolved
/// through the transaction's `search_path` (see
/// [`PostgresRepoStore::begin`](super::PostgresRepoStore::begin)).
pub(super) type Tx = sqlx::Transaction<'static, Postgres>;

/// A statement of constant text (no schema name in it), so the connection's prepared-statement
/// cache holds one entry per statement kind whatever the number of actors. Variable-length
/// inputs travel as arrays (`unnest`, `= ANY`), never as a variable number of placeholders.
fn q(sql: &'static str) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    sqlx::query(sql)
}

fn cid_bytes<'a>(cids: impl IntoIterator<Item = &'a Cid>) -> Vec<Vec<u8>> {
    cids.into_iter().map(Cid::to_bytes).collect()
}

pub(super) async fn apply(
    tx: &mut Tx,
    sql: &CommitSql,
    did: &Did,
    unit: &CommitUnit,
) -> Result<u64, PostgresError> {
    let rev = unit.head.rev.to_string();
    if let Some(prev) = &unit.prev
        && let Some(event) = &unit.event
        && unit.only_creates_new_records()
    {
        return apply_plain(tx, sql, did, unit, prev, event, &rev).await;
    }
    // Compare-and-swap first: the row lock orders concurrent writers, and the loser re-checks
    // the condition after the winner commits.
    let swapped = match &unit.prev {
        Some(prev) => q(
            "UPDATE repo_root SET commit_cid = $1, rev = $2, data_cid = $3 \
                         WHERE id = 1 AND commit_cid = $4",
        )
        .bind(unit.head.commit.to_bytes())
        .bind(&rev)
        .bind(unit.head.data.to_bytes())
        .bind(prev.to_bytes()),
        None => q(
            "INSERT INTO repo_root (id, commit_cid, rev, data_cid) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(unit.head.commit.to_bytes())
        .bind(&rev)
        .bind(unit.head.data.to_bytes()),
    }
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if swapped != 1 {
        return Err(PostgresError::Conflict);
    }

    if !unit.new_blocks.is_empty() {
        let (cids, contents): (Vec<Vec<u8>>, Vec<&[u8]>) = unit
            .new_blocks
            .iter()
            .map(|(c, b)| (c.to_bytes(), b))
            .unzip();
        q(
            "INSERT INTO block (cid, content) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
           ON CONFLICT (cid) DO NOTHING",
        )
        .bind(cids)
        .bind(contents)
        .execute(&mut **tx)
        .await?;
    }
    if !unit.removed_blocks.is_empty() {
        q("DELETE FROM block WHERE cid = ANY($1::bytea[])")
            .bind(cid_bytes(&unit.removed_blocks))
            .execute(&mut **tx)
            .await?;
    }

    let mut puts = Puts::default();
    let mut deletes: Vec<(&str, &str)> = Vec::new();
    for change in &unit.index {
        match change {
            IndexChange::Put {
                collection,
                rkey,
                cid,
                boundaries,
                ..
            } => {
                if !unit.new_blocks.contains(cid) {
                    let known = q("SELECT 1 FROM block WHERE cid = $1")
                        .bind(cid.to_bytes())
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_some();
                    if !known {
                        return Err(PostgresError::IndexMismatch(format!(
                            "record block {cid} is neither new nor stored"
                        )));
                    }
                }
                puts.collections.push(collection.as_str());
                puts.rkeys.push(rkey.as_str());
                puts.cids.push(cid.to_bytes());
                puts.boundaries.push(join_boundaries(boundaries));
            }
            IndexChange::Delete { collection, rkey } => {
                deletes.push((collection.as_str(), rkey.as_str()));
            }
        }
    }
    if !deletes.is_empty() {
        let (collections, rkeys): (Vec<&str>, Vec<&str>) = deletes.iter().copied().unzip();
        let gone: HashSet<(String, String)> = q("DELETE FROM record r \
             USING unnest($1::text[], $2::text[]) AS d(collection, rkey) \
             WHERE r.collection = d.collection AND r.rkey = d.rkey \
             RETURNING r.collection, r.rkey")
        .bind(collections)
        .bind(rkeys)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        if let Some((collection, rkey)) = deletes
            .iter()
            .find(|(c, r)| !gone.contains(&((*c).to_owned(), (*r).to_owned())))
        {
            return Err(PostgresError::IndexMismatch(format!(
                "delete of missing record {collection}/{rkey}"
            )));
        }
    }
    if !puts.cids.is_empty() {
        q("INSERT INTO record (collection, rkey, cid, boundaries) \
           SELECT p.collection, p.rkey, p.cid, string_to_array(p.boundaries, E'\\n') \
           FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) \
           AS p(collection, rkey, cid, boundaries) \
           ON CONFLICT (collection, rkey) DO UPDATE SET cid = excluded.cid, \
           boundaries = excluded.boundaries")
        .bind(puts.collections)
        .bind(puts.rkeys)
        .bind(puts.cids)
        .bind(puts.boundaries)
        .execute(&mut **tx)
        .await?;
    }
    apply_blob_links(tx, unit, &rev).await?;

    let mut seq = 0;
    if let Some(event) = &unit.event {
        let row = q(
            "INSERT INTO event (rev, commit_cid, time, ops) VALUES ($1, $2, $3, $4) \
                     RETURNING seq",
        )
        .bind(event.rev.as_str())
        .bind(event.commit.to_bytes())
        .bind(event.time.as_str())
        .bind(encode_event_body(&event.ops, event.proof.as_ref()))
        .fetch_one(&mut **tx)
        .await?;
        seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
    }
    if !unit.outbox.is_empty() {
        let items: Vec<Vec<u8>> = unit.outbox.iter().map(encode_item).collect();
        sqlx::query(AssertSqlSafe(sql.outbox.clone()))
            .bind(did.as_str())
            .bind(items)
            .execute(&mut **tx)
            .await?;
    }
    Ok(seq)
}

/// A plain unit ([`CommitUnit::only_creates_new_records`]) in one statement: the compare-and-swap on the root, the blocks,
/// the record rows, the event and the outbox rows, each part gated on the swap (`EXISTS (SELECT
/// 1 FROM root)`), so a lost swap writes nothing and reports zero swapped rows. The same work
/// as the general path, in one round trip instead of one per part.
async fn apply_plain(
    tx: &mut Tx,
    sql: &CommitSql,
    did: &Did,
    unit: &CommitUnit,
    prev: &Cid,
    event: &SeqEvent,
    rev: &str,
) -> Result<u64, PostgresError> {
    let (cids, contents): (Vec<Vec<u8>>, Vec<&[u8]>) = unit
        .new_blocks
        .iter()
        .map(|(c, b)| (c.to_bytes(), b))
        .unzip();
    let mut puts = Puts::default();
    for change in &unit.index {
        if let IndexChange::Put {
            collection,
            rkey,
            cid,
            boundaries,
            ..
        } = change
        {
            puts.collections.push(collection.as_str());
            puts.rkeys.push(rkey.as_str());
            puts.cids.push(cid.to_bytes());
            puts.boundaries.push(join_boundaries(boundaries));
        }
    }
    let items: Vec<Vec<u8>> = unit.outbox.iter().map(encode_item).collect();
    let row = sqlx::query(AssertSqlSafe(sql.plain.clone()))
        .bind(unit.head.commit.to_bytes())
        .bind(rev)
        .bind(unit.head.data.to_bytes())
        .bind(prev.to_bytes())
        .bind(cids)
        .bind(contents)
        .bind(cid_bytes(&unit.removed_blocks))
        .bind(puts.collections)
        .bind(puts.rkeys)
        .bind(puts.cids)
        .bind(puts.boundaries)
        .bind(event.rev.as_str())
        .bind(event.commit.to_bytes())
        .bind(event.time.as_str())
        .bind(encode_event_body(&event.ops, event.proof.as_ref()))
        .bind(did.as_str())
        .bind(items)
        .fetch_one(&mut **tx)
        .await?;
    if row.try_get::<i64, _>(0)? != 1 {
        return Err(PostgresError::Conflict);
    }
    let seq: i64 = row.try_get(1)?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The record rows a unit puts, column by column (one array parameter each).
#[derive(Default)]
struct Puts<'a> {
    collections: Vec<&'a str>,
    rkeys: Vec<&'a str>,
    cids: Vec<Vec<u8>>,
    boundaries: Vec<String>,
}

/// The blob side of a unit: the links of updated and deleted paths go, the puts' links come, the
/// puts' blobs become permanent (each must be tracked and live, or nothing of the unit applies),
/// and a blob whose last link went is released. A unit of creates without blobs runs no
/// statement here.
async fn apply_blob_links(tx: &mut Tx, unit: &CommitUnit, rev: &str) -> Result<(), PostgresError> {
    // Created paths have no links yet (without an event every touched path is cleared).
    let created = unit.created_paths();
    let mut stale: (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut wanted = BTreeSet::new();
    let mut links: (Vec<String>, Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new(), Vec::new());
    for change in &unit.index {
        let (collection, rkey) = match change {
            IndexChange::Put {
                collection,
                rkey,
                blobs,
                ..
            } => {
                for cid in blobs {
                    let c = cid.to_string();
                    wanted.insert(c.clone());
                    links.0.push(c);
                    links.1.push(collection.as_str());
                    links.2.push(rkey.as_str());
                }
                (collection, rkey)
            }
            IndexChange::Delete { collection, rkey } => (collection, rkey),
        };
        if !created.contains(&(collection, rkey)) {
            stale.0.push(collection.as_str());
            stale.1.push(rkey.as_str());
        }
    }
    let mut lost = BTreeSet::new();
    if !stale.0.is_empty() {
        let rows = q("DELETE FROM record_blob rb \
                      USING unnest($1::text[], $2::text[]) AS d(collection, rkey) \
                      WHERE rb.collection = d.collection AND rb.rkey = d.rkey RETURNING rb.cid")
        .bind(stale.0)
        .bind(stale.1)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows {
            lost.insert(row.try_get::<String, _>(0)?);
        }
    }
    if !wanted.is_empty() {
        let wanted: Vec<String> = wanted.into_iter().collect();
        let updated =
            q("UPDATE blob SET temp_key = NULL WHERE NOT released AND cid = ANY($1::text[])")
                .bind(&wanted)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        if usize::try_from(updated).unwrap_or(0) != wanted.len() {
            let found: HashSet<String> =
                q("SELECT cid FROM blob WHERE NOT released AND cid = ANY($1::text[])")
                    .bind(&wanted)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
            let missing = wanted
                .iter()
                .find(|c| !found.contains(*c))
                .cloned()
                .unwrap_or_default();
            return Err(PostgresError::BlobMissing(missing));
        }
    }
    if !links.0.is_empty() {
        q("INSERT INTO record_blob (cid, collection, rkey, rev) \
           SELECT l.cid, l.collection, l.rkey, $4 \
           FROM unnest($1::text[], $2::text[], $3::text[]) AS l(cid, collection, rkey) \
           ON CONFLICT (cid, collection, rkey) DO UPDATE SET rev = excluded.rev")
        .bind(links.0)
        .bind(links.1)
        .bind(links.2)
        .bind(rev)
        .execute(&mut **tx)
        .await?;
    }
    if !lost.is_empty() {
        let lost: Vec<String> = lost.into_iter().collect();
        q(
            "UPDATE blob b SET released = TRUE WHERE b.cid = ANY($1::text[]) AND NOT EXISTS \
           (SELECT 1 FROM record_blob rb WHERE rb.cid = b.cid)",
        )
        .bind(lost)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
