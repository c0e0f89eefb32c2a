//! Retention in SQL: the batches the purge actor deletes, and the counts `tickethub purge
//! --dry-run` prints.
//!
//! Every batch is one short transaction: one statement that finds at most `limit` rows through
//! an index and deletes them (their deliveries, attempts and escalation steps go with a
//! notification, by the foreign keys' `ON DELETE CASCADE`), so that commits never wait long
//! behind it. A batch of notifications, outbox rows or escalation steps finds its rows first,
//! folds them into the analytics rollups (`crate::store::analytics`), and deletes them. On
//! PostgreSQL a batch's commit does not wait for the disk (`SqlStore::begin_batch`).
//! Append-only history tables are walked from their oldest id: the bound `first id young
//! enough to keep` is found by reading the old rows only, never the whole table.

use crate::store::{backend_error, db, SqlStore};

/// The largest id: the bound of a table with nothing young enough to keep.
pub(crate) const NO_BOUND: i64 = i64::MAX;

/// The pace of the purge's `VACUUM` on PostgreSQL: autovacuum's own (a 2 ms rest for every
/// 200 units of page cost), where a `VACUUM` an operator types runs unpaced.
const VACUUM_PACE: &str = "SET vacuum_cost_delay = '2ms'";

/// A purge batch's commit on PostgreSQL: not waiting for the disk ([`SqlStore::begin_batch`]).
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// How long a table's statistics serve before a sweep's `VACUUM` analyzes it again. The planner
/// takes a table's size from what every `VACUUM` records; what `ANALYZE` adds (the spread of
/// each column's values) barely moves while retention keeps the table at its size, and on a
/// table at its size it costs four times the `VACUUM`. Autovacuum analyzes a table once a tenth
/// of it has changed, which a short retention window passes between any two sweeps.
const ANALYZE_EVERY: &str = "10 minutes";

/// The `WHERE` of the rows of `what` older than `$1` (and `$2` = false, where it says so), and
/// the table and key the batch deletes from.
pub(crate) fn rows_of(
    what: tickethub_actors::ports::Purgeable,
) -> (&'static str, &'static str, String) {
    use tickethub_actors::ports::Purgeable::*;
    // Below the first id of an append-only table whose time column is at or past the cutoff
    // ([`bound_of`]; the caller writes it in for `BOUND`).
    let bound = |_table: &str, _at: &str| "id < BOUND".to_owned();
    // The newest notification is never purged: SQLite gives the next one the largest id
    // plus one (its table has no AUTOINCREMENT), and an id is never given twice.
    const NOT_NEWEST: &str = "id < (SELECT MAX(id) FROM notifications)";
    match what {
        ReadNotifications => (
            "notifications",
            "id",
            format!("read_at < $1 AND {NOT_NEWEST}"),
        ),
        DeletedNotifications => (
            "notifications",
            "id",
            format!("deleted_at < $1 AND {NOT_NEWEST}"),
        ),
        UnreadNotifications => (
            "notifications",
            "id",
            format!(
                "{} AND is_read = $2 AND deleted_at IS NULL AND created_at < $1 AND {NOT_NEWEST} AND \
                 seq <= (SELECT CASE WHEN u.sent_seq > u.acked_seq THEN u.sent_seq ELSE u.acked_seq END \
                         FROM users u WHERE u.id = notifications.user_id)",
                bound("notifications", "created_at")
            ),
        ),
        StreamEvents => (
            "stream_events",
            "id",
            format!("{} AND at < $1", bound("stream_events", "at")),
        ),
        TicketEvents => (
            "ticket_events",
            "id",
            format!("{} AND created_at < $1", bound("ticket_events", "created_at")),
        ),
        DeliveryAttempts => (
            "delivery_attempts",
            "id",
            format!("{} AND at < $1", bound("delivery_attempts", "at")),
        ),
        FinishedDeliveries => (
            "deliveries",
            "id",
            format!(
                "{} AND status IN ('SENT', 'FAILED', 'SUPPRESSED') AND updated_at < $1",
                bound("deliveries", "created_at")
            ),
        ),
        Escalations => (
            "escalations",
            "id",
            format!(
                "{} AND status IN ('FIRED', 'CANCELLED', 'FAILED') AND updated_at < $1",
                bound("escalations", "created_at")
            ),
        ),
        RefreshTokens => ("refresh_tokens", "jti", "expires_at < $1".to_owned()),
        IdempotencyKeys => (
            "idempotency_keys",
            "created_at",
            "created_at < $1".to_owned(),
        ),
        RemovedAttachments => ("attachments", "id", "removed_at < $1".to_owned()),
    }
}

/// The append-only table and time column whose first young row bounds a batch of `what`, if
/// its rows are walked from the oldest id.
pub(crate) fn bound_of(
    what: tickethub_actors::ports::Purgeable,
) -> Option<(&'static str, &'static str)> {
    use tickethub_actors::ports::Purgeable::*;
    match what {
        UnreadNotifications => Some(("notifications", "created_at")),
        StreamEvents => Some(("stream_events", "at")),
        TicketEvents => Some(("ticket_events", "created_at")),
        DeliveryAttempts => Some(("delivery_attempts", "at")),
        FinishedDeliveries => Some(("deliveries", "created_at")),
        Escalations => Some(("escalations", "created_at")),
        ReadNotifications | DeletedNotifications | RefreshTokens | IdempotencyKeys
        | RemovedAttachments => None,
    }
}

/// The bounds found during a sweep, per kind and cutoff: a sweep keeps its cutoff for all its
/// batches, and rows young enough to bound it are never deleted by it, so the bound is found
/// once per sweep instead of by every batch (it reads every old row up to the first young
/// one, which on PostgreSQL cost more than the deletions).
#[derive(Debug, Default)]
pub(crate) struct PurgeBounds(
    std::sync::Mutex<
        std::collections::HashMap<
            tickethub_actors::ports::Purgeable,
            (chrono::DateTime<chrono::Utc>, i64),
        >,
    >,
);

impl PurgeBounds {
    pub(crate) fn get(
        &self,
        what: tickethub_actors::ports::Purgeable,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Option<i64> {
        let bounds = self.0.lock().expect("purge bounds poisoned");
        bounds
            .get(&what)
            .filter(|(at, _)| *at == cutoff)
            .map(|(_, b)| *b)
    }

    pub(crate) fn set(
        &self,
        what: tickethub_actors::ports::Purgeable,
        cutoff: chrono::DateTime<chrono::Utc>,
        bound: i64,
    ) {
        self.0
            .lock()
            .expect("purge bounds poisoned")
            .insert(what, (cutoff, bound));
    }
}

/// Whether the rows' `WHERE` takes `$2` (false).
pub(crate) fn takes_false(what: tickethub_actors::ports::Purgeable) -> bool {
    what == tickethub_actors::ports::Purgeable::UnreadNotifications
}

impl SqlStore {
    /// The transaction of a purge batch. On PostgreSQL its commit does not wait for its log to
    /// reach the disk (`synchronous_commit = off`, for this transaction only): a crash may
    /// forget the last batches, each whole (its deletions and what it folded into the
    /// rollups), and the next sweep deletes their rows again; meanwhile no live commit waits
    /// behind a batch's sync, and the server's log writer syncs the batches with the commits
    /// around them.
    async fn begin_batch(&self) -> Result<db::Tx, tickethub_actors::ports::StoreError> {
        let mut tx = self.writer().begin().await.map_err(backend_error)?;
        if tx.kind() == db::Kind::Postgres {
            db::query(ASYNC_COMMIT)
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
        }
        Ok(tx)
    }

    /// The first id of `table` whose time column `at` is at or past `cutoff` (the
    /// largest id when none is): rows below it are the old ones.
    async fn purge_bound(
        pool: &db::Pool,
        (table, at): (&'static str, &'static str),
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, tickethub_actors::ports::StoreError> {
        let sql = format!("SELECT id FROM {table} WHERE {at} >= $1 ORDER BY id LIMIT 1");
        let first: Option<(i64,)> = db::query_as(&sql)
            .bind(cutoff)
            .fetch_optional(pool)
            .await
            .map_err(backend_error)?;
        Ok(first.map_or(crate::store::retention::NO_BOUND, |(id,)| id))
    }
}

#[async_trait::async_trait]
impl tickethub_actors::ports::RetentionStore for SqlStore {
    async fn purge(
        &self,
        what: tickethub_actors::ports::Purgeable,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<u64, tickethub_actors::ports::StoreError> {
        let (table, key, rows) = crate::store::retention::rows_of(what);
        let takes_false = crate::store::retention::takes_false(what);
        // Rows walked from the oldest id are taken in id order, below the bound found
        // once per sweep: a batch reads little more than the rows it deletes.
        let (rows, order) = match crate::store::retention::bound_of(what) {
            Some(walked) => {
                let bound = match self.purge_bounds.get(what, cutoff) {
                    Some(b) => b,
                    None => {
                        let b = Self::purge_bound(self.writer(), walked, cutoff).await?;
                        self.purge_bounds.set(what, cutoff, b);
                        b
                    }
                };
                (
                    rows.replace("BOUND", &bound.to_string()),
                    format!(" ORDER BY {key}"),
                )
            }
            None => (rows, String::new()),
        };
        let limit_at = if takes_false { 3 } else { 2 };
        let select = format!(
            "SELECT {key} FROM {table} WHERE {rows}{order} LIMIT ${limit_at} {}",
            self.kind().skip_locked()
        );
        let fold = crate::store::analytics::fold_of(what);
        let statement = match fold {
            Some(_) => select,
            None => format!("DELETE FROM {table} WHERE {key} IN ({select})"),
        };
        if let Some(direct) = self.lane() {
            use rusqlite::types::Value;
            let mut params = vec![("$1", crate::store::sqlite::purge::time(cutoff))];
            if takes_false {
                params.push(("$2", Value::Integer(0)));
            }
            params.push((if takes_false { "$3" } else { "$2" }, Value::Integer(limit)));
            let batch = crate::store::sqlite::purge::Batch {
                table,
                key,
                fold,
                select: statement.clone(),
                params,
            };
            // On the writer thread, whose cache holds what the batch and the commits touch;
            // through the pool if the thread is gone.
            if let Some(done) = direct.purge(batch).await {
                return done;
            }
        }
        if let Some(fold) = fold {
            // Rows analytics counts are folded into its rollups in the transaction
            // that deletes them: each is counted live or rolled up, never both, and
            // never lost.
            let mut tx = self.begin_batch().await?;
            let mut q = db::query_as::<(i64,)>(&statement).bind(cutoff);
            if takes_false {
                q = q.bind(false);
            }
            let ids: Vec<i64> = q
                .bind(limit)
                .fetch_all(&mut tx)
                .await
                .map_err(backend_error)?
                .into_iter()
                .map(|(id,)| id)
                .collect();
            if ids.is_empty() {
                return Ok(0);
            }
            Self::fold_into_rollups(&mut tx, fold, &ids).await?;
            let mut delete = db::Builder::new(format!("DELETE FROM {table} WHERE {key}"));
            delete.push_in(ids);
            let done = delete
                .build()
                .execute(&mut tx)
                .await
                .map_err(backend_error)?;
            tx.commit().await.map_err(backend_error)?;
            return Ok(done.rows_affected());
        }
        let mut tx = self.begin_batch().await?;
        let mut q = db::query(&statement).bind(cutoff);
        if takes_false {
            q = q.bind(false);
        }
        let done = q
            .bind(limit)
            .execute(&mut tx)
            .await
            .map_err(backend_error)?;
        tx.commit().await.map_err(backend_error)?;
        Ok(done.rows_affected())
    }

    async fn purgeable(
        &self,
        what: tickethub_actors::ports::Purgeable,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, tickethub_actors::ports::StoreError> {
        let (table, _, rows) = crate::store::retention::rows_of(what);
        let rows = match crate::store::retention::bound_of(what) {
            Some(walked) => {
                let bound = Self::purge_bound(self.reader(), walked, cutoff).await?;
                rows.replace("BOUND", &bound.to_string())
            }
            None => rows,
        };
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {rows}");
        let mut q = db::query_as::<(i64,)>(&sql).bind(cutoff);
        if crate::store::retention::takes_false(what) {
            q = q.bind(false);
        }
        let (n,) = q.fetch_one(self.reader()).await.map_err(backend_error)?;
        Ok(n.max(0) as u64)
    }

    async fn reclaim(
        &self,
        purged: &[tickethub_actors::ports::Purgeable],
    ) -> Result<Vec<String>, tickethub_actors::ports::StoreError> {
        let db::Pool::Postgres(pool) = self.writer() else {
            return Ok(Vec::new());
        };
        // Autovacuum (PostgreSQL's default) reclaims the dead rows of a table once they are a
        // fifth of it; without it, nothing would, and the database would grow by every row
        // the purge deletes. Asked at every sweep: an operator may turn it on or off.
        let (autovacuum,): (String,) = sqlx::query_as("SELECT current_setting('autovacuum')")
            .fetch_one(pool)
            .await
            .map_err(backend_error)?;
        if autovacuum == "on" {
            return Ok(Vec::new());
        }
        let mut tables: Vec<String> = purged
            .iter()
            .map(|what| crate::store::retention::rows_of(*what).0.to_owned())
            .collect();
        // And the tables whose rows went with them, by `ON DELETE CASCADE`.
        let cascaded: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint \
             WHERE contype = 'f' AND confdeltype = 'c' AND confrelid = ANY($1::text[]::regclass[])",
        )
        .bind(&tables)
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        tables.extend(cascaded.into_iter().map(|(t,)| t));
        tables.sort();
        tables.dedup();
        // Those whose statistics are older than `ANALYZE_EVERY` (or were never taken) are
        // analyzed as well.
        let stale: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT relid::regclass::text FROM pg_stat_user_tables \
             WHERE relid = ANY($1::text[]::regclass[]) \
               AND COALESCE(GREATEST(last_analyze, last_autoanalyze), '-infinity') \
                   < now() - interval '{ANALYZE_EVERY}'"
        ))
        .bind(&tables)
        .fetch_all(pool)
        .await
        .map_err(backend_error)?;
        let (analyze, plain): (Vec<String>, Vec<String>) = tables
            .iter()
            .cloned()
            .partition(|t| stale.iter().any(|(s,)| s == t));
        // Outside any transaction (`VACUUM` cannot run in one), beside live commits: it takes
        // no lock they wait for. Paced as autovacuum paces itself (`vacuum_cost_delay` 2 ms
        // where a manual `VACUUM` defaults to 0), so that its reads and writes come in short
        // bursts between the commits instead of one run that holds the disk.
        vacuum_paced(pool, &analyze, &plain)
            .await
            .map_err(backend_error)?;
        Ok(tables)
    }
}

/// `VACUUM (ANALYZE)` of `analyze` and `VACUUM` of `plain` at [`VACUUM_PACE`], on a connection of
/// its own that goes back to the pool unpaced (or is dropped, if it cannot be reset).
fn vacuum_paced<'a>(
    pool: &'a sqlx::PgPool,
    analyze: &'a [String],
    plain: &'a [String],
) -> futures::future::BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        use sqlx::Executor as _;
        let mut conn = pool.acquire().await?;
        conn.execute(VACUUM_PACE).await?;
        let mut vacuumed = Ok(());
        for (options, tables) in [("(ANALYZE) ", analyze), ("", plain)] {
            if tables.is_empty() || vacuumed.is_err() {
                continue;
            }
            let vacuum = format!("VACUUM {options}{}", tables.join(", "));
            vacuumed = conn.execute(vacuum.as_str()).await.map(|_| ());
        }
        if conn.execute("RESET vacuum_cost_delay").await.is_err() {
            conn.detach();
        }
        vacuumed
    })
}
