//! Storage adapters: SQLite (the embedded default) and PostgreSQL, behind the core's ports.
//!
//! Both backends share one implementation, written once in [`impl_store!`] and expanded for
//! each pool type. The SQL is the common subset of both dialects (`$n` parameters, `RETURNING`,
//! `ON CONFLICT`); each backend has its own migrations under `migrations/`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tickethub_actors::domain::{Project, ProjectId, Role, User, UserId};
use tickethub_actors::ports::{Store, StoreError};

use crate::config::{database_kind, ConfigError, DatabaseKind};

pub mod credentials;
pub mod history;
pub mod notifications;
pub mod outbox;
pub mod postgres;
pub mod retention;
pub mod sqlite;
pub mod tickets;

/// The default wait for a pooled connection.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How the store is opened.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// How long a call waits for a pooled connection before it fails (during a database
    /// outage, every call fails within it).
    pub acquire_timeout: std::time::Duration,
    /// SQLite's durability.
    pub durability: crate::config::SqliteDurability,
    /// The size past which SQLite's write-ahead log is truncated.
    pub wal_limit_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: ACQUIRE_TIMEOUT,
            durability: Default::default(),
            wal_limit_bytes: 64 * 1024 * 1024,
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
        DatabaseKind::Sqlite => Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(
            postgres::PgStore::connect(url, options.acquire_timeout).await?,
        )),
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
    email: Option<String>,
    whatsapp_number: Option<String>,
    role: String,
    is_superuser: bool,
    is_active: bool,
    token_version: i64,
    created_at: DateTime<Utc>,
}

impl UserRow {
    fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            id: UserId(self.id),
            username: self.username,
            display_name: self.display_name,
            email: self.email,
            whatsapp_number: self.whatsapp_number,
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

pub(crate) const USER_COLUMNS: &str =
    "id, username, display_name, email, whatsapp_number, role, is_superuser, is_active, token_version, created_at";

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
pub(crate) async fn backfill_username_keys<'c, DB>(pool: &sqlx::Pool<DB>) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e sqlx::Pool<DB>: sqlx::Executor<'e, Database = DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB>,
    (i64, String): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, username FROM users WHERE username_key IS NULL ORDER BY id")
            .fetch_all(pool)
            .await?;
    for (id, username) in rows {
        let key = username_key(&username);
        let res = sqlx::query("UPDATE users SET username_key = $1 WHERE id = $2")
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
pub struct CommitQueue(tokio::sync::mpsc::UnboundedSender<CommitJob>);

/// At most this many calls share one transaction.
pub(crate) const MAX_GROUP: usize = 256;

/// Starts `workers` group committers, each handing the groups it takes to `commit`, which
/// answers their calls. Each takes every call waiting when it is free (a lone call is
/// committed at once, never waiting for company), at most [`MAX_GROUP`].
pub(crate) fn group_committer<F, Fut>(workers: usize, commit: F) -> CommitQueue
where
    F: Fn(Vec<CommitJob>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (queue, jobs) = tokio::sync::mpsc::unbounded_channel::<CommitJob>();
    let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
    for _ in 0..workers.max(1) {
        let (commit, jobs) = (commit.clone(), jobs.clone());
        tokio::spawn(async move {
            loop {
                let group = {
                    let mut jobs = jobs.lock().await;
                    let Some(first) = jobs.recv().await else {
                        return;
                    };
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match jobs.try_recv() {
                            Ok(job) => group.push(job),
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
    CommitQueue(queue)
}

/// A set of ids bound as one value, so that the statement's text is the same however many
/// there are (and stays in the prepared-statement cache): `IN (SELECT value FROM json_each(?))`
/// on SQLite, `= ANY(?::bigint[])` on PostgreSQL.
pub(crate) trait IdSet: sqlx::Database {
    /// Pushes the membership test of the column just pushed.
    fn push_in(q: &mut sqlx::QueryBuilder<'_, Self>, ids: Vec<i64>);
}

impl IdSet for sqlx::Sqlite {
    fn push_in(q: &mut sqlx::QueryBuilder<'_, Self>, ids: Vec<i64>) {
        let json = serde_json::to_string(&ids).expect("integers serialize");
        q.push(" IN (SELECT value FROM json_each(");
        q.push_bind(json);
        q.push("))");
    }
}

impl IdSet for sqlx::Postgres {
    fn push_in(q: &mut sqlx::QueryBuilder<'_, Self>, ids: Vec<i64>) {
        q.push(" = ANY(");
        q.push_bind(ids);
        q.push("::bigint[])");
    }
}

/// Implements every port for a store type with `reader()` and `writer()` pools.
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal, $lock:literal) => {
        $crate::store::outbox::impl_outbox_store!($store, $db, $lock);
        $crate::store::credentials::impl_credential_store!($store, $db);
        $crate::store::retention::impl_retention_store!($store, $db, $lock);
        $crate::store::tickets::impl_ticket_store!($store, $db);
        $crate::store::history::impl_history_store!($store, $db, $lock);
        $crate::store::notifications::impl_notification_store!($store, $db, $lock);

        #[async_trait::async_trait]
        impl tickethub_actors::ports::UserStore for $store {
            async fn create_user(
                &self,
                u: tickethub_actors::domain::NewUser,
            ) -> Result<tickethub_actors::domain::User, tickethub_actors::ports::StoreError> {
                let sql = format!(
                    "INSERT INTO users (username, display_name, email, whatsapp_number, role, \
                     is_superuser, is_active, password_hash, created_at, username_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {}",
                    $crate::store::USER_COLUMNS
                );
                sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .bind(&u.username)
                    .bind(&u.display_name)
                    .bind(&u.email)
                    .bind(&u.whatsapp_number)
                    .bind(u.role.as_str())
                    .bind(u.is_superuser)
                    .bind(true)
                    .bind(&u.password_hash)
                    .bind(chrono::Utc::now())
                    .bind($crate::store::username_key(&u.username))
                    .fetch_one(self.writer())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_user()
            }

            async fn user_by_id(
                &self,
                id: tickethub_actors::domain::UserId,
            ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                let sql = format!(
                    "SELECT {} FROM users WHERE id = $1",
                    $crate::store::USER_COLUMNS
                );
                sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .map($crate::store::UserRow::into_user)
                    .transpose()
            }

            async fn user_with_hash(
                &self,
                username: &str,
            ) -> Result<
                Option<(tickethub_actors::domain::User, String)>,
                tickethub_actors::ports::StoreError,
            > {
                let sql = format!(
                    "SELECT {}, password_hash FROM users WHERE username = $1",
                    $crate::store::USER_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(username)
                    .fetch_optional(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                let Some(row) = row else { return Ok(None) };
                use sqlx::{FromRow, Row};
                let hash: String = row
                    .try_get("password_hash")
                    .map_err($crate::store::backend_error)?;
                let user = $crate::store::UserRow::from_row(&row)
                    .map_err($crate::store::backend_error)?
                    .into_user()?;
                Ok(Some((user, hash)))
            }

            async fn list_users(
                &self,
            ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                let sql = format!(
                    "SELECT {} FROM users ORDER BY id",
                    $crate::store::USER_COLUMNS
                );
                sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_iter()
                    .map($crate::store::UserRow::into_user)
                    .collect()
            }

            async fn find_users(
                &self,
                query: tickethub_actors::ports::UserQuery,
                page: tickethub_actors::ports::Page,
            ) -> Result<
                (i64, Vec<tickethub_actors::domain::User>),
                tickethub_actors::ports::StoreError,
            > {
                fn conditions<'a>(
                    q: &mut sqlx::QueryBuilder<'a, $db>,
                    query: &'a tickethub_actors::ports::UserQuery,
                ) {
                    q.push(" WHERE 1 = 1");
                    if let Some(role) = query.role {
                        q.push(" AND role = ").push_bind(role.as_str());
                    }
                    if let Some(active) = query.active {
                        q.push(" AND is_active = ").push_bind(active);
                    }
                    if let Some(me) = query.visible_to {
                        q.push(" AND (id = ")
                            .push_bind(me.0)
                            .push(
                                " OR id IN (SELECT o.user_id FROM project_members m \
                                 JOIN project_members o ON o.project_id = m.project_id \
                                 WHERE m.user_id = ",
                            )
                            .push_bind(me.0)
                            .push("))");
                    }
                    if let Some(text) = &query.username_contains {
                        let escaped = text
                            .replace('\\', "\\\\")
                            .replace('%', "\\%")
                            .replace('_', "\\_");
                        q.push(" AND username LIKE ")
                            .push_bind(format!("%{escaped}%"))
                            .push(" ESCAPE '\\'");
                    }
                }
                let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM users");
                conditions(&mut count, &query);
                let (total,): (i64,) = count
                    .build_query_as()
                    .fetch_one(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM users",
                    $crate::store::USER_COLUMNS
                ));
                conditions(&mut q, &query);
                q.push(" ORDER BY id LIMIT ")
                    .push_bind(page.limit)
                    .push(" OFFSET ")
                    .push_bind(page.offset);
                let users = q
                    .build_query_as::<$crate::store::UserRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_iter()
                    .map($crate::store::UserRow::into_user)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((total, users))
            }

            async fn users_with_role(
                &self,
                role: tickethub_actors::domain::Role,
            ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                let sql = format!(
                    "SELECT {} FROM users WHERE role = $1 AND is_active = $2 ORDER BY id",
                    $crate::store::USER_COLUMNS
                );
                sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .bind(role.as_str())
                    .bind(true)
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_iter()
                    .map($crate::store::UserRow::into_user)
                    .collect()
            }

            async fn users_by_ids(
                &self,
                ids: &[tickethub_actors::domain::UserId],
            ) -> Result<Vec<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM users WHERE id",
                    $crate::store::USER_COLUMNS
                ));
                <$db as $crate::store::IdSet>::push_in(&mut q, ids.iter().map(|id| id.0).collect());
                q.push(" ORDER BY id");
                q.build_query_as::<$crate::store::UserRow>()
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?
                    .into_iter()
                    .map($crate::store::UserRow::into_user)
                    .collect()
            }

            async fn active_user_ids(
                &self,
                ids: &[tickethub_actors::domain::UserId],
            ) -> Result<Vec<tickethub_actors::domain::UserId>, tickethub_actors::ports::StoreError>
            {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q =
                    sqlx::QueryBuilder::<$db>::new("SELECT id FROM users WHERE is_active = ");
                q.push_bind(true).push(" AND id");
                <$db as $crate::store::IdSet>::push_in(&mut q, ids.iter().map(|id| id.0).collect());
                q.push(" ORDER BY id");
                let rows: Vec<(i64,)> = q
                    .build_query_as()
                    .fetch_all(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                Ok(rows
                    .into_iter()
                    .map(|(id,)| tickethub_actors::domain::UserId(id))
                    .collect())
            }

            async fn update_profile(
                &self,
                user: tickethub_actors::domain::UserId,
                changes: tickethub_actors::ports::ProfileChanges,
            ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE users SET id = id");
                if let Some(name) = &changes.display_name {
                    q.push(", display_name = ").push_bind(name.clone());
                }
                if let Some(email) = &changes.email {
                    q.push(", email = ").push_bind(email.clone());
                }
                if let Some(number) = &changes.whatsapp_number {
                    q.push(", whatsapp_number = ").push_bind(number.clone());
                }
                if let Some(role) = changes.role {
                    q.push(", role = ").push_bind(role.as_str());
                }
                if let Some(active) = changes.is_active {
                    q.push(", is_active = ").push_bind(active);
                }
                if let Some(hash) = &changes.password_hash {
                    q.push(", password_hash = ").push_bind(hash.clone());
                }
                // A new password, another role or a deactivation ends every token the user
                // holds: the hub's tokens carry the version they were issued under.
                q.push(", token_version = token_version + CASE WHEN ");
                match changes.role {
                    Some(role) => {
                        q.push("role <> ").push_bind(role.as_str());
                    }
                    None => {
                        q.push("1 = 0");
                    }
                }
                if changes.is_active == Some(false) {
                    q.push(" OR is_active = ").push_bind(true);
                }
                if changes.password_hash.is_some() {
                    q.push(" OR 1 = 1");
                }
                q.push(" THEN 1 ELSE 0 END");
                q.push(" WHERE id = ").push_bind(user.0);
                q.build()
                    .execute(self.writer())
                    .await
                    .map_err($crate::store::backend_error)?;
                let sql = format!(
                    "SELECT {} FROM users WHERE id = $1",
                    $crate::store::USER_COLUMNS
                );
                sqlx::query_as::<_, $crate::store::UserRow>(&sql)
                    .bind(user.0)
                    .fetch_optional(self.writer())
                    .await
                    .map_err($crate::store::backend_error)?
                    .map($crate::store::UserRow::into_user)
                    .transpose()
            }

            async fn erase_user(
                &self,
                user: tickethub_actors::domain::UserId,
            ) -> Result<Option<tickethub_actors::domain::User>, tickethub_actors::ports::StoreError>
            {
                let mut tx = self.writer().begin().await.map_err($crate::store::backend_error)?;
                let found = sqlx::query_as::<_, $crate::store::UserRow>(&format!(
                    "SELECT {} FROM users WHERE id = $1",
                    $crate::store::USER_COLUMNS
                ))
                .bind(user.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                let Some(found) = found.map($crate::store::UserRow::into_user).transpose()? else {
                    return Ok(None);
                };
                let erased_name = $crate::store::ERASED_NAME;
                // Other people's notifications that open with this person's name (the actor of
                // the event: "Alice approved ticket …") are reworded; the sign-up notices about
                // them lose their data.
                for name in [found.name().to_owned(), found.username.clone()] {
                    sqlx::query(
                        "UPDATE notifications SET \
                         message = $1 || SUBSTR(message, LENGTH($2) + 1) \
                         WHERE user_id <> $3 AND SUBSTR(message, 1, LENGTH($2)) = $2 AND \
                         (actor_id = $3 OR event_id IN (SELECT id FROM ticket_events WHERE actor_id = $3))",
                    )
                    .bind(erased_name)
                    .bind(&name)
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                }
                sqlx::query(
                    "UPDATE notifications SET data = '{}', \
                     message = 'A new client has registered (since erased).' \
                     WHERE actor_id = $1 AND notification_type = 'user_registered'",
                )
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                for table in [
                    "notifications",
                    "preferences",
                    "refresh_tokens",
                    "identity_links",
                    "stream_events",
                    "project_members",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                        .bind(user.0)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                }
                let key = format!("erased-{}", user.0);
                let row = sqlx::query_as::<_, $crate::store::UserRow>(&format!(
                    "UPDATE users SET username = $1, username_key = $1, display_name = $2, \
                     email = NULL, whatsapp_number = NULL, password_hash = '!', \
                     is_active = $3, is_superuser = $3, token_version = token_version + 1, \
                     erased_at = $4 WHERE id = $5 RETURNING {}",
                    $crate::store::USER_COLUMNS
                ))
                .bind(&key)
                .bind(erased_name)
                .bind(false)
                .bind(chrono::Utc::now())
                .bind(user.0)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                tx.commit().await.map_err($crate::store::backend_error)?;
                row.into_user().map(Some)
            }

            async fn notification_cursor(
                &self,
                user: tickethub_actors::domain::UserId,
            ) -> Result<
                tickethub_actors::ports::NotificationCursor,
                tickethub_actors::ports::StoreError,
            > {
                let row: Option<(i64, i64, i64)> =
                    sqlx::query_as("SELECT last_seq, acked_seq, sent_seq FROM users WHERE id = $1")
                        .bind(user.0)
                        .fetch_optional(self.reader())
                        .await
                        .map_err($crate::store::backend_error)?;
                let (last_seq, acked_seq, sent_seq) = row.ok_or_else(|| {
                    tickethub_actors::ports::StoreError::NotFound(format!("user {user}"))
                })?;
                Ok(tickethub_actors::ports::NotificationCursor {
                    last_seq,
                    acked_seq,
                    sent_seq,
                })
            }

            async fn last_seqs(
                &self,
                users: &[tickethub_actors::domain::UserId],
            ) -> Result<
                Vec<(tickethub_actors::domain::UserId, i64)>,
                tickethub_actors::ports::StoreError,
            > {
                let mut out = Vec::with_capacity(users.len());
                // One query per thousand users, however many are connected.
                for chunk in users.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, last_seq FROM users WHERE id IN (",
                    );
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(id.0);
                    }
                    q.push(")");
                    let rows: Vec<(i64, i64)> = q
                        .build_query_as()
                        .fetch_all(self.reader())
                        .await
                        .map_err($crate::store::backend_error)?;
                    out.extend(
                        rows.into_iter()
                            .map(|(id, seq)| (tickethub_actors::domain::UserId(id), seq)),
                    );
                }
                Ok(out)
            }
        }

        #[async_trait::async_trait]
        impl tickethub_actors::ports::ProjectStore for $store {
            async fn create_project(
                &self,
                key: &str,
                name: &str,
                members: &[tickethub_actors::domain::UserId],
            ) -> Result<tickethub_actors::domain::Project, tickethub_actors::ports::StoreError>
            {
                let mut tx = self
                    .writer()
                    .begin()
                    .await
                    .map_err($crate::store::backend_error)?;
                let row = sqlx::query_as::<_, $crate::store::ProjectRow>(
                    "INSERT INTO projects (key, name, created_at) VALUES ($1, $2, $3) \
                     RETURNING id, key, name, created_at",
                )
                .bind(key)
                .bind(name)
                .bind(chrono::Utc::now())
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::backend_error)?;
                let mut ids: Vec<_> = members.to_vec();
                ids.sort();
                ids.dedup();
                for m in &ids {
                    sqlx::query(
                        "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)",
                    )
                    .bind(row.id)
                    .bind(m.0)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::backend_error)?;
                }
                tx.commit().await.map_err($crate::store::backend_error)?;
                Ok(row.into_project(ids))
            }

            async fn project_by_id(
                &self,
                id: tickethub_actors::domain::ProjectId,
            ) -> Result<
                Option<tickethub_actors::domain::Project>,
                tickethub_actors::ports::StoreError,
            > {
                let row = sqlx::query_as::<_, $crate::store::ProjectRow>(
                    "SELECT id, key, name, created_at FROM projects WHERE id = $1",
                )
                .bind(id.0)
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::backend_error)?;
                self.with_members(row).await
            }

            async fn membership(
                &self,
                id: tickethub_actors::domain::ProjectId,
                user: tickethub_actors::domain::UserId,
            ) -> Result<Option<bool>, tickethub_actors::ports::StoreError> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT p.id, (SELECT COUNT(*) FROM project_members m \
                     WHERE m.project_id = p.id AND m.user_id = $2) \
                     FROM projects p WHERE p.id = $1",
                )
                .bind(id.0)
                .bind(user.0)
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::backend_error)?;
                Ok(row.map(|(_, n)| n > 0))
            }

            async fn project_by_key(
                &self,
                key: &str,
            ) -> Result<
                Option<tickethub_actors::domain::Project>,
                tickethub_actors::ports::StoreError,
            > {
                let row = sqlx::query_as::<_, $crate::store::ProjectRow>(
                    "SELECT id, key, name, created_at FROM projects WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(self.reader())
                .await
                .map_err($crate::store::backend_error)?;
                self.with_members(row).await
            }

            async fn list_projects(
                &self,
                member: Option<tickethub_actors::domain::UserId>,
            ) -> Result<Vec<tickethub_actors::domain::Project>, tickethub_actors::ports::StoreError>
            {
                let rows = match member {
                    None => {
                        sqlx::query_as::<_, $crate::store::ProjectRow>(
                            "SELECT id, key, name, created_at FROM projects ORDER BY id",
                        )
                        .fetch_all(self.reader())
                        .await
                    }
                    Some(user) => {
                        sqlx::query_as::<_, $crate::store::ProjectRow>(
                            "SELECT p.id, p.key, p.name, p.created_at FROM projects p \
                         JOIN project_members m ON m.project_id = p.id \
                         WHERE m.user_id = $1 ORDER BY p.id",
                        )
                        .bind(user.0)
                        .fetch_all(self.reader())
                        .await
                    }
                }
                .map_err($crate::store::backend_error)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let members = self.members_of(row.id).await?;
                    out.push(row.into_project(members));
                }
                Ok(out)
            }

            async fn add_members(
                &self,
                project: tickethub_actors::domain::ProjectId,
                members: &[tickethub_actors::domain::UserId],
            ) -> Result<(), tickethub_actors::ports::StoreError> {
                self.for_each_member(
                    "INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    project,
                    members,
                )
                .await
            }

            async fn remove_members(
                &self,
                project: tickethub_actors::domain::ProjectId,
                members: &[tickethub_actors::domain::UserId],
            ) -> Result<(), tickethub_actors::ports::StoreError> {
                self.for_each_member(
                    "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
                    project,
                    members,
                )
                .await
            }

            async fn rename_project(
                &self,
                project: tickethub_actors::domain::ProjectId,
                name: &str,
            ) -> Result<(), tickethub_actors::ports::StoreError> {
                sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(project.0)
                    .execute(self.writer())
                    .await
                    .map_err($crate::store::backend_error)?;
                Ok(())
            }
        }

        impl $store {
            /// Runs `sql` (`$1` the project, `$2` a member) for each member, in one transaction.
            async fn for_each_member(
                &self,
                sql: &'static str,
                project: tickethub_actors::domain::ProjectId,
                members: &[tickethub_actors::domain::UserId],
            ) -> Result<(), tickethub_actors::ports::StoreError> {
                let mut tx = self
                    .writer()
                    .begin()
                    .await
                    .map_err($crate::store::backend_error)?;
                for m in members {
                    sqlx::query(sql)
                        .bind(project.0)
                        .bind(m.0)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::backend_error)?;
                }
                tx.commit().await.map_err($crate::store::backend_error)?;
                Ok(())
            }

            /// A project row with its members, if there is a row.
            async fn with_members(
                &self,
                row: Option<$crate::store::ProjectRow>,
            ) -> Result<
                Option<tickethub_actors::domain::Project>,
                tickethub_actors::ports::StoreError,
            > {
                match row {
                    Some(row) => {
                        let members = self.members_of(row.id).await?;
                        Ok(Some(row.into_project(members)))
                    }
                    None => Ok(None),
                }
            }

            async fn members_of(
                &self,
                project: i64,
            ) -> Result<Vec<tickethub_actors::domain::UserId>, tickethub_actors::ports::StoreError>
            {
                let ids: Vec<(i64,)> = sqlx::query_as(
                    "SELECT user_id FROM project_members WHERE project_id = $1 ORDER BY user_id",
                )
                .bind(project)
                .fetch_all(self.reader())
                .await
                .map_err($crate::store::backend_error)?;
                Ok(ids
                    .into_iter()
                    .map(|(id,)| tickethub_actors::domain::UserId(id))
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl tickethub_actors::ports::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> Result<(), tickethub_actors::ports::StoreError> {
                sqlx::query("SELECT 1")
                    .execute(self.reader())
                    .await
                    .map_err($crate::store::backend_error)?;
                Ok(())
            }

            fn faults(&self) -> &tickethub_actors::ports::StoreFaults {
                &self.faults
            }

            async fn close(&self) {
                self.writer().close().await;
                self.reader().close().await;
            }
        }
    };
}
pub(crate) use impl_store;

/// Checks that `Store` stays object-safe.
#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Store) {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Queues a call as `commit_notifications` does, without waiting for its answer.
    fn call(
        queue: &CommitQueue,
    ) -> tokio::sync::oneshot::Receiver<
        Result<Vec<tickethub_actors::notification::Notification>, StoreError>,
    > {
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .0
            .send((Vec::new(), reply))
            .expect("the committer runs");
        answer
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
