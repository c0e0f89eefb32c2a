//! The SQLite store: the embedded default.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one connection (no
//! `SQLITE_BUSY` between our own transactions) and reads through a separate pool. The database
//! runs in WAL mode, so readers never block the writer.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{impl_store, ConnectError};

/// The SQLite implementation of the ports.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    commits: super::CommitQueue,
    /// The checkpointer runs while a clone of the store is alive.
    _alive: std::sync::Arc<()>,
}

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the write-ahead log into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of its own, without blocking the writer (`PASSIVE`), until the store is dropped.
async fn checkpoints(pool: SqlitePool, alive: std::sync::Weak<()>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while alive.strong_count() > 0 {
        every.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "cannot checkpoint the SQLite log");
        }
    }
    pool.close().await;
}

impl SqliteStore {
    /// Opens (creating if missing) the database and runs the migrations.
    pub async fn connect(
        url: &str,
        acquire_timeout: Duration,
        durability: crate::config::SqliteDurability,
    ) -> Result<Self, ConnectError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let options = if memory {
            // An in-memory database exists once per connection: share one for both pools.
            options.shared_cache(true)
        } else {
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match durability {
                    crate::config::SqliteDurability::Full => SqliteSynchronous::Full,
                    crate::config::SqliteDurability::Normal => SqliteSynchronous::Normal,
                })
        };
        // Commits never checkpoint: a checkpoint copies the log into the database file (and
        // with `full` waits for its fsync), which on the commit path stalls every caller
        // behind it. A connection of its own checkpoints instead, off that path.
        let writer_options = if memory {
            options.clone()
        } else {
            options.clone().pragma("wal_autocheckpoint", "0")
        };
        // No ping before each acquire (sqlx's default): a connection to a local file does not
        // go stale, and each ping is a round trip to the connection's worker thread, two
        // context switches on every query.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout.max(Duration::from_secs(10)))
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        super::backfill_username_keys(&writer).await?;
        let alive = std::sync::Arc::new(());
        if !memory {
            let checkpointer = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            tokio::spawn(checkpoints(checkpointer, std::sync::Arc::downgrade(&alive)));
        }
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .test_before_acquire(false)
                .acquire_timeout(acquire_timeout.max(Duration::from_secs(10)))
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await?
        };
        // One writer connection: one committer, whose groups grow while a commit runs.
        let commits = Self::group_committer(writer.clone(), 1);
        Ok(Self {
            writer,
            reader,
            commits,
            _alive: alive,
        })
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

impl_store!(SqliteStore, sqlx::Sqlite, "sqlite", "");
