//! The group commit's own connection: rusqlite on a thread of its own.
//!
//! sqlx runs each SQLite connection on a worker thread and hands it one command at a time; a
//! group commit through it was one multi-statement query whose text changed with the group's
//! shape, so it was parsed again for most groups, and whose multi-row `INSERT … SELECT` and
//! `UPDATE … FROM` wrote each page they touched to a statement journal first. This thread
//! holds one read-write connection and commits a group with statements prepared once: a seq
//! bump per recipient, then one single-row `INSERT` per notification and per delivery, none of
//! which needs a statement journal. A group is one hand-off to the thread and one back.
//!
//! The reports of what each user's sockets were sent (`sent_seq`, written in batches many times
//! a second under load) are written here too, and so are the timelines' runs of socket writes
//! (every few seconds, in parts). A write on another connection would make this one drop its
//! whole page cache (SQLite's pager starts again after any other connection's
//! commit), and its next commit read every page it touches from the files again.
//!
//! It writes only in its turn at the writers' gate ([`crate::store::db::WriteGate`]), which
//! the writer pool's statements, transactions and connections take too, as does the
//! checkpointer's truncation, so it never meets another of the hub's writes: its writes,
//! [`DirectWriter::commit`], [`DirectWriter::record_sent`], [`DirectWriter::record_pushes`]
//! and the purge's batches
//! ([`DirectWriter::purge`]), take their turn first, and nothing else can hand the
//! thread a write. Its busy timeout is there for writers outside the hub.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tickethub_actors::notification::Draft;
use tickethub_actors::ports::StoreError;
use tickethub_actors::routing::Channel;

use super::purge::time;
use crate::store::notifications::{
    recipients_json, seq_plan, CommitFailure, INSERT_DELIVERIES, INSERT_NOTIFICATIONS,
};

/// What a group's commit answers: the drafts back, with where each landed, `(id, seq)`.
pub(crate) type Committed = (Vec<Draft>, Result<Vec<(i64, i64)>, CommitFailure>);

enum Job {
    /// A group commit; its drafts come back with the answer.
    Commit {
        drafts: Vec<Draft>,
        now: chrono::DateTime<chrono::Utc>,
        reply: tokio::sync::oneshot::Sender<Committed>,
    },
    /// Any other write, which answers for itself.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// The handle to the writer thread; the thread ends, and closes its connection, when the last
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    jobs: std::sync::mpsc::Sender<Job>,
    /// The store's writer pool, of one connection: once it is closed, nothing is written.
    pool: sqlx::SqlitePool,
    /// The writer pool's gate, held while the thread writes.
    gate: crate::store::db::WriteGate,
}

/// How the writer connection is opened: as the pool's writer is.
pub(crate) struct WriterSettings<'a> {
    pub(crate) path: &'a Path,
    pub(crate) synchronous: &'static str,
    pub(crate) wal_limit_bytes: u64,
}

/// The writer connection's page cache, in KiB.
const CACHE_KIB: i64 = 32 * 1024;

/// A recipient's highest seq: the larger of its `users.last_seq` (the floor the deletes of
/// its newest notifications leave) and its notifications' highest, one seek of the (user_id,
/// seq) index. A commit writes no `users` row (migration 0032): the new rows' index entries
/// are what the next commit reads its seqs from, and a commit of one notification logs two
/// pages instead of three.
static LAST_SEQ: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM users WHERE id = ?1",
        crate::store::db::Kind::Sqlite.last_seq()
    )
});
static INSERT_NOTIFICATION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{INSERT_NOTIFICATIONS}VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, NULL, ?10, ?11)")
});
const RECORD_SENT: &str = "UPDATE users SET sent_seq = ?2 WHERE id = ?1 AND sent_seq < ?2";
const RECORD_PUSH: &str = "INSERT INTO stream_events (user_id, kind, first_seq, last_seq, sockets, node, first_at, at) VALUES (?1, 'pushed', ?2, ?3, ?4, ?5, ?6, ?7)";
static INSERT_DELIVERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{INSERT_DELIVERIES}VALUES (?1, ?2, ?3, ?4, 'QUEUED', 0, ?5, ?5, ?5)")
});

/// Runs of socket writes recorded in one turn at the writers' gate. The timelines' records
/// come every few seconds, a row for each user written to meanwhile: a thousand users' rows in
/// one transaction touch a leaf of the index for each, and held the group commits behind them
/// for 9–18 ms (more as the index grows); written this many at a time, a commit waits for one
/// part.
const PUSHES_PER_TURN: usize = 64;

/// A run of socket writes as the thread writes it: user, first and last seq, sockets, and the
/// times of the first and the last write.
type PushRow = (
    i64,
    i64,
    i64,
    i64,
    rusqlite::types::Value,
    rusqlite::types::Value,
);

impl DirectWriter {
    /// Opens the connection and starts its thread; `None` (with a warning) if it cannot be
    /// opened, and groups are then committed through the pool.
    pub(crate) fn start(
        settings: WriterSettings<'_>,
        pool: sqlx::SqlitePool,
        gate: crate::store::db::WriteGate,
    ) -> Option<Self> {
        let conn = match open(&settings) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "group commits go through the pool: no writer connection of their own");
                return None;
            }
        };
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("sqlite-committer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    match job {
                        Job::Commit { drafts, now, reply } => {
                            let result = commit(&mut conn, &drafts, now);
                            let _ = reply.send((drafts, result));
                        }
                        Job::Run(write) => write(&mut conn),
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Self { jobs, pool, gate }),
            Err(e) => {
                tracing::warn!(error = %e, "group commits go through the pool: no thread for their connection");
                None
            }
        }
    }

    /// Commits `drafts` (sorted by recipient) in one transaction, holding the writer pool's
    /// gate until it answers. If the thread is gone, nothing was tried and the drafts
    /// come back with `NotApplied`; if it went away with the drafts, whether they were
    /// committed is unknown, and no drafts come back.
    pub(crate) async fn commit(
        &self,
        drafts: Vec<Draft>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Committed {
        let Some(held) = self.turn().await else {
            let closed = crate::store::backend_error(sqlx::Error::PoolClosed);
            return (drafts, Err(CommitFailure::NotApplied(closed)));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job::Commit { drafts, now, reply };
        if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
            tracing::error!(
                "the group committer's writer thread is gone; committing through the pool"
            );
            let Job::Commit { drafts, .. } = job else {
                unreachable!("the job sent was a commit")
            };
            return (drafts, Err(CommitFailure::NotApplied(gone())));
        }
        let committed = answer
            .await
            .unwrap_or_else(|_| (Vec::new(), Err(CommitFailure::Unknown(gone()))));
        drop(held);
        committed
    }

    /// A turn at the writer pool's gate; none once the pool is closed.
    async fn turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let turn = self.gate.clone().lock_owned().await;
        (!self.pool.is_closed()).then_some(turn)
    }

    /// Records `sent_seq`s (`(user, seq)`, sorted by user). `None` if the thread is gone, and
    /// nothing was written.
    pub(crate) async fn record_sent(
        &self,
        sent: Vec<(i64, i64)>,
    ) -> Option<Result<(), StoreError>> {
        self.run(move |conn| record_sent(conn, &sent)).await
    }

    /// Records runs of seqs written to sockets (the timelines' history), in the index's order,
    /// [`PUSHES_PER_TURN`] runs a transaction, each in its own turn at the gate, so that the
    /// group commits that wait meanwhile go between two. `None` if the thread was gone before
    /// the first part, and nothing was written.
    pub(crate) async fn record_pushes(
        &self,
        node: &str,
        pushes: &[tickethub_actors::ports::Pushed],
    ) -> Option<Result<(), StoreError>> {
        let node: std::sync::Arc<str> = node.into();
        let mut rows: Vec<PushRow> = pushes
            .iter()
            .map(|p| {
                let (first_at, at) = (time(p.first_at), time(p.at));
                (p.user.0, p.first_seq, p.last_seq, p.sockets, first_at, at)
            })
            .collect();
        rows.sort_by_key(|row| (row.0, row.1));
        for (part, chunk) in rows.chunks(PUSHES_PER_TURN).enumerate() {
            let (chunk, node) = (chunk.to_vec(), node.clone());
            match self
                .run(move |conn| record_pushes(conn, &node, &chunk))
                .await
            {
                Some(Ok(())) => {}
                None if part > 0 => return Some(Err(gone())),
                other => return other,
            }
        }
        Some(Ok(()))
    }

    /// Deletes one batch of the purge. `None` if the thread is gone, and nothing was deleted.
    pub(crate) async fn purge(
        &self,
        batch: super::purge::Batch,
    ) -> Option<Result<u64, StoreError>> {
        self.run(move |conn| super::purge::run(conn, &batch)).await
    }

    /// Runs `write` on the thread's connection, holding the writer pool's gate until it
    /// answers. `None` if the thread is gone, and nothing was written.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<Result<T, StoreError>> {
        let Some(held) = self.turn().await else {
            return Some(Err(crate::store::backend_error(sqlx::Error::PoolClosed)));
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job::Run(Box::new(move |conn| {
            let _ = reply.send(write(conn));
        }));
        self.jobs.send(job).ok()?;
        let written = answer.await.ok();
        drop(held);
        written
    }
}

/// Records how far each user's sockets were sent (`(user, seq)`, sorted by user): a seq
/// never goes back.
fn record_sent(conn: &mut Connection, sent: &[(i64, i64)]) -> Result<(), StoreError> {
    in_transaction(conn, |conn| {
        let mut update = conn.prepare_cached(RECORD_SENT)?;
        for (user, seq) in sent {
            update.execute(params![user, seq])?;
        }
        Ok(())
    })
}

/// Inserts runs of socket writes in one transaction.
fn record_pushes(conn: &mut Connection, node: &str, rows: &[PushRow]) -> Result<(), StoreError> {
    in_transaction(conn, |conn| {
        let mut insert = conn.prepare_cached(RECORD_PUSH)?;
        for (user, first, last, sockets, first_at, at) in rows {
            insert.execute(params![user, first, last, sockets, node, first_at, at])?;
        }
        Ok(())
    })
}

/// Runs `write` in a transaction of its own, rolled back if it fails.
fn in_transaction(
    conn: &mut Connection,
    write: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    run_prepared(conn, BEGIN).map_err(backend)?;
    let written = write(conn).and_then(|()| run_prepared(conn, COMMIT));
    written.map_err(|e| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        backend(e)
    })
}

/// A transaction's statements without arguments, prepared once: `execute_batch` would parse
/// them again for every commit.
const BEGIN: &str = "BEGIN IMMEDIATE";
const COMMIT: &str = "COMMIT";

fn run_prepared(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn gone() -> StoreError {
    StoreError::Backend("the group committer's writer thread ended".into())
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn open(s: &WriterSettings<'_>) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        s.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", s.synchronous)?;
    // As the pool's writer: commits never checkpoint (the checkpointer does), and a log this
    // connection restarts is cut back to the limit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", s.wal_limit_bytes)?;
    // Room for the pages every commit touches: the leaves of each recipient's rows in the
    // notifications' indexes and of their `users` row. SQLite's default (2 MiB) holds them for
    // a few hundred users only, and every other leaf would be read again from the file.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // Room for the purge's statements (a few a table) beside the commits', which the default
    // of 16 would push out and parse again after each purge.
    conn.set_prepared_statement_cache_capacity(64);
    for sql in [
        BEGIN,
        COMMIT,
        RECORD_SENT,
        RECORD_PUSH,
        &LAST_SEQ,
        &INSERT_NOTIFICATION,
        &INSERT_DELIVERY,
    ] {
        conn.prepare_cached(sql)?;
    }
    Ok(conn)
}

/// Each recipient's seqs follow its highest ([`LAST_SEQ`]), one per draft it gets; a
/// recipient's drafts take its new seqs in order. A recipient that does not exist rolls the
/// transaction back (`NotApplied`, and the caller's statement-by-statement commit names it).
fn commit(
    conn: &mut Connection,
    drafts: &[Draft],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(i64, i64)>, CommitFailure> {
    if let Err(e) = run_prepared(conn, BEGIN) {
        return Err(CommitFailure::NotApplied(backend(e)));
    }
    match write(conn, drafts, now) {
        Ok(placed) => match run_prepared(conn, COMMIT) {
            Ok(()) => Ok(placed),
            // Still open (a busy database): roll back, nothing applied.
            Err(e) if !conn.is_autocommit() => rollback(conn, backend(e)),
            // Ended by SQLite itself: whether it applied is checked by the caller.
            Err(e) => Err(CommitFailure::Unanswered(backend(e), placed)),
        },
        Err(e) => rollback(conn, e),
    }
}

fn rollback(conn: &Connection, e: StoreError) -> Result<Vec<(i64, i64)>, CommitFailure> {
    if conn.is_autocommit() {
        return Err(CommitFailure::NotApplied(e));
    }
    match conn.execute_batch("ROLLBACK") {
        Ok(()) => Err(CommitFailure::NotApplied(e)),
        Err(rollback) => {
            tracing::error!(error = %e, rollback = %rollback, "a commit's outcome is unknown");
            Err(CommitFailure::Unknown(e))
        }
    }
}

fn write(
    conn: &Connection,
    drafts: &[Draft],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(i64, i64)>, StoreError> {
    // The form sqlx writes a time in, so that every reader compares and parses it alike.
    let now = now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    let (counts, back) = seq_plan(drafts);
    let mut last: HashMap<i64, i64> = HashMap::with_capacity(counts.len());
    let mut read = conn.prepare_cached(&LAST_SEQ).map_err(backend)?;
    for (user, n) in counts {
        let seq: Option<i64> = read
            .query_row(params![user], |row| row.get(0))
            .optional()
            .map_err(backend)?;
        let top = seq.ok_or_else(|| StoreError::NotFound(format!("user {user}")))? + n;
        last.insert(user, top);
    }
    let mut insert = conn.prepare_cached(&INSERT_NOTIFICATION).map_err(backend)?;
    let mut deliver = conn.prepare_cached(&INSERT_DELIVERY).map_err(backend)?;
    let mut placed = Vec::with_capacity(drafts.len());
    for (d, back) in drafts.iter().zip(back) {
        let seq = last[&d.recipient.0] - back;
        let id = insert
            .insert(params![
                d.recipient.0,
                seq,
                d.notification_type.as_str(),
                d.title,
                d.message,
                d.ticket.as_ref().map(|t| t.id.0),
                d.data,
                d.action_url,
                now,
                (!d.cause.action.is_empty()).then_some(d.cause.action),
                d.cause.actor.map(|a| a.0),
            ])
            .map_err(backend)?;
        for (channel, address) in &d.deliveries {
            debug_assert!(
                *channel != Channel::Push,
                "push rows are committed through the pool"
            );
            deliver
                .execute(params![
                    id,
                    channel.as_str(),
                    address,
                    recipients_json(d, *channel),
                    now,
                ])
                .map_err(backend)?;
        }
        placed.push((id, seq));
    }
    Ok(placed)
}
