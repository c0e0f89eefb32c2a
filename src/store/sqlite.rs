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
                "SELECT {}, last_seq, acked_seq, sent_seq FROM users WHERE id = ?1",
                super::USER_COLUMNS_SQLITE
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
mod tests {
    use tickethub_actors::domain::{NewUser, Role, UserId};
    use tickethub_actors::ports::{NotificationCursor, Store, StreamStore, UserStore};
    use tickethub_actors::routing::Channel;

    use super::*;

    async fn store(dir: &tempfile::TempDir) -> SqlStore {
        let url = format!("sqlite://{}", dir.path().join("hub.db").display());
        connect(&url, Default::default()).await.unwrap()
    }

    #[test]
    fn the_log_meter_counts_new_frames_and_a_log_started_over() {
        let mut meter = LogMeter {
            frames: 0,
            frame_bytes: 4096 + 24,
        };
        assert_eq!(meter.written(10), 10 * 4120);
        assert_eq!(meter.written(10), 0);
        assert_eq!(meter.written(15), 5 * 4120);
        // Started over from its first frame: what it holds now was written since.
        assert_eq!(meter.written(3), 3 * 4120);
        assert_eq!(meter.written(-1), 0);
    }

    /// The bundled SQLite is built as `.cargo/config.toml` says: no process-wide lock taken for
    /// every allocation (memory status) or every page (one page cache group for all
    /// connections). (Its fdatasync is checked where the log is synced, in the end-to-end tests.)
    #[test]
    fn sqlite_is_built_without_the_process_wide_locks() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    /// The store's one writer connection's pool.
    fn writer_pool(s: &SqlStore) -> &SqlitePool {
        match s.writer() {
            Pool::Sqlite(pool, _) => pool,
            Pool::Postgres(_) => unreachable!("a SQLite store"),
        }
    }

    fn new_user(name: &str) -> NewUser {
        NewUser {
            username: name.into(),
            display_name: format!("{name} display"),
            email: Some(format!("{name}@example.com")),
            whatsapp_number: Some("15551234567".into()),
            phone_number: Some("+15551234567".into()),
            role: Role::Developer,
            is_superuser: true,
            password_hash: "!".into(),
        }
    }

    /// The writer thread's purge compares times as text: it must write a time as the pool
    /// does, or its cutoffs would fall between the rows'.
    #[tokio::test]
    async fn the_purge_on_the_writer_thread_writes_a_time_as_the_pool_does() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let pool = writer_pool(&s);
        for at in [
            chrono::DateTime::parse_from_rfc3339("2026-11-28T23:59:59.123456789Z").unwrap(),
            chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap(),
        ] {
            let at = at.to_utc();
            let (written,): (String,) = sqlx::query_as("SELECT CAST($1 AS TEXT)")
                .bind(at)
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(purge::time(at), rusqlite::types::Value::Text(written));
        }
        s.close().await;
    }

    /// What the pool reads for this user: a cold cache, so the read is not answered from it.
    async fn pooled(
        s: &SqlStore,
        id: UserId,
    ) -> Option<(tickethub_actors::domain::User, NotificationCursor)> {
        let held = s.inline().unwrap().hold();
        s.users.forget(id);
        let read = s.user_and_cursor(id).await.unwrap();
        drop(held);
        read.map(|(user, cursor)| (user, cursor.expect("read with the user")))
    }

    #[tokio::test]
    async fn the_inline_reader_reads_a_user_and_cursor_as_the_pool_does() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let user = s.create_user(new_user("ann")).await.unwrap();
        assert!(s
            .phone_number_invalid(user.id, "+15551234567", "unsubscribed", chrono::Utc::now())
            .await
            .unwrap());
        s.ack(user.id, 0).await.unwrap();
        let inline = s
            .inline()
            .unwrap()
            .user_and_cursor(user.id.0)
            .unwrap()
            .unwrap();
        assert!(inline.0.address(Channel::Sms).unwrap().invalid_at.is_some());
        assert_eq!(Some(inline.clone()), pooled(&s, user.id).await);
        assert_eq!(inline.1, s.notification_cursor(user.id).await.unwrap());
        let mut expected = user;
        expected.addresses = inline.0.addresses.clone();
        assert_eq!(inline.0, expected);
        // No such user: an answer, not a reason to ask the pool.
        assert_eq!(s.inline().unwrap().user_and_cursor(999_999), Some(None));
        // Held by a truncation: the caller reads through the pool, and still gets the user.
        let held = s.inline().unwrap().hold();
        assert_eq!(s.inline().unwrap().user_and_cursor(expected.id.0), None);
        s.users.forget(expected.id);
        let (read, cursor) = s.user_and_cursor(expected.id).await.unwrap().unwrap();
        assert_eq!((read, cursor), (expected.clone(), Some(inline.1)));
        drop(held);
        assert!(s.inline().unwrap().user_and_cursor(expected.id.0).is_some());
        s.close().await;
    }

    fn draft(recipient: UserId, title: &str) -> tickethub_actors::notification::Draft {
        use tickethub_actors::notification::{Cause, Draft, Recipient};
        use tickethub_actors::routing::{Channel, EventType};
        Draft {
            recipient,
            notification_type: EventType::TicketAssigned,
            title: title.into(),
            message: "Zoë's \"WEB-5\" is yours".into(),
            ticket: None,
            data: r#"{"k":[1,"ü"]}"#.into(),
            action_url: Some("/tickets/5".into()),
            deliveries: vec![
                (Channel::Email, "ann@example.com".into()),
                (Channel::Webhook, "https://hooks.example/a".into()),
            ],
            cause: Cause {
                action: "send",
                actor: Some(recipient),
            },
            escalations: Vec::new(),
            webhook_recipients: vec![Recipient {
                user_id: UserId(7),
                username: "ann".into(),
                display_name: "Ann".into(),
            }],
        }
    }

    /// Every column of a user's notifications and of their deliveries, but the ids, as text.
    async fn rows_of(s: &SqlStore, user: UserId) -> Vec<String> {
        let notifications: Vec<(String,)> = crate::store::db::query_as(
            "SELECT json_array(seq, notification_type, title, message, ticket_id, data, \
             action_url, is_read, read_at, deleted_at, created_at, event_id, action, actor_id - user_id) \
             FROM notifications WHERE user_id = $1 ORDER BY seq",
        )
        .bind(user.0)
        .fetch_all(s.reader())
        .await
        .unwrap();
        let deliveries: Vec<(String,)> = crate::store::db::query_as(
            "SELECT json_array(n.seq, d.channel, d.address, d.recipients, d.status, d.attempts, \
             d.next_attempt_at, d.claimed_until, d.last_error, d.created_at, d.updated_at) \
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
             WHERE n.user_id = $1 ORDER BY n.seq, d.id",
        )
        .bind(user.0)
        .fetch_all(s.reader())
        .await
        .unwrap();
        notifications
            .into_iter()
            .chain(deliveries)
            .map(|(row,)| row)
            .collect()
    }

    #[tokio::test]
    async fn the_writer_thread_writes_the_rows_the_pool_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let ann = s.create_user(new_user("ann")).await.unwrap().id;
        let bob = s.create_user(new_user("bob")).await.unwrap().id;
        let direct = writer::DirectWriter::start(
            writer::WriterSettings {
                path: &dir.path().join("hub.db"),
                synchronous: "FULL",
                wal_limit_bytes: 1 << 20,
            },
            writer_pool(&s).clone(),
            match s.writer() {
                Pool::Sqlite(_, Some(gate)) => gate.clone(),
                _ => unreachable!("a SQLite file's writer pool has a gate"),
            },
        )
        .map(std::sync::Arc::new);
        assert!(direct.is_some());
        let now = chrono::Utc::now();
        let drafts = |user| vec![draft(user, "first"), draft(user, "second")];
        let (back, placed) = commit_at_once(writer_pool(&s), &direct, drafts(ann), now).await;
        let placed = placed.unwrap_or_else(|_| panic!("the writer thread commits"));
        assert_eq!(back.len(), 2, "the drafts come back");
        assert_eq!(
            placed.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
            [1, 2]
        );
        let by_pool = SqlStore::commit_in_steps(s.writer(), &drafts(bob), now).await;
        assert!(by_pool.is_ok());
        let ann_rows = rows_of(&s, ann).await;
        assert_eq!(ann_rows.len(), 2 + 4);
        assert!(
            ann_rows.iter().any(|r| r.contains(r#"\"user_id\":7"#)),
            "a webhook delivery names its recipients: {ann_rows:?}"
        );
        assert_eq!(ann_rows, rows_of(&s, bob).await);
        assert_eq!(s.notification_cursor(ann).await.unwrap().last_seq, 2);

        // A recipient that does not exist: nothing is written, and the drafts come back.
        let mut group = drafts(ann);
        group.push(draft(UserId(999_999), "nobody"));
        let (back, refused) = commit_at_once(writer_pool(&s), &direct, group, now).await;
        assert_eq!(back.len(), 3);
        assert!(matches!(
            refused,
            Err(crate::store::notifications::CommitFailure::NotApplied(
                tickethub_actors::ports::StoreError::NotFound(_)
            ))
        ));
        assert_eq!(s.notification_cursor(ann).await.unwrap().last_seq, 2);
        assert_eq!(rows_of(&s, ann).await.len(), 6);
        s.close().await;
    }

    /// The writer thread writes only in its turn at the writers' gate: a report of what was
    /// sent waits while the writer pool's connection is taken, and is written once it is given
    /// back.
    #[tokio::test]
    async fn the_writer_thread_waits_for_the_writer_connection() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let user = s.create_user(new_user("di")).await.unwrap();
        let super::super::Own::Sqlite(own) = &s.own else {
            unreachable!("a SQLite store")
        };
        let direct = own.lane.clone().expect("a writer thread");
        let held = s.writer().acquire().await.unwrap();
        let mut report =
            tokio::spawn(async move { direct.record_sent(vec![(user.id.0, 5)]).await });
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut report)
                .await
                .is_err(),
            "the report waits for the writer connection"
        );
        assert_eq!(s.notification_cursor(user.id).await.unwrap().sent_seq, 0);
        drop(held);
        report.await.unwrap().expect("the thread runs").unwrap();
        assert_eq!(s.notification_cursor(user.id).await.unwrap().sent_seq, 5);
        s.close().await;
    }

    /// Writes go through the one writer connection: a reader connection refuses them.
    #[tokio::test]
    async fn a_reader_connection_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let user = s.create_user(new_user("cy")).await.unwrap();
        let write = |pool| {
            crate::store::db::query("UPDATE users SET display_name = 'x' WHERE id = $1")
                .bind(user.id.0)
                .execute(pool)
        };
        let refused = write(s.reader()).await.unwrap_err();
        assert!(
            refused.to_string().contains("readonly"),
            "a reader refuses a write: {refused}"
        );
        assert_eq!(write(s.writer()).await.unwrap().rows_affected(), 1);
        s.close().await;
    }

    #[tokio::test]
    async fn a_time_the_inline_reader_cannot_read_is_read_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let user = s.create_user(new_user("bob")).await.unwrap();
        // A form sqlx reads and never writes (written by hand, say).
        crate::store::db::query(
            "UPDATE users SET created_at = '2026-01-02 03:04:05' WHERE id = $1",
        )
        .bind(user.id.0)
        .execute(s.writer())
        .await
        .unwrap();
        assert_eq!(s.inline().unwrap().user_and_cursor(user.id.0), None);
        s.users.forget(user.id);
        let (read, _) = s.user_and_cursor(user.id).await.unwrap().unwrap();
        assert_eq!(
            read.created_at,
            "2026-01-02T03:04:05Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        s.close().await;
    }
}
