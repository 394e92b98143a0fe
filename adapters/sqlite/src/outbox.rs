//! The outbox over SQLite. Items caused by a commit live in the actor's own database (written in
//! the commit's transaction); items enqueued outside a commit live in the service database. A
//! service-level table of "actors with outbox items" tells the worker where to look.
//!
//! Both kinds of table run the shared statements of `stratos_ports::storage_sql` (the actor
//! databases' table has no `did` column: [`ServiceSql::account_outbox`]). Order per account holds
//! within each database (see `stratos_ports::outbox`): an actor's stubs among themselves, its
//! service-level items (the enrollment record) among themselves.
//!
//! Item ids: service items use their row id; actor items use `(hint id << 32) | row id`. A
//! claim takes the service database's items first, then each actor's in hint order; dead
//! letters are listed in the same order, which is id order.

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use stratos_domain::syntax::Did;
use stratos_ports::outbox::{
    ClaimedItem, DeadLetter, Disposition, FailedAttempt, Lease, Outbox, OutboxError, OutboxItem,
    short_error,
};
use stratos_ports::storage_codec::{decode_item, encode_item};
use stratos_ports::storage_sql::{ServiceSql, Sql, Value};

use crate::SqliteError;
use crate::actor_db::{ActorDb, ActorDbs};
use crate::db::{Row, returning_one, stmt};
use crate::service::{q, sql};

const LOCAL_BITS: u32 = 32;
const LOCAL_MASK: u64 = (1 << LOCAL_BITS) - 1;

fn outbox_err(e: impl Into<SqliteError>) -> OutboxError {
    OutboxError::Backend(stratos_ports::Cause::new(e.into()))
}

/// The statements of an actor database's outbox table.
fn own() -> ServiceSql {
    ServiceSql::account_outbox()
}

/// A shared statement's parameters as rusqlite binds them.
fn params(values: Vec<Value>) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    values
        .into_iter()
        .map(|v| match v {
            Value::Bool(b) => b.map_or(V::Null, |b| V::Integer(i64::from(b))),
            Value::Int(n) => n.map_or(V::Null, |n| V::Integer(i64::from(n))),
            Value::BigInt(n) => n.map_or(V::Null, V::Integer),
            Value::Unsigned(n) => n.map_or(V::Null, |n| V::Integer(i64::from(n))),
            Value::BigUnsigned(n) => n.map_or(V::Null, |n| {
                V::Integer(i64::try_from(n).unwrap_or(i64::MAX))
            }),
            Value::String(s) => s.map_or(V::Null, V::Text),
            Value::Bytes(b) => b.map_or(V::Null, V::Blob),
            // The outbox statements bind nothing else; a new kind would be a defect here.
            other => V::Text(format!("{other:?}")),
        })
        .collect()
}

/// Runs a shared statement on an actor connection; the number of rows changed.
fn execute(conn: &rusqlite::Connection, sql: Sql) -> Result<usize, SqliteError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    Ok(statement.execute(rusqlite::params_from_iter(params(sql.values)))?)
}

/// Runs a shared query on an actor connection, reading every row with `read`.
fn query<T>(
    conn: &rusqlite::Connection,
    sql: Sql,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, SqliteError> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(rusqlite::params_from_iter(params(sql.values)), read)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row?);
    }
    Ok(out)
}

/// One integer of a one-row, one-column query.
fn count(conn: &rusqlite::Connection, sql: Sql) -> Result<u64, SqliteError> {
    let n = query(conn, sql, |r| r.get::<_, i64>(0))?;
    Ok(n.first().map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
}

/// `(hint, did)` of the actors with outbox rows, in hint order.
type ActorList = Arc<Vec<(u64, String)>>;

/// Which actors have (or had) outbox items.
#[derive(Debug)]
pub(crate) struct OutboxHints {
    pub(crate) service: DatabaseConnection,
    /// DIDs already recorded by this process: spares a service-database write per commit.
    pub(crate) known: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Per actor, when its database may next have a claimable item, as learned by this
    /// process's last claim there (`None`: nothing live). An actor missing here is looked at.
    /// Without it every claim — once a second when the worker is idle — queried every actor
    /// database that ever had an item, though most hold nothing due (delivered, or held for
    /// an account that must authorise again). Any change to an actor's items forgets its
    /// entry; the generation keeps a claim that raced with such a change from writing back a
    /// stale time. In memory only: a SQLite data directory has one process.
    next_due: std::sync::Mutex<std::collections::HashMap<String, (u64, Option<i64>)>>,
    generation: std::sync::atomic::AtomicU64,
    /// `(hint, did)` of every row of `outbox_actor`, as last read; `None` after a change. Every
    /// claim walks it, and it changes only when an actor gets its first item or is forgotten.
    listed: std::sync::Mutex<Option<ActorList>>,
    /// Bumped by every change of `outbox_actor`: a list read across a change is not kept.
    listed_version: std::sync::atomic::AtomicU64,
    /// The same as `next_due`, for the service database's table (enrollment-record writes and
    /// what unenrollment queues), with a lower bound over all its live items.
    service_due: std::sync::Mutex<Option<Option<i64>>>,
}

impl OutboxHints {
    pub(crate) fn new(service: DatabaseConnection) -> Self {
        Self {
            service,
            known: std::sync::Mutex::new(std::collections::HashSet::new()),
            next_due: std::sync::Mutex::new(std::collections::HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(1),
            listed: std::sync::Mutex::new(None),
            listed_version: std::sync::atomic::AtomicU64::new(0),
            service_due: std::sync::Mutex::new(None),
        }
    }

    fn listed(&self) -> std::sync::MutexGuard<'_, Option<ActorList>> {
        self.listed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn listed_changed(&self) {
        let mut listed = self.listed();
        self.listed_version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *listed = None;
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_due(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, Option<i64>)>> {
        self.next_due.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn service_due(&self) -> std::sync::MutexGuard<'_, Option<Option<i64>>> {
        self.service_due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service table's items changed: look at it at the next claim.
    pub(crate) fn touched_service(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.service_due() = None;
    }

    /// [`Self::check`] for the service table.
    fn check_service(&self, now_ms: i64) -> Result<(), u64> {
        match *self.service_due() {
            Some(None) => Ok(()),
            Some(Some(due)) if due > now_ms => Ok(()),
            _ => Err(self.generation.load(std::sync::atomic::Ordering::SeqCst)),
        }
    }

    /// [`Self::learned`] for the service table.
    fn learned_service(&self, seen: u64, next: Option<i64>) {
        let mut due = self.service_due();
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == seen {
            *due = Some(next);
        }
    }

    /// The actor's items changed: look at its database at the next claim.
    pub(crate) fn touched(&self, did: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.next_due().remove(did);
    }

    /// Whether a claim at `now_ms` can skip the actor, and otherwise the generation to hand
    /// to [`Self::learned`].
    fn check(&self, did: &str, now_ms: i64) -> Result<(), u64> {
        match self.next_due().get(did) {
            Some((_, None)) => Ok(()),
            Some((_, Some(due))) if *due > now_ms => Ok(()),
            _ => Err(self.generation.load(std::sync::atomic::Ordering::SeqCst)),
        }
    }

    /// What a claim learned about the actor's next due time, unless its items changed since
    /// the claim started (generation `seen`).
    fn learned(&self, did: &str, seen: u64, next: Option<i64>) {
        let mut map = self.next_due();
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == seen {
            map.insert(did.to_owned(), (seen, next));
        }
    }

    /// A commit added items behind the actor's others: when its table already had a live item,
    /// the oldest one — which decides when anything there can be claimed — did not change, so a
    /// known time stays (an account held for re-authorisation is not looked at after each of its
    /// commits); otherwise the new item may be due now.
    fn appended(&self, did: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut map = self.next_due();
        if !matches!(map.get(did), Some((_, Some(_)))) {
            map.remove(did);
        }
    }

    pub(crate) async fn remember(&self, did: &str) -> Result<(), SqliteError> {
        self.appended(did);
        if self.known().contains(did) {
            return Ok(());
        }
        self.service
            .execute_raw(stmt(
                "INSERT OR IGNORE INTO outbox_actor (did) VALUES (?)",
                vec![did.into()],
            ))
            .await?;
        self.listed_changed();
        self.known().insert(did.to_owned());
        Ok(())
    }

    pub(crate) async fn forget(&self, did: &str) -> Result<(), SqliteError> {
        self.known().remove(did);
        self.touched(did);
        self.service
            .execute_raw(stmt(
                "DELETE FROM outbox_actor WHERE did = ?",
                vec![did.into()],
            ))
            .await?;
        self.listed_changed();
        Ok(())
    }

    async fn all(&self) -> Result<ActorList, SqliteError> {
        if let Some(listed) = self.listed().clone() {
            return Ok(listed);
        }
        let version = self
            .listed_version
            .load(std::sync::atomic::Ordering::SeqCst);
        let rows = self
            .service
            .query_all_raw(stmt("SELECT id, did FROM outbox_actor ORDER BY id", vec![]))
            .await?;
        let listed = Arc::new(
            rows.iter()
                .map(|r| Ok((u64::try_from(r.int(0)?).unwrap_or(0), r.text(1)?)))
                .collect::<Result<Vec<_>, SqliteError>>()?,
        );
        // Kept only when no change came while the rows were read (it could be missing).
        let mut cache = self.listed();
        if self
            .listed_version
            .load(std::sync::atomic::Ordering::SeqCst)
            == version
        {
            *cache = Some(listed.clone());
        }
        Ok(listed)
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

    async fn hint_of(&self, did: &str) -> Result<Option<u64>, SqliteError> {
        let row = self
            .service
            .query_one_raw(stmt(
                "SELECT id FROM outbox_actor WHERE did = ?",
                vec![did.into()],
            ))
            .await?;
        row.map(|r| Ok(u64::try_from(r.int(0)?).unwrap_or(0)))
            .transpose()
    }
}

/// [`Outbox`] over the service database and the actors' databases.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pub(crate) service: DatabaseConnection,
    pub(crate) dbs: Arc<ActorDbs>,
    pub(crate) hints: Arc<OutboxHints>,
}

/// A claimed row as read: local id, item bytes, attempts so far, lease end.
type RawClaim = (i64, Vec<u8>, i64, i64);

/// Decoded claims by local id, and the local ids of rows to bury with their error text.
type Decoded = (Vec<(u64, ClaimedItem)>, Vec<(u64, String)>);

/// Decodes claimed rows; a row that does not decode is returned apart, with its error text, to
/// be buried.
fn decode_claims(rows: Vec<RawClaim>) -> Decoded {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (id, bytes, attempts, until) in rows {
        let local = u64::try_from(id).unwrap_or(0);
        match decode_item(&bytes) {
            Ok(item) => good.push((
                local,
                ClaimedItem {
                    id: local,
                    item,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    leased_until_ms: until,
                },
            )),
            Err(e) => bad.push((local, short_error(&format!("corrupt item: {e}")))),
        }
    }
    good.sort_by_key(|(id, _)| *id);
    (good, bad)
}

async fn claim_service(
    conn: &DatabaseConnection,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<(Vec<ClaimedItem>, Option<i64>), SqliteError> {
    let rows = conn
        .query_all_raw(q(sql().outbox_claim(now_ms, lease_ms, limit)))
        .await?;
    let raw = rows
        .iter()
        .map(|r| Ok((r.int(0)?, r.bytes(1)?, r.int(2)?, r.int(3)?)))
        .collect::<Result<Vec<_>, SqliteError>>()?;
    let (good, bad) = decode_claims(raw);
    for (id, error) in bad {
        conn.execute_raw(q(sql().outbox_bury(id, now_ms, &error)))
            .await?;
    }
    let next = match conn.query_one_raw(q(sql().outbox_min_due())).await? {
        Some(row) => row.try_get_by_index::<Option<i64>>(0)?,
        None => None,
    };
    Ok((good.into_iter().map(|(_, c)| c).collect(), next))
}

/// Claims up to `limit` of the actor's items; with them, when its next live item may be claimed
/// (`None`: nothing live left).
async fn claim_actor(
    db: &ActorDb,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<(Vec<(u64, ClaimedItem)>, Option<i64>), SqliteError> {
    db.call(move |conn| {
        let raw = query(conn, own().outbox_claim(now_ms, lease_ms, limit), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        let (good, bad) = decode_claims(raw);
        for (id, error) in bad {
            execute(conn, own().outbox_bury(id, now_ms, &error))?;
        }
        let next = query(conn, own().outbox_next_due(), |r| {
            r.get::<_, Option<i64>>(0)
        })?;
        Ok((good, next.into_iter().next().flatten()))
    })
    .await
}

/// Rows in an actor's outbox table, live or dead (whether the actor needs a hint).
pub(crate) async fn actor_rows(db: &ActorDb) -> Result<usize, SqliteError> {
    db.call(|conn| Ok(usize::try_from(count(conn, own().outbox_rows())?).unwrap_or(0)))
        .await
}

/// A dead-letter row as read: local id, item bytes, attempts, last error, death time.
type RawDead = (i64, Vec<u8>, i64, String, i64);

fn dead_letter(id: u64, did: Did, (_, bytes, attempts, error, dead): RawDead) -> DeadLetter {
    DeadLetter {
        id,
        did,
        item: decode_item(&bytes).ok(),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: error,
        dead_at_ms: dead,
    }
}

fn parse_did(id: u64, text: &str) -> Result<Did, OutboxError> {
    Did::parse(text).map_err(|e| OutboxError::Corrupt {
        id,
        reason: e.to_string(),
    })
}

/// Where an item lives: the service database or an actor's, with its row id there.
enum Located {
    Service(u64),
    /// The actor's database, the hint, the row id, the actor's DID.
    Actor(ActorDb, u64, u64, String),
}

impl SqliteOutbox {
    /// The database holding item `id` and the row id inside it.
    async fn locate(&self, id: u64) -> Result<Option<Located>, SqliteError> {
        let hint = id >> LOCAL_BITS;
        let local = id & LOCAL_MASK;
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
            .map(|db| Located::Actor(db, hint, local, did)))
    }

    /// Runs `statement(local id, table's statements)` where the leased item lives; an error
    /// when it changed nothing (the lease does not match).
    async fn change_leased(
        &self,
        lease: Lease,
        statement: impl Fn(&ServiceSql, u64) -> Sql + Send + 'static,
    ) -> Result<(), OutboxError> {
        let changed = match self
            .locate(lease.id)
            .await
            .map_err(outbox_err)?
            .ok_or(OutboxError::NotClaimed(lease.id))?
        {
            Located::Service(local) => {
                let changed = self
                    .service
                    .execute_raw(q(statement(&sql(), local)))
                    .await
                    .map_err(outbox_err)?
                    .rows_affected();
                self.hints.touched_service();
                changed
            }
            Located::Actor(db, _, local, did) => {
                let changed = db
                    .call(move |conn| execute(conn, statement(&own(), local)))
                    .await
                    .map_err(outbox_err)?;
                // After the change: a claim that read the old rows cannot store their time.
                self.hints.touched(&did);
                changed.try_into().unwrap_or(0)
            }
        };
        if changed == 0 {
            return Err(OutboxError::NotClaimed(lease.id));
        }
        Ok(())
    }

    /// The actor databases with outbox rows, as `(hint, did, database)`, in hint order.
    async fn actors(&self) -> Result<Vec<(u64, String, ActorDb)>, SqliteError> {
        let mut out = Vec::new();
        for (hint, did) in self.hints.all().await?.iter() {
            if let Some(db) = self.dbs.get(did).await? {
                out.push((*hint, did.clone(), db));
            }
        }
        Ok(out)
    }

    /// The number of dead letters of one account, or of all.
    async fn dead_letters_of(&self, did: Option<&Did>) -> Result<u64, OutboxError> {
        let mut total = self
            .service_count(sql().outbox_dead_count(did.map(Did::as_str)))
            .await
            .map_err(outbox_err)?;
        let actors: Vec<ActorDb> = match did {
            Some(did) => match self.hints.hint_of(did.as_str()).await.map_err(outbox_err)? {
                Some(_) => self
                    .dbs
                    .get(did.as_str())
                    .await
                    .map_err(outbox_err)?
                    .into_iter()
                    .collect(),
                None => Vec::new(),
            },
            None => self
                .actors()
                .await
                .map_err(outbox_err)?
                .into_iter()
                .map(|(_, _, db)| db)
                .collect(),
        };
        for db in actors {
            total += db
                .call(|conn| count(conn, own().outbox_dead_count(None)))
                .await
                .map_err(outbox_err)?;
        }
        Ok(total)
    }

    async fn service_count(&self, statement: Sql) -> Result<u64, SqliteError> {
        Ok(match self.service.query_one_raw(q(statement)).await? {
            Some(r) => u64::try_from(r.int(0)?).unwrap_or(0),
            None => 0,
        })
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn enqueue(&self, item: OutboxItem) -> Result<u64, OutboxError> {
        let insert = sql()
            .outbox_enqueue(item.did.as_str(), encode_item(&item))
            .map_err(outbox_err)?;
        let row = returning_one(&self.service, q(insert))
            .await
            .map_err(outbox_err)?
            .ok_or_else(|| OutboxError::Backend(stratos_ports::Cause::message("no id returned")))?;
        let id = row.int(0).map_err(outbox_err)?;
        self.hints.touched_service();
        Ok(u64::try_from(id).unwrap_or(0))
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedItem>, OutboxError> {
        let mut out = match self.hints.check_service(now_ms) {
            Ok(()) => Vec::new(),
            Err(seen) => {
                let (claimed, next) = claim_service(&self.service, now_ms, lease_ms, limit)
                    .await
                    .map_err(outbox_err)?;
                self.hints.learned_service(seen, next);
                claimed
            }
        };
        for (hint, did) in self.hints.all().await.map_err(outbox_err)?.iter() {
            let (hint, did) = (*hint, did.as_str());
            if out.len() >= limit {
                break;
            }
            let Err(seen) = self.hints.check(did, now_ms) else {
                continue;
            };
            let Some(db) = self.dbs.get(did).await.map_err(outbox_err)? else {
                continue;
            };
            let (claimed, next) = claim_actor(&db, now_ms, lease_ms, limit - out.len())
                .await
                .map_err(outbox_err)?;
            self.hints.learned(did, seen, next);
            out.extend(claimed.into_iter().map(|(local, c)| ClaimedItem {
                id: (hint << LOCAL_BITS) | local,
                ..c
            }));
        }
        Ok(out)
    }

    async fn complete(&self, lease: Lease) -> Result<(), OutboxError> {
        self.change_leased(lease, move |s, local| {
            s.outbox_complete(local, lease.until_ms)
        })
        .await
    }

    async fn fail(&self, lease: Lease, attempt: FailedAttempt) -> Result<Disposition, OutboxError> {
        let error = short_error(&attempt.error);
        let dead_after = if attempt.permanent {
            0
        } else {
            attempt.max_attempts
        };
        let statement = move |s: &ServiceSql, local: u64| {
            s.outbox_fail(
                local,
                lease.until_ms,
                attempt.retry_at_ms,
                dead_after,
                attempt.now_ms,
                &error,
            )
        };
        let located = self
            .locate(lease.id)
            .await
            .map_err(outbox_err)?
            .ok_or(OutboxError::NotClaimed(lease.id))?;
        // `None`: no row (the lease does not match); `Some(dead_ms)` otherwise.
        let outcome: Option<Option<i64>> = match located {
            Located::Service(local) => {
                let row = returning_one(&self.service, q(statement(&sql(), local)))
                    .await
                    .map_err(outbox_err)?;
                self.hints.touched_service();
                match row {
                    Some(row) => Some(row.try_get_by_index(0).map_err(outbox_err)?),
                    None => None,
                }
            }
            Located::Actor(db, _, local, did) => {
                let row = db
                    .call(move |conn| {
                        let rows = query(conn, statement(&own(), local), |r| r.get(0))?;
                        Ok(rows.into_iter().next())
                    })
                    .await
                    .map_err(outbox_err)?;
                self.hints.touched(&did);
                row
            }
        };
        match outcome {
            None => Err(OutboxError::NotClaimed(lease.id)),
            Some(None) => Ok(Disposition::Retry),
            Some(Some(_)) => Ok(Disposition::Dead),
        }
    }

    async fn release(&self, lease: Lease, due_ms: i64) -> Result<(), OutboxError> {
        self.change_leased(lease, move |s, local| {
            s.outbox_release(local, lease.until_ms, due_ms)
        })
        .await
    }

    async fn pending(&self) -> Result<usize, OutboxError> {
        let mut total = self
            .service_count(sql().outbox_count())
            .await
            .map_err(outbox_err)?;
        for (_, _, db) in self.actors().await.map_err(outbox_err)? {
            total += db
                .call(|conn| count(conn, own().outbox_count()))
                .await
                .map_err(outbox_err)?;
        }
        Ok(usize::try_from(total).unwrap_or(usize::MAX))
    }

    async fn dead_letters(
        &self,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let after = cursor.unwrap_or(0);
        let (after_hint, after_local) = (after >> LOCAL_BITS, after & LOCAL_MASK);
        let mut out = Vec::new();
        if after_hint == 0 && limit > 0 {
            let local = i64::try_from(after_local).unwrap_or(i64::MAX);
            let rows = self
                .service
                .query_all_raw(q(sql().outbox_dead_letters(local, limit)))
                .await
                .map_err(outbox_err)?;
            for r in rows {
                let raw: RawDead = (
                    r.int(0).map_err(outbox_err)?,
                    r.bytes(1).map_err(outbox_err)?,
                    r.int(2).map_err(outbox_err)?,
                    r.text(3).map_err(outbox_err)?,
                    r.int(4).map_err(outbox_err)?,
                );
                let id = u64::try_from(raw.0).unwrap_or(0);
                let did = parse_did(id, &r.text(5).map_err(outbox_err)?)?;
                out.push(dead_letter(id, did, raw));
            }
        }
        for (hint, did, db) in self.actors().await.map_err(outbox_err)? {
            if out.len() >= limit {
                break;
            }
            if hint < after_hint {
                continue;
            }
            let local = if hint == after_hint { after_local } else { 0 };
            let local = i64::try_from(local).unwrap_or(i64::MAX);
            let n = limit - out.len();
            let rows: Vec<RawDead> = db
                .call(move |conn| {
                    query(conn, own().outbox_dead_letters(local, n), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                })
                .await
                .map_err(outbox_err)?;
            for raw in rows {
                let id = (hint << LOCAL_BITS) | u64::try_from(raw.0).unwrap_or(0);
                out.push(dead_letter(id, parse_did(id, &did)?, raw));
            }
        }
        Ok(out)
    }

    async fn retry_dead(&self, id: u64) -> Result<u64, OutboxError> {
        let located = self
            .locate(id)
            .await
            .map_err(outbox_err)?
            .ok_or(OutboxError::NotDead(id))?;
        let new_local = match located {
            Located::Service(local) => {
                let requeue = sql().outbox_requeue(local).map_err(outbox_err)?;
                let tx = self.service.begin().await.map_err(outbox_err)?;
                let row = tx.query_all_raw(q(requeue)).await.map_err(outbox_err)?;
                let Some(row) = row.first() else {
                    return Err(OutboxError::NotDead(id));
                };
                let new = row.int(0).map_err(outbox_err)?;
                tx.execute_raw(q(sql().outbox_delete_dead(local)))
                    .await
                    .map_err(outbox_err)?;
                tx.commit().await.map_err(outbox_err)?;
                self.hints.touched_service();
                return Ok(u64::try_from(new).unwrap_or(0));
            }
            Located::Actor(db, hint, local, did) => {
                let new = db
                    .call(move |conn| {
                        let tx = conn.transaction()?;
                        let new = query(&tx, own().outbox_requeue(local)?, |r| r.get::<_, i64>(0))?;
                        let Some(new) = new.first().copied() else {
                            return Ok(None);
                        };
                        execute(&tx, own().outbox_delete_dead(local))?;
                        tx.commit()?;
                        Ok(Some((hint, new)))
                    })
                    .await
                    .map_err(outbox_err)?;
                self.hints.touched(&did);
                new
            }
        };
        let (hint, new) = new_local.ok_or(OutboxError::NotDead(id))?;
        Ok((hint << LOCAL_BITS) | u64::try_from(new).unwrap_or(0))
    }

    async fn dead_count(&self, did: &Did) -> Result<u64, OutboxError> {
        self.dead_letters_of(Some(did)).await
    }

    async fn dead_total(&self) -> Result<u64, OutboxError> {
        self.dead_letters_of(None).await
    }

    async fn purge(&self, did: &Did) -> Result<(), OutboxError> {
        self.service
            .execute_raw(q(sql().outbox_purge(did.as_str())))
            .await
            .map_err(outbox_err)?;
        if let Some(db) = self.dbs.get(did.as_str()).await.map_err(outbox_err)? {
            db.call(|conn| execute(conn, own().outbox_purge("")))
                .await
                .map_err(outbox_err)?;
        }
        self.hints.touched(did.as_str());
        self.hints.touched_service();
        Ok(())
    }
}
