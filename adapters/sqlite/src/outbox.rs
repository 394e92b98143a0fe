//! The outbox over SQLite. Items caused by a commit live in the actor's own database (written in
//! the commit's transaction); items enqueued outside a commit live in the service database. A
//! service-level table of "actors with outbox items" tells the worker where to look.
//!
//! Item ids: service items use their row id; actor items use `(hint id << 32) | row id`.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{ClaimedItem, Outbox, OutboxError, OutboxItem};

use crate::SqliteError;
use crate::actor_db::{ActorDb, ActorDbs};
use crate::db::{Row, returning_one, stmt};
use crate::service::{q, sql};
use stratos_ports::storage_codec::{decode_item, encode_item};

const LOCAL_BITS: u32 = 32;

fn outbox_err(e: SqliteError) -> OutboxError {
    OutboxError::Backend(stratos_ports::Cause::new(e))
}

/// Which actors have (or had) outbox items.
#[derive(Debug)]
pub(crate) struct OutboxHints {
    pub(crate) service: DatabaseConnection,
    /// DIDs already recorded by this process: spares a service-database write per commit.
    pub(crate) known: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OutboxHints {
    pub(crate) fn new(service: DatabaseConnection) -> Self {
        Self {
            service,
            known: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn remember(&self, did: &str) -> Result<(), SqliteError> {
        if self.known().contains(did) {
            return Ok(());
        }
        self.service
            .execute_raw(stmt(
                "INSERT OR IGNORE INTO outbox_actor (did) VALUES (?)",
                vec![did.into()],
            ))
            .await?;
        self.known().insert(did.to_owned());
        Ok(())
    }

    pub(crate) async fn forget(&self, did: &str) -> Result<(), SqliteError> {
        self.known().remove(did);
        self.service
            .execute_raw(stmt(
                "DELETE FROM outbox_actor WHERE did = ?",
                vec![did.into()],
            ))
            .await?;
        Ok(())
    }

    async fn all(&self) -> Result<Vec<(u64, String)>, SqliteError> {
        let rows = self
            .service
            .query_all_raw(stmt("SELECT id, did FROM outbox_actor ORDER BY id", vec![]))
            .await?;
        rows.iter()
            .map(|r| Ok((u64::try_from(r.int(0)?).unwrap_or(0), r.text(1)?)))
            .collect()
    }

    async fn did_of(&self, hint: u64) -> Result<Option<String>, SqliteError> {
        let row = self
            .service
            .query_one_raw(stmt(
                "SELECT did FROM outbox_actor WHERE id = ?",
                vec![i64::try_from(hint).unwrap_or(-1).into()],
            ))
            .await?;
        row.map(|r| r.text(0)).transpose().map_err(Into::into)
    }
}

/// [`Outbox`] over the service database and the actors' databases.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pub(crate) service: DatabaseConnection,
    pub(crate) dbs: Arc<ActorDbs>,
    pub(crate) hints: Arc<OutboxHints>,
}

/// Leases up to `limit` due items of an actor's outbox table, in id order. (The service
/// database's outbox table runs the shared statements of `stratos_ports::storage_sql`; the
/// actor databases are this adapter's own.)
const CLAIM: &str = "UPDATE outbox SET leased_until = ?1 WHERE id IN (\
       SELECT id FROM outbox WHERE due_ms <= ?2 \
       AND (leased_until IS NULL OR leased_until <= ?2) ORDER BY id LIMIT ?3) \
     RETURNING id, item, attempts";
const COMPLETE: &str = "DELETE FROM outbox WHERE id = ?";
const FAIL: &str =
    "UPDATE outbox SET attempts = attempts + 1, due_ms = ?, leased_until = NULL WHERE id = ?";
const COUNT: &str = "SELECT COUNT(*) FROM outbox";

/// A claimed row: local id, item, attempts so far.
type Claimed = (u64, OutboxItem, u32);

fn claimed(id: i64, item: &[u8], attempts: i64) -> Result<Claimed, SqliteError> {
    Ok((
        u64::try_from(id).unwrap_or(0),
        decode_item(item)?,
        u32::try_from(attempts).unwrap_or(u32::MAX),
    ))
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

async fn claim_service(
    conn: &DatabaseConnection,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, SqliteError> {
    let rows = conn
        .query_all_raw(q(sql().outbox_claim(now_ms, lease_ms, limit)))
        .await?;
    let mut out = rows
        .iter()
        .map(|r| claimed(r.int(0)?, &r.bytes(1)?, r.int(2)?))
        .collect::<Result<Vec<_>, SqliteError>>()?;
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

async fn claim_actor(
    db: &ActorDb,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, SqliteError> {
    db.call(move |conn| {
        let mut statement = conn.prepare_cached(CLAIM)?;
        let rows = statement.query_map(
            rusqlite::params![now_ms.saturating_add(lease_ms), now_ms, limit_of(limit)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, item, attempts) = row?;
            out.push(claimed(id, &item, attempts)?);
        }
        out.sort_by_key(|(id, _, _)| *id);
        Ok(out)
    })
    .await
}

/// Items in an actor's outbox table.
pub(crate) async fn actor_pending(db: &ActorDb) -> Result<usize, SqliteError> {
    db.call(|conn| {
        let n: i64 = conn.prepare_cached(COUNT)?.query_row([], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    })
    .await
}

/// Where an item lives: the service database or an actor's, with its row id there.
enum Located {
    Service(i64),
    Actor(ActorDb, i64),
}

impl SqliteOutbox {
    /// The database holding item `id` and the row id inside it.
    async fn locate(&self, id: u64) -> Result<Option<Located>, SqliteError> {
        let hint = id >> LOCAL_BITS;
        let local = i64::try_from(id & ((1 << LOCAL_BITS) - 1)).unwrap_or(-1);
        if hint == 0 {
            return Ok(Some(Located::Service(local)));
        }
        let Some(did) = self.hints.did_of(hint).await? else {
            return Ok(None);
        };
        Ok(self
            .dbs
            .get(&did)
            .await?
            .map(|db| Located::Actor(db, local)))
    }

    /// Completes the item (`retry_at` `None`) or releases it for a retry; it must exist.
    async fn update(&self, id: u64, retry_at: Option<i64>) -> Result<(), OutboxError> {
        let located = self
            .locate(id)
            .await
            .map_err(outbox_err)?
            .ok_or(OutboxError::NotClaimed(id))?;
        let done = match located {
            Located::Service(local) => {
                let local = u64::try_from(local).unwrap_or(u64::MAX);
                let statement = match retry_at {
                    Some(at) => sql().outbox_fail(local, at),
                    None => sql().outbox_complete(local),
                };
                self.service
                    .execute_raw(q(statement))
                    .await
                    .map_err(|e| outbox_err(e.into()))?
                    .rows_affected()
            }
            Located::Actor(db, local) => db
                .call(move |conn| {
                    let sql = if retry_at.is_some() { FAIL } else { COMPLETE };
                    let mut statement = conn.prepare_cached(sql)?;
                    let n = match retry_at {
                        Some(at) => statement.execute(rusqlite::params![at, local])?,
                        None => statement.execute(rusqlite::params![local])?,
                    };
                    Ok(u64::try_from(n).unwrap_or(0))
                })
                .await
                .map_err(outbox_err)?,
        };
        if done == 0 {
            return Err(OutboxError::NotClaimed(id));
        }
        Ok(())
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        let insert = sql()
            .outbox_enqueue(item.did.as_str(), encode_item(&item))
            .map_err(|e| outbox_err(e.into()))?;
        let row = returning_one(&self.service, q(insert))
            .await
            .map_err(|e| outbox_err(e.into()))?
            .ok_or_else(|| OutboxError::Backend(stratos_ports::Cause::message("no id returned")))?;
        let id = row.int(0).map_err(|e| outbox_err(e.into()))?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let mut out: Vec<ClaimedItem> = claim_service(&self.service, now_ms, lease_ms, limit)
            .await
            .map_err(outbox_err)?
            .into_iter()
            .map(|(id, item, attempts)| ClaimedItem { id, item, attempts })
            .collect();
        for (hint, did) in self.hints.all().await.map_err(outbox_err)? {
            if out.len() >= limit {
                break;
            }
            let Some(db) = self.dbs.get(&did).await.map_err(outbox_err)? else {
                continue;
            };
            let claimed = claim_actor(&db, now_ms, lease_ms, limit - out.len())
                .await
                .map_err(outbox_err)?;
            out.extend(
                claimed
                    .into_iter()
                    .map(|(local, item, attempts)| ClaimedItem {
                        id: (hint << LOCAL_BITS) | local,
                        item,
                        attempts,
                    }),
            );
        }
        Ok(out)
    }

    async fn complete(&self, id: u64) -> Result<(), OutboxError> {
        self.update(id, None).await
    }

    async fn fail(&self, id: u64, retry_at_ms: i64) -> Result<(), OutboxError> {
        self.update(id, Some(retry_at_ms)).await
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        let n = match self
            .service
            .query_one_raw(q(sql().outbox_count()))
            .await
            .map_err(|e| outbox_err(e.into()))?
        {
            Some(r) => r.int(0).map_err(|e| outbox_err(e.into()))?,
            None => 0,
        };
        let mut total = usize::try_from(n).unwrap_or(0);
        for (_, did) in self.hints.all().await.map_err(outbox_err)? {
            if let Some(db) = self.dbs.get(&did).await.map_err(outbox_err)? {
                total += actor_pending(&db).await.map_err(outbox_err)?;
            }
        }
        Ok(total)
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.service
            .execute_raw(q(sql().outbox_purge(did.as_str())))
            .await
            .map_err(|e| outbox_err(e.into()))?;
        if let Some(db) = self.dbs.get(did.as_str()).await.map_err(outbox_err)? {
            db.call(|conn| Ok(conn.execute("DELETE FROM outbox", [])?))
                .await
                .map_err(outbox_err)?;
        }
        Ok(())
    }
}
