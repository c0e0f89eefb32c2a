//! Storage adapters: SQLite (the embedded default) and PostgreSQL, behind the core's ports.
//!
//! Both backends share one implementation, [`SqlStore`]: its statements are the common subset
//! of both dialects (`$n` parameters, `RETURNING`, `ON CONFLICT`), run through [`db`],
//! which binds their arguments and decodes their rows for the backend they run on. What only
//! one backend has (SQLite's writer thread and checkpointer, PostgreSQL's held connections and
//! one-statement commits) lives in [`sqlite`] and [`postgres`]; each has its own migrations
//! under `migrations/`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{Project, ProjectId, Role, User, UserId};
use tickethub_actors::ports::{Store, StoreError};

use crate::config::{database_kind, ConfigError, DatabaseKind};

pub mod access;
pub mod analytics;
mod attachments;
pub mod audit;
mod chats;
pub mod credentials;
pub mod db;
pub mod devices;
mod digests;
mod follow_ups;
pub mod history;
mod hold;
pub mod inbox;
mod invitations;
pub mod notifications;
pub mod oncall;
pub mod outbox;
pub mod postgres;
pub mod preferences;
pub mod projects;
mod receipts;
mod reply;
pub mod retention;
pub mod schedule;
pub mod sqlite;
pub mod stream;
pub mod tickets;
pub mod users;
pub mod verification;
mod webhooks;

/// The default wait for a pooled connection.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How the store is opened.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// How long a call waits for a pooled connection before it fails (during a database
    /// outage, every call fails within it).
    pub acquire_timeout: std::time::Duration,
    /// The most connections opened to PostgreSQL.
    pub max_connections: u32,
    /// SQLite's durability.
    pub durability: crate::config::SqliteDurability,
    /// The size past which SQLite's write-ahead log is truncated.
    pub wal_limit_bytes: u64,
    /// The page size of a new SQLite database file, in bytes.
    pub page_size: u32,
    /// The cache of active users.
    pub user_cache: tickethub_actors::ports::UserCacheOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: ACQUIRE_TIMEOUT,
            max_connections: 16,
            durability: Default::default(),
            wal_limit_bytes: 64 * 1024 * 1024,
            page_size: 2048,
            user_cache: Default::default(),
        }
    }
}

/// Connects to the database a URL names and runs its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, ConnectError> {
    connect_with(url, StoreOptions::default()).await
}

/// [`connect`], with options.
pub async fn connect_with(
    url: &str,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, ConnectError> {
    match database_kind(url)? {
        DatabaseKind::Sqlite => Ok(Arc::new(sqlite::connect(url, options).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(postgres::connect(url, options).await?)),
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database refused the connection.
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub(crate) fn backend_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound(db.message().to_owned())
        }
        // A deadlock or serialization failure (PostgreSQL 40P01, 40001) rolled the transaction
        // back: the caller reloads and decides again, as after a version conflict.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")) => {
            StoreError::Stale(db.message().to_owned())
        }
        _ => StoreError::Backend(Box::new(e)),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    display_name: String,
    role: String,
    is_superuser: bool,
    is_active: bool,
    token_version: i64,
    created_at: DateTime<Utc>,
    /// The user's `user_addresses`, a JSON array of `[channel, address, verified_at,
    /// invalid_at]` (or NULL for none).
    addresses: Option<String>,
}

impl UserRow {
    fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            id: UserId(self.id),
            username: self.username,
            display_name: self.display_name,
            addresses: addresses_of(self.addresses.as_deref())?,
            role: self
                .role
                .parse::<Role>()
                .map_err(|e| StoreError::Backend(Box::new(e)))?,
            is_superuser: self.is_superuser,
            is_active: self.is_active,
            token_version: self.token_version,
            created_at: self.created_at,
        })
    }
}

/// A user's addresses from their JSON array (`[[channel, address, verified_at, invalid_at],
/// …]`), in channel order. A channel this hub does not know (a plug-in removed since) is left
/// out.
fn addresses_of(json: Option<&str>) -> Result<Vec<tickethub_actors::domain::Address>, StoreError> {
    type Row = (String, String, Option<String>, Option<String>);
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let rows: Vec<Row> = serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("user addresses: {e}").into()))?;
    let at = |t: Option<String>| {
        t.map(|t| {
            // SQLite keeps what sqlx wrote (RFC 3339); PostgreSQL's JSON writes ISO 8601 with
            // an offset of `+00:00`, or with a space for older stored text.
            DateTime::parse_from_rfc3339(&t)
                .or_else(|_| DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Backend(format!("user addresses: `{t}`: {e}").into()))
        })
        .transpose()
    };
    let mut out = Vec::with_capacity(rows.len());
    for (channel, address, verified_at, invalid_at) in rows {
        let Some(channel) = tickethub_actors::routing::Channel::stored(&channel) else {
            continue;
        };
        out.push(tickethub_actors::domain::Address {
            channel,
            address,
            verified_at: at(verified_at)?,
            invalid_at: at(invalid_at)?,
        });
    }
    out.sort_by_key(|a| a.channel);
    Ok(out)
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: i64,
    key: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl ProjectRow {
    fn into_project(self, member_ids: Vec<UserId>) -> Project {
        Project {
            id: ProjectId(self.id),
            key: self.key,
            name: self.name,
            member_ids,
            created_at: self.created_at,
        }
    }
}

/// The columns of a [`UserRow`] read from `users` on SQLite, addresses included.
pub(crate) const USER_COLUMNS_SQLITE: &str =
    "id, username, display_name, role, is_superuser, is_active, token_version, created_at, \
     (SELECT json_group_array(json_array(a.channel, a.address, a.verified_at, a.invalid_at)) \
      FROM user_addresses a WHERE a.user_id = users.id) AS addresses";

/// The columns of a [`UserRow`] read from `users` on PostgreSQL, addresses included.
pub(crate) const USER_COLUMNS_POSTGRES: &str =
    "id, username, display_name, role, is_superuser, is_active, token_version, created_at, \
     (SELECT json_agg(json_build_array(a.channel, a.address, a.verified_at, a.invalid_at))::text \
      FROM user_addresses a WHERE a.user_id = users.id) AS addresses";

/// The columns of a [`UserRow`] on `kind`, for a query `FROM users`.
pub(crate) fn user_columns(kind: db::Kind) -> &'static str {
    match kind {
        db::Kind::Sqlite => USER_COLUMNS_SQLITE,
        db::Kind::Postgres => USER_COLUMNS_POSTGRES,
    }
}

/// The key two usernames must not share: NFKC-normalized, lower-cased, then reduced to its
/// Unicode confusable skeleton (UTS #39), so that `Admin`, `ａｄｍｉｎ` and `аdmin` (with a
/// Cyrillic `а`) all collide with `admin`.
pub fn username_key(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = username.nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&folded).nfc().collect()
}

/// Gives the users written before usernames had keys their key. Two old accounts whose names
/// collide keep working; the later keeps no key, and is named in the log for an admin to
/// rename.
pub(crate) async fn backfill_username_keys(pool: &db::Pool) -> Result<(), sqlx::Error> {
    let rows: Vec<(i64, String)> =
        db::query_as("SELECT id, username FROM users WHERE username_key IS NULL ORDER BY id")
            .fetch_all(pool)
            .await?;
    for (id, username) in rows {
        let key = username_key(&username);
        let res = db::query("UPDATE users SET username_key = $1 WHERE id = $2")
            .bind(key)
            .bind(id)
            .execute(pool)
            .await;
        match res {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                tracing::warn!(
                    user_id = id,
                    username = %username,
                    "this username looks like another user's; rename one of them"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What an erased person is called everywhere they appear.
pub const ERASED_NAME: &str = "Erased user";

/// One caller's drafts waiting for the group committer, and where its answer goes.
pub(crate) type CommitJob = (
    Vec<tickethub_actors::notification::Draft>,
    tokio::sync::oneshot::Sender<
        Result<Vec<tickethub_actors::notification::Notification>, StoreError>,
    >,
);

/// The queue of the group committer: concurrent `commit_notifications` calls are committed
/// together, in one transaction, by whichever committer takes them.
#[derive(Clone, Debug)]
pub struct CommitQueue {
    jobs: tokio::sync::mpsc::UnboundedSender<CommitJob>,
    waiting: Arc<Waiting>,
}

/// What waits in a [`CommitQueue`], counted as it is queued and taken, and a wake-up for the
/// helping committers when more than a group's worth waits.
#[derive(Debug, Default)]
struct Waiting {
    calls: std::sync::atomic::AtomicUsize,
    rows: std::sync::atomic::AtomicUsize,
    grown: tokio::sync::Notify,
    /// Every sender is gone: the helpers end too.
    closed: std::sync::atomic::AtomicBool,
}

impl Waiting {
    /// Whether more waits than the next group can take.
    fn over_a_group(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.load(SeqCst) > MAX_GROUP || self.rows.load(SeqCst) > MAX_GROUP_ROWS
    }

    fn taken(&self, job: &CommitJob) {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_sub(1, SeqCst);
        self.rows.fetch_sub(job.0.len(), SeqCst);
    }
}

impl CommitQueue {
    /// Queues a call for the committers; `Err` when they are gone.
    pub(crate) fn send(&self, job: CommitJob) -> Result<(), CommitJob> {
        use std::sync::atomic::Ordering::SeqCst;
        let rows = job.0.len();
        self.waiting.calls.fetch_add(1, SeqCst);
        self.waiting.rows.fetch_add(rows, SeqCst);
        if let Err(e) = self.jobs.send(job) {
            self.waiting.taken(&e.0);
            return Err(e.0);
        }
        if self.waiting.over_a_group() {
            self.waiting.grown.notify_waiters();
        }
        Ok(())
    }
}

/// At most this many calls share one transaction.
pub(crate) const MAX_GROUP: usize = 256;

/// A group takes no more calls once it holds this many notifications, so that the parts of a
/// large announcement, sent at once, are committed side by side where there are several
/// committers.
pub(crate) const MAX_GROUP_ROWS: usize = 1_000;

/// Starts `workers` group committers, each handing the groups it takes to `commit`, which
/// answers their calls. The first takes every call waiting when it is free (a lone call is
/// committed at once, never waiting for company), at most [`MAX_GROUP`] calls and, past
/// [`MAX_GROUP_ROWS`] notifications, no more. The others help only while more waits than one
/// group takes (the parts of a large announcement, or a backlog): otherwise the first alone
/// takes every call, in groups as large as what waited while it committed the last one.
pub(crate) fn group_committer<F, Fut>(workers: usize, commit: F) -> CommitQueue
where
    F: Fn(Vec<CommitJob>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (queue, jobs) = tokio::sync::mpsc::unbounded_channel::<CommitJob>();
    let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
    let waiting = Arc::new(Waiting::default());
    for worker in 0..workers.max(1) {
        let (commit, jobs, waiting) = (commit.clone(), jobs.clone(), waiting.clone());
        let helping = worker > 0;
        tokio::spawn(async move {
            loop {
                if helping {
                    let grown = waiting.grown.notified();
                    tokio::pin!(grown);
                    grown.as_mut().enable();
                    if waiting.closed.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    if !waiting.over_a_group() {
                        grown.await;
                        continue;
                    }
                }
                let group = {
                    let mut jobs = jobs.lock().await;
                    let first = if helping {
                        match jobs.try_recv() {
                            Ok(job) => job,
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => continue,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                        }
                    } else {
                        match jobs.recv().await {
                            Some(job) => job,
                            None => {
                                waiting
                                    .closed
                                    .store(true, std::sync::atomic::Ordering::SeqCst);
                                waiting.grown.notify_waiters();
                                return;
                            }
                        }
                    };
                    waiting.taken(&first);
                    let mut rows = first.0.len();
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP && rows < MAX_GROUP_ROWS {
                        match jobs.try_recv() {
                            Ok(job) => {
                                waiting.taken(&job);
                                rows += job.0.len();
                                group.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    group
                };
                // A panic fails this group's calls (their answers are dropped), never the
                // committer: later calls are still committed.
                let committed =
                    futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(commit(group)))
                        .await;
                if committed.is_err() {
                    tracing::error!("a group commit panicked; its calls failed");
                }
            }
        });
    }
    CommitQueue {
        jobs: queue,
        waiting,
    }
}

/// The store: every port, for either backend.
#[derive(Clone, Debug)]
pub struct SqlStore {
    kind: db::Kind,
    /// The connections that write (on SQLite, the one writer connection).
    writer: db::Pool,
    /// The connections that read (on SQLite, read-only ones; on PostgreSQL, the writer's).
    reader: db::Pool,
    commits: CommitQueue,
    faults: Arc<tickethub_actors::ports::StoreFaults>,
    /// The bounds of the purge's running sweep.
    purge_bounds: Arc<retention::PurgeBounds>,
    /// Active users, kept between requests.
    users: Arc<tickethub_actors::ports::UserCache>,
    /// What only one backend has.
    own: Own,
}

/// What only one backend's store has.
#[derive(Clone, Debug)]
enum Own {
    Sqlite(Arc<sqlite::Own>),
    Postgres(Arc<postgres::Own>),
}

/// How a group committer reaches the database: the writer pool, and on SQLite the writer
/// thread (none for an in-memory database), on PostgreSQL connections held for it.
#[derive(Clone, Debug)]
pub(crate) struct Committer {
    pub(crate) pool: db::Pool,
    pub(crate) lane: sqlite::Lane,
    /// PostgreSQL's connections held for the committers (none on SQLite, nor with a small
    /// pool).
    pub(crate) held: Option<Arc<postgres::Held>>,
}

impl SqlStore {
    /// Which backend the store runs on.
    pub(crate) fn kind(&self) -> db::Kind {
        self.kind
    }

    fn users(&self) -> &tickethub_actors::ports::UserCache {
        &self.users
    }

    fn writer(&self) -> &db::Pool {
        &self.writer
    }

    fn reader(&self) -> &db::Pool {
        &self.reader
    }

    /// SQLite's writer thread (none on PostgreSQL, nor for an in-memory database).
    fn lane(&self) -> &sqlite::Lane {
        const NO_LANE: &sqlite::Lane = &None;
        match &self.own {
            Own::Sqlite(own) => &own.lane,
            Own::Postgres(_) => NO_LANE,
        }
    }

    /// SQLite's reader of a handshake's point read, on the caller's thread.
    fn inline(&self) -> Option<&sqlite::InlineReader> {
        match &self.own {
            Own::Sqlite(own) => own.inline.as_deref(),
            Own::Postgres(_) => None,
        }
    }

    /// The row `sql` finds for `id`, read on a PostgreSQL connection held outside the pool;
    /// `None` when none could read it (the caller reads through the pool).
    async fn held_row(&self, sql: &str, id: i64) -> Option<Option<db::Row>> {
        match &self.own {
            Own::Postgres(own) => own
                .held
                .as_ref()?
                .row(sql, id)
                .await
                .map(|row| row.map(db::Row::Postgres)),
            Own::Sqlite(_) => None,
        }
    }

    /// Closes the connections held outside the pools.
    async fn close_held(&self) {
        if let Own::Postgres(own) = &self.own {
            if let Some(held) = &own.held {
                held.close().await;
            }
            if let Some(held) = &own.committer {
                held.close().await;
            }
        }
    }

    /// Records `sent_seq`s (sorted by user) on SQLite's writer thread; `None` without one,
    /// and the caller writes them through the pool.
    async fn record_sent_directly(&self, sent: Vec<(i64, i64)>) -> Option<Result<(), StoreError>> {
        match &self.own {
            Own::Sqlite(own) => own.lane.as_ref()?.record_sent(sent).await,
            Own::Postgres(_) => None,
        }
    }

    /// Records runs of socket writes on SQLite's writer thread, in parts; `None` without one,
    /// and the caller writes them through the pool.
    async fn record_pushes_directly(
        &self,
        node: &str,
        pushes: &[tickethub_actors::ports::Pushed],
    ) -> Option<Result<(), StoreError>> {
        match &self.own {
            Own::Sqlite(own) => own.lane.as_ref()?.record_pushes(node, pushes).await,
            Own::Postgres(_) => None,
        }
    }

    /// Commits drafts that need no push rows and no escalation steps as one unit of work:
    /// on SQLite's writer thread, or as one statement on PostgreSQL.
    pub(crate) async fn commit_at_once(
        committer: &Committer,
        drafts: Vec<tickethub_actors::notification::Draft>,
        now: DateTime<Utc>,
    ) -> (
        Vec<tickethub_actors::notification::Draft>,
        Result<Vec<(i64, i64)>, notifications::CommitFailure>,
    ) {
        match &committer.pool {
            db::Pool::Sqlite(pool, _) => {
                sqlite::commit_at_once(pool, &committer.lane, drafts, now).await
            }
            db::Pool::Postgres(pool) => {
                postgres::commit_at_once(pool, committer.held.as_deref(), drafts, now).await
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.kind.name()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        db::query("SELECT 1")
            .execute(self.reader())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    fn faults(&self) -> &tickethub_actors::ports::StoreFaults {
        &self.faults
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match &self.own {
            Own::Postgres(own) => own.clock.now(),
            Own::Sqlite(_) => chrono::Utc::now(),
        }
    }

    async fn close(&self) {
        self.close_held().await;
        self.writer().close().await;
        self.reader().close().await;
    }
}

/// Checks that `Store` stays object-safe.
#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Store) {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type Answer = tokio::sync::oneshot::Receiver<
        Result<Vec<tickethub_actors::notification::Notification>, StoreError>,
    >;

    /// Queues a call as `commit_notifications` does, without waiting for its answer.
    fn call(queue: &CommitQueue) -> Answer {
        call_with(queue, 0)
    }

    /// [`call`], with `rows` drafts.
    fn call_with(queue: &CommitQueue, rows: usize) -> Answer {
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send((
                (0..rows as i64)
                    .map(|i| notifications::tests::draft(i, ""))
                    .collect(),
                reply,
            ))
            .expect("the committer runs");
        answer
    }

    /// The notification counts of the groups committed so far, in order.
    type Groups = Arc<std::sync::Mutex<Vec<usize>>>;

    /// `workers` committers whose first group, one call of one notification, waits for a
    /// permit of the semaphore; returned once that group is being committed.
    async fn busy_committers(
        workers: usize,
    ) -> (CommitQueue, Groups, Arc<tokio::sync::Semaphore>, Answer) {
        let groups = Groups::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (seen, opened) = (groups.clone(), gate.clone());
        let queue = group_committer(workers, move |group: Vec<CommitJob>| {
            let (seen, opened) = (seen.clone(), opened.clone());
            async move {
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(group.iter().map(|(d, _)| d.len()).sum::<usize>());
                    seen.len() == 1
                };
                if first {
                    opened.acquire().await.unwrap().forget();
                }
                for (_, reply) in group {
                    let _ = reply.send(Ok(Vec::new()));
                }
            }
        });
        let busy = call_with(&queue, 1);
        while groups.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        (queue, groups, gate, busy)
    }

    /// Waits for each answer (at most 5 s), which must be a success.
    async fn answered(answers: impl IntoIterator<Item = Answer>) {
        for answer in answers {
            tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .expect("every call is answered in time")
                .unwrap()
                .unwrap();
        }
    }

    /// While the committer is busy, calls of 600, 600, 600 and 1 notifications queue up: the
    /// next group stops taking calls once past [`MAX_GROUP_ROWS`], and the one after takes
    /// the rest.
    #[tokio::test]
    async fn a_group_takes_no_more_calls_once_it_holds_enough_rows() {
        let (queue, groups, gate, busy) = busy_committers(1).await;
        let queued: Vec<Answer> = [600, 600, 600, 1]
            .into_iter()
            .map(|rows| call_with(&queue, rows))
            .collect();
        gate.add_permits(1);
        busy.await.unwrap().unwrap();
        answered(queued).await;
        assert_eq!(*groups.lock().unwrap(), [1, 1_200, 601]);
    }

    /// Two committers, the second helping only over a group's worth: while the first commits,
    /// five lone calls wait for it (the second leaves them), and once three calls of 600 more
    /// wait, the second takes a group of its own, the lone calls first.
    #[tokio::test]
    async fn the_second_committer_helps_only_with_more_than_a_group() {
        let (queue, groups, gate, busy) = busy_committers(2).await;
        let lone: Vec<Answer> = (0..5).map(|_| call_with(&queue, 1)).collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *groups.lock().unwrap(),
            [1],
            "the lone calls wait for the first"
        );
        let large: Vec<Answer> = (0..3).map(|_| call_with(&queue, 600)).collect();
        while groups.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*groups.lock().unwrap(), [1, 1_205]);
        gate.add_permits(1);
        busy.await.unwrap().unwrap();
        answered(lone.into_iter().chain(large)).await;
        assert_eq!(*groups.lock().unwrap(), [1, 1_205, 600]);
    }

    /// Once every sender is gone, every committer ends, the helper too (none holds what
    /// `commit` holds, a pool, past the queue's life).
    #[tokio::test]
    async fn every_committer_ends_with_the_queue() {
        let held = Arc::new(());
        let witness = held.clone();
        let queue = group_committer(2, move |group: Vec<CommitJob>| {
            let _held = witness.clone();
            async move {
                for (_, reply) in group {
                    let _ = reply.send(Ok(Vec::new()));
                }
            }
        });
        call(&queue).await.unwrap().unwrap();
        drop(queue);
        tokio::time::timeout(Duration::from_secs(5), async {
            while Arc::strong_count(&held) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both committers end");
    }

    /// The committer loop with a commit that panics on its first group: that group's callers
    /// hear at once that their call failed, and the same (only) committer answers later calls.
    #[tokio::test]
    async fn a_panicking_group_fails_its_calls_and_the_committer_goes_on() {
        let groups = Arc::new(AtomicUsize::new(0));
        let seen = groups.clone();
        let queue = group_committer(1, move |group: Vec<CommitJob>| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    panic!("a commit that panics");
                }
                for (_, reply) in group {
                    let _ = reply.send(Ok(Vec::new()));
                }
            }
        });
        let answered = |answer| async move {
            tokio::time::timeout(Duration::from_secs(5), answer)
                .await
                .expect("every call is answered in time")
        };
        // Both calls are queued before the committer runs: they are its first group.
        let (a, b) = (call(&queue), call(&queue));
        assert!(
            answered(a).await.is_err(),
            "a call of the panicking group fails"
        );
        assert!(
            answered(b).await.is_err(),
            "a call of the panicking group fails"
        );
        assert_eq!(groups.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            let later = call(&queue);
            let result = answered(later).await.expect("a later call is answered");
            assert!(result.is_ok());
        }
        assert_eq!(groups.load(Ordering::SeqCst), 4);
    }
}
