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

use super::db::Pool;
use super::{ConnectError, SqlStore};

pub(crate) mod purge;
mod writer;

/// What only the SQLite store has.
#[derive(Debug)]
pub(crate) struct Own {
    /// The checkpointer runs while the store is alive.
    _alive: std::sync::Arc<()>,
    /// The point reads of a socket's handshake, on the caller's thread (none in memory).
    pub(crate) inline: Option<std::sync::Arc<InlineReader>>,
    /// The writer thread: group commits and `sent_seq` reports (none in memory).
    pub(crate) lane: Lane,
}

/// A read-only connection that a caller reads from on its own thread, for the point read of
/// a socket's handshake: sqlx runs each SQLite connection on a worker thread, and a query
/// through its pool hands off to that thread twice (the query, then the ping sqlx sends on
/// every release), which costs the handshake more than the read itself. A read by primary
/// key takes microseconds. Whoever finds the connection in use, or taken by a truncation of
/// the log, reads through the pool instead, as does any read this connection cannot decode
/// as sqlx would; it never waits (no busy timeout), so nothing blocks a runtime thread.
#[derive(Debug)]
pub(crate) struct InlineReader {
    conn: std::sync::Mutex<Option<rusqlite::Connection>>,
}

/// What the inline reader answers when the caller should read through the pool.
pub(crate) type Inline<T> = Option<T>;

impl InlineReader {
    fn open(path: &std::path::Path) -> Option<Self> {
        use rusqlite::OpenFlags;
        let opened = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.busy_timeout(Duration::ZERO).map(|()| c));
        match opened {
            Ok(conn) => Some(Self {
                conn: std::sync::Mutex::new(Some(conn)),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "handshakes read through the pool: no inline reader");
                None
            }
        }
    }

    /// Runs `read` on the connection unless someone else holds it.
    fn try_read<T>(&self, read: impl FnOnce(&rusqlite::Connection) -> Inline<T>) -> Inline<T> {
        let held = self.conn.try_lock().ok()?;
        read(held.as_ref()?)
    }

    /// Takes the connection away until the returned guard is dropped: readers go to the pool.
    fn hold(&self) -> InlineHeld<'_> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        InlineHeld { reader: self, conn }
    }

    /// A user by id, with where their notification stream stands: `Some(None)` when there is
    /// no such user.
    pub(crate) fn user_and_cursor(
        &self,
        id: i64,
    ) -> Inline<
        Option<(
            tickethub_actors::domain::User,
            tickethub_actors::ports::NotificationCursor,
        )>,
    > {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {}, {} AS last_seq, acked_seq, sent_seq FROM users WHERE id = ?1",
                super::USER_COLUMNS_SQLITE,
                super::db::Kind::Sqlite.last_seq()
            )
        });
        self.try_read(|c| {
            let mut statement = c.prepare_cached(&SQL).ok()?;
            let mut rows = statement.query([id]).ok()?;
            let Some(row) = rows.next().ok()? else {
                return Some(None);
            };
            // By name: the columns are `USER_COLUMNS_SQLITE`, then the cursor's.
            let at = |name: &str| match row.get_ref(name).ok()? {
                rusqlite::types::ValueRef::Null => Some(None),
                at => timestamp(at).map(Some),
            };
            let user = super::UserRow {
                id: row.get("id").ok()?,
                username: row.get("username").ok()?,
                display_name: row.get("display_name").ok()?,
                addresses: row.get("addresses").ok()?,
                role: row.get("role").ok()?,
                is_superuser: row.get("is_superuser").ok()?,
                is_active: row.get("is_active").ok()?,
                token_version: row.get("token_version").ok()?,
                created_at: at("created_at")??,
            }
            .into_user()
            .ok()?;
            let cursor = tickethub_actors::ports::NotificationCursor {
                last_seq: row.get("last_seq").ok()?,
                acked_seq: row.get("acked_seq").ok()?,
                sent_seq: row.get("sent_seq").ok()?,
            };
            Some(Some((user, cursor)))
        })
    }
}

/// Logs a warning when an existing database file can be read by other users than the hub's
/// (one made before the hub wrote its files for itself alone, or given to it so): it holds
/// people's data. The file is left as it is: its permissions are the operator's.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the database file can be read by other users; `chmod 600` it (and its -wal and -shm files)"
            );
        }
    }
}

/// A time as sqlx writes it (RFC 3339); any other form is left to the pool, which reads them
/// all.
fn timestamp(value: rusqlite::types::ValueRef<'_>) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = std::str::from_utf8(value.as_bytes().ok()?).ok()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.to_utc())
}

/// The inline reader's connection, taken away; given back when dropped.
struct InlineHeld<'a> {
    reader: &'a InlineReader,
    conn: Option<rusqlite::Connection>,
}

impl Drop for InlineHeld<'_> {
    fn drop(&mut self) {
        *self
            .reader
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.conn.take();
    }
}

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The pools a checkpointer works with.
struct Checkpointer {
    /// A connection of its own, for the copies that stop no one.
    own: SqlitePool,
    /// The writers' gate: held for the moment of a truncation.
    writer: super::db::WriteGate,
    /// Every reader connection: held for the moment of a truncation.
    reader: SqlitePool,
    readers: u32,
    /// The inline reader: taken for the moment of a truncation.
    inline: Option<std::sync::Arc<InlineReader>>,
    /// The log file.
    wal: std::path::PathBuf,
    /// Its size past which it is truncated.
    limit: u64,
}

/// Copies the write-ahead log into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of its own, without blocking the writer (`PASSIVE`), until the store is dropped.
///
/// A passive copy never restarts the log: SQLite writes from the start of the file again only
/// when a writer begins while every frame has been copied and no reader still reads an older
/// snapshot from the log. Under a steady load some reader or commit is always in flight, so
/// the log would grow without end. Once it passes its limit, the checkpointer makes that
/// moment: it holds every reader connection (each finishes its query first), copies again,
/// then takes the writers' gate (the group committer waits for it) and checkpoints with
/// `RESTART`, which now waits on nobody and has little left to copy: the next commit writes
/// the log from its start. Readers wait for that moment, and commits for the last copy only.
/// The file then stays near the limit (`journal_size_limit` cuts it back when it went past).
async fn checkpoints(c: Checkpointer, alive: std::sync::Weak<()>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut meter = LogMeter::default();
    while alive.strong_count() > 0 {
        every.tick().await;
        if let Err(e) = passive(&c.own, &mut meter).await {
            tracing::warn!(error = %e, "cannot checkpoint the SQLite log");
            continue;
        }
        let size = std::fs::metadata(&c.wal).map(|m| m.len()).unwrap_or(0);
        metrics::gauge!("tickethub_sqlite_wal_bytes").set(size as f64);
        if size > c.limit {
            let started = std::time::Instant::now();
            match truncate(&c, &mut meter).await {
                Ok(()) => {
                    metrics::counter!("tickethub_sqlite_wal_restarts_total").increment(1);
                    metrics::histogram!("tickethub_sqlite_wal_restart_seconds")
                        .record(started.elapsed().as_secs_f64());
                    let after = std::fs::metadata(&c.wal).map(|m| m.len()).unwrap_or(0);
                    metrics::gauge!("tickethub_sqlite_wal_bytes").set(after as f64);
                    tracing::debug!(before = size, after, took = ?started.elapsed(), "restarted the SQLite log");
                }
                Err(e) => tracing::warn!(error = %e, "cannot restart the SQLite log"),
            }
        }
    }
    c.own.close().await;
}

/// Counts the bytes commits write to the log, from the frames each checkpoint finds in it:
/// `tickethub_sqlite_wal_written_bytes_total`. A log started over between two looks counts
/// from its start (frames written over in between are missed, so the figure errs low).
#[derive(Default)]
struct LogMeter {
    /// Frames in the log at the last look.
    frames: i64,
    /// A frame's size: the page and its 24-byte header.
    frame_bytes: i64,
}

impl LogMeter {
    /// Takes the frames the log holds now and counts what was written since the last look.
    fn saw(&mut self, frames: i64) {
        let written = self.written(frames);
        if written > 0 {
            metrics::counter!("tickethub_sqlite_wal_written_bytes_total").increment(written);
        }
    }

    /// The bytes written since the last look, given the frames the log holds now.
    fn written(&mut self, frames: i64) -> u64 {
        let frames = frames.max(0);
        let new = if frames >= self.frames {
            frames - self.frames
        } else {
            frames
        };
        self.frames = frames;
        (new * self.frame_bytes).max(0) as u64
    }
}

async fn passive(pool: &SqlitePool, meter: &mut LogMeter) -> Result<(), sqlx::Error> {
    if meter.frame_bytes == 0 {
        let (page,): (i64,) = sqlx::query_as("PRAGMA page_size").fetch_one(pool).await?;
        meter.frame_bytes = page + 24;
    }
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    meter.saw(frames);
    Ok(())
}

/// How long a truncation waits for the readers, then the writer, before it gives up until the
/// next round (nothing may wait on it for long, whatever holds a connection).
const TRUNCATE_WAIT: Duration = Duration::from_secs(1);

async fn truncate(c: &Checkpointer, meter: &mut LogMeter) -> Result<(), sqlx::Error> {
    let held = tokio::time::timeout(TRUNCATE_WAIT, async {
        let mut held = Vec::with_capacity(c.readers as usize);
        for _ in 0..c.readers {
            held.push(c.reader.acquire().await?);
        }
        Ok::<_, sqlx::Error>(held)
    })
    .await
    .map_err(|_| sqlx::Error::PoolTimedOut)??;
    // Taken between two reads: each runs to its end before it lets the connection go.
    let _inline = c.inline.as_ref().map(|r| r.hold());
    // With no reader left on the log, this copies all of it while commits go on.
    passive(&c.own, meter).await?;
    let writer = tokio::time::timeout(TRUNCATE_WAIT, c.writer.clone().lock_owned())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?;
    // Commits wait from here: copy what they wrote meanwhile, then start the log over from
    // its beginning. `RESTART`, not `TRUNCATE`: the file keeps its size and is written over
    // (shrinking it would cost the commits behind this a file-system truncation).
    let held_since = std::time::Instant::now();
    let restarted: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&c.own)
            .await;
    drop(writer);
    metrics::histogram!("tickethub_sqlite_wal_restart_hold_seconds")
        .record(held_since.elapsed().as_secs_f64());
    drop(held);
    let (busy, frames, _) = restarted?;
    meter.saw(frames);
    if busy != 0 {
        tracing::debug!("the SQLite log could not be restarted: a connection was busy");
    } else {
        // The next commit writes from the log's first frame.
        meter.frames = 0;
    }
    Ok(())
}

/// Reader connections: a handful of read-only connections beside the writer.
const READERS: u32 = 4;

/// Opens (creating if missing) the database and runs the migrations.
pub async fn connect(url: &str, store: super::StoreOptions) -> Result<SqlStore, ConnectError> {
    let (acquire_timeout, durability) = (store.acquire_timeout, store.durability);
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = SqliteConnectOptions::from_str(url)?;
    warn_if_readable_by_others(options.get_filename());
    let options = options
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let options = if memory {
        // An in-memory database exists once per connection: share one for both pools.
        options.shared_cache(true)
    } else {
        options
            .page_size(store.page_size)
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
        // A log the writer restarts by itself is cut back to the limit.
        options
            .clone()
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", store.wal_limit_bytes.to_string())
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
        .connect_with(writer_options.clone())
        .await?;
    {
        // Migrations run on a connection of their own with foreign keys off: one that rebuilds
        // a table (SQLite's twelve steps) drops the old table, which with them on would delete
        // the rows that point at it or fail. sqlx runs each migration in a transaction, where
        // the pragma cannot be changed.
        use sqlx::{ConnectOptions, Connection};
        let mut conn = writer_options.clone().foreign_keys(false).connect().await?;
        sqlx::migrate!("migrations/sqlite").run(&mut conn).await?;
        conn.close().await?;
    }
    super::backfill_username_keys(&Pool::Sqlite(writer.clone(), None)).await?;
    // Every writer takes its turn at the gate: the pool's, the writer thread, a truncation.
    let gate = super::db::WriteGate::default();
    let alive = std::sync::Arc::new(());
    let reader = if memory {
        writer.clone()
    } else {
        SqlitePoolOptions::new()
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout.max(Duration::from_secs(10)))
            .max_connections(READERS)
            .connect_with(options.clone().read_only(true))
            .await?
    };
    let inline = if memory {
        None
    } else {
        let own = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let inline = InlineReader::open(options.get_filename()).map(std::sync::Arc::new);
        let mut wal = options.get_filename().as_os_str().to_owned();
        wal.push("-wal");
        let checkpointer = Checkpointer {
            own,
            writer: gate.clone(),
            reader: reader.clone(),
            readers: READERS,
            inline: inline.clone(),
            wal: wal.into(),
            limit: store.wal_limit_bytes,
        };
        tokio::spawn(checkpoints(checkpointer, std::sync::Arc::downgrade(&alive)));
        inline
    };
    // One writer connection: one committer, whose groups grow while a commit runs.
    let lane: Lane = if memory {
        None
    } else {
        writer::DirectWriter::start(
            writer::WriterSettings {
                path: options.get_filename(),
                synchronous: match durability {
                    crate::config::SqliteDurability::Full => "FULL",
                    crate::config::SqliteDurability::Normal => "NORMAL",
                },
                wal_limit_bytes: store.wal_limit_bytes,
            },
            writer.clone(),
            gate.clone(),
        )
        .map(std::sync::Arc::new)
    };
    let faults = std::sync::Arc::<tickethub_actors::ports::StoreFaults>::default();
    let writer = Pool::Sqlite(writer, (!memory).then_some(gate));
    let committer = super::Committer {
        pool: writer.clone(),
        lane: lane.clone(),
        held: None,
    };
    let commits = SqlStore::group_committer(committer, 1, faults.clone());
    Ok(SqlStore {
        kind: super::db::Kind::Sqlite,
        writer,
        reader: Pool::Sqlite(reader, None),
        commits,
        faults,
        purge_bounds: Default::default(),
        users: std::sync::Arc::new(tickethub_actors::ports::UserCache::new(store.user_cache)),
        own: super::Own::Sqlite(std::sync::Arc::new(Own {
            _alive: alive,
            inline,
            lane,
        })),
    })
}

/// How the group committer reaches the writer thread (none for an in-memory database).
pub(crate) type Lane = Option<std::sync::Arc<writer::DirectWriter>>;

/// Commits drafts that need no push rows and no escalation steps as one unit of work on the
/// writer thread, which holds the writers' gate meanwhile, so that no other write of the
/// hub's (nor the log's truncation) runs. Without a writer thread (an in-memory
/// database), statement by statement through the pool.
pub(crate) async fn commit_at_once(
    pool: &SqlitePool,
    lane: &Lane,
    drafts: Vec<tickethub_actors::notification::Draft>,
    now: chrono::DateTime<chrono::Utc>,
) -> writer::Committed {
    let Some(direct) = lane else {
        let applied =
            SqlStore::commit_in_steps(&Pool::Sqlite(pool.clone(), None), &drafts, now).await;
        return (drafts, applied);
    };
    direct.commit(drafts, now).await
}

#[cfg(test)]
mod tests;
