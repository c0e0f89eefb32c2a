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
}

impl SqliteStore {
    /// Opens (creating if missing) the database and runs the migrations.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> Result<Self, ConnectError> {
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
                .synchronous(SqliteSynchronous::Normal)
        };
        let writer = SqlitePoolOptions::new()
            .acquire_timeout(acquire_timeout.max(Duration::from_secs(10)))
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = if memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .acquire_timeout(acquire_timeout.max(Duration::from_secs(10)))
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(Self { writer, reader })
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

impl_store!(SqliteStore, sqlx::Sqlite, "sqlite", "");
