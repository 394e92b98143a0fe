//! The outbox over SQLite. Items caused by a commit live in the actor's own database (written in
//! the commit's transaction); items enqueued outside a commit live in the service database. A
//! service-level table of "actors with outbox items" tells the worker where to look.
//!
//! Item ids: service items use their row id; actor items use `(hint id << 32) | row id`.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{ClaimedItem, Outbox, OutboxError, OutboxItem};

use crate::SqliteError;
use crate::db::{Row, returning_one, stmt};
use crate::repo::ActorDbs;
use stratos_ports::storage_codec::{decode_item, encode_item};

const LOCAL_BITS: u32 = 32;

fn outbox_err(e: SqliteError) -> OutboxError {
    OutboxError::Backend(e.to_string())
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

async fn claim_in<C: ConnectionTrait>(
    conn: &C,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<(u64, OutboxItem, u32)>, SqliteError> {
    let rows = conn
        .query_all_raw(stmt(
            "UPDATE outbox SET leased_until = ? WHERE id IN (\
               SELECT id FROM outbox WHERE due_ms <= ? \
               AND (leased_until IS NULL OR leased_until <= ?) ORDER BY id LIMIT ?) \
             RETURNING id, item, attempts",
            vec![
                now_ms.saturating_add(lease_ms).into(),
                now_ms.into(),
                now_ms.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok((
                u64::try_from(r.int(0)?).unwrap_or(0),
                decode_item(&r.bytes(1)?)?,
                u32::try_from(r.int(2)?).unwrap_or(u32::MAX),
            ))
        })
        .collect::<Result<Vec<_>, SqliteError>>()?;
    out.sort_by_key(|(id, _, _)| *id);
    Ok(out)
}

impl SqliteOutbox {
    /// The database holding item `id` and the row id inside it.
    async fn locate(&self, id: u64) -> Result<Option<(DatabaseConnection, i64)>, SqliteError> {
        let hint = id >> LOCAL_BITS;
        let local = i64::try_from(id & ((1 << LOCAL_BITS) - 1)).unwrap_or(-1);
        if hint == 0 {
            return Ok(Some((self.service.clone(), local)));
        }
        let Some(did) = self.hints.did_of(hint).await? else {
            return Ok(None);
        };
        Ok(self.dbs.get(&did).await?.map(|c| (c, local)))
    }

    async fn update(&self, id: u64, sql: &str, mut values: Vec<Value>) -> Result<(), OutboxError> {
        let (conn, local) = self
            .locate(id)
            .await
            .map_err(outbox_err)?
            .ok_or(OutboxError::NotClaimed(id))?;
        values.push(local.into());
        let done = conn
            .execute_raw(stmt(sql, values))
            .await
            .map_err(|e| outbox_err(e.into()))?
            .rows_affected();
        if done == 0 {
            return Err(OutboxError::NotClaimed(id));
        }
        Ok(())
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        let row = returning_one(
            &self.service,
            stmt(
                "INSERT INTO outbox (did, item, due_ms) VALUES (?, ?, ?) RETURNING id",
                vec![
                    item.did.clone().into(),
                    encode_item(&item).into(),
                    i64::MIN.into(),
                ],
            ),
        )
        .await
        .map_err(|e| outbox_err(e.into()))?
        .ok_or_else(|| OutboxError::Backend("no id returned".into()))?;
        let id = row.int(0).map_err(|e| outbox_err(e.into()))?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let mut out: Vec<ClaimedItem> = claim_in(&self.service, now_ms, lease_ms, limit)
            .await
            .map_err(outbox_err)?
            .into_iter()
            .map(|(id, item, attempts)| ClaimedItem { id, item, attempts })
            .collect();
        for (hint, did) in self.hints.all().await.map_err(outbox_err)? {
            if out.len() >= limit {
                break;
            }
            let Some(conn) = self.dbs.get(&did).await.map_err(outbox_err)? else {
                continue;
            };
            let claimed = claim_in(&conn, now_ms, lease_ms, limit - out.len())
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
        self.update(id, "DELETE FROM outbox WHERE id = ?", vec![])
            .await
    }

    async fn fail(&self, id: u64, retry_at_ms: i64) -> Result<(), OutboxError> {
        self.update(
            id,
            "UPDATE outbox SET attempts = attempts + 1, due_ms = ?, leased_until = NULL WHERE id = ?",
            vec![retry_at_ms.into()],
        )
        .await
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        let count = |row: Option<sea_orm::QueryResult>| -> Result<usize, OutboxError> {
            let n = match row {
                Some(r) => r.int(0).map_err(|e| outbox_err(e.into()))?,
                None => 0,
            };
            Ok(usize::try_from(n).unwrap_or(0))
        };
        let sql = "SELECT COUNT(*) FROM outbox";
        let mut total = count(
            self.service
                .query_one_raw(stmt(sql, vec![]))
                .await
                .map_err(|e| outbox_err(e.into()))?,
        )?;
        for (_, did) in self.hints.all().await.map_err(outbox_err)? {
            if let Some(conn) = self.dbs.get(&did).await.map_err(outbox_err)? {
                total += count(
                    conn.query_one_raw(stmt(sql, vec![]))
                        .await
                        .map_err(|e| outbox_err(e.into()))?,
                )?;
            }
        }
        Ok(total)
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.service
            .execute_raw(stmt(
                "DELETE FROM outbox WHERE did = ?",
                vec![did.as_str().into()],
            ))
            .await
            .map_err(|e| outbox_err(e.into()))?;
        if let Some(conn) = self.dbs.get(did.as_str()).await.map_err(outbox_err)? {
            conn.execute_raw(stmt("DELETE FROM outbox", vec![]))
                .await
                .map_err(|e| outbox_err(e.into()))?;
        }
        Ok(())
    }
}
