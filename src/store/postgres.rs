//! The PostgreSQL store: the production backend, shared by every node of a cluster.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::db::Pool;
use super::{ConnectError, SqlStore};

mod held;

pub(crate) use held::Held;

/// What only the PostgreSQL store has.
#[derive(Debug)]
pub(crate) struct Own {
    /// Connections outside the pool for a connect's read (none with a small pool).
    pub(crate) held: Option<held::Held>,
    /// The group committers' held connections (none with a small pool).
    pub(crate) committer: Option<Arc<held::Held>>,
    /// The database's clock, as this node reads it.
    pub(crate) clock: Arc<Clock>,
    /// The task that measures it, stopped with the store.
    measuring: tokio::task::AbortHandle,
}

impl Drop for Own {
    fn drop(&mut self) {
        self.measuring.abort();
    }
}

/// The database's clock, which the nodes of a cluster share, as this node reads it: a
/// reading of it, carried forward by the local monotonic clock and taken again every second.
/// A node's own wall clock may be set wrong, or jump, and a jump counts for nothing here, not
/// even for the moment until the next reading. Leases and due times are compared in SQL by
/// the database's clock itself; this is for what the node decides on its own (how long to
/// wait for the next due row, when a failed delivery is tried again, how late a send fired).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// The last reading: the database's time, and the local monotonic instant it was at.
    read: std::sync::RwLock<Option<(std::time::Instant, DateTime<Utc>)>>,
}

impl Clock {
    /// The time by the database's clock, carried forward from the last reading (the local
    /// clock's, before the first).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let read = *self.read.read().unwrap_or_else(|e| e.into_inner());
        match read {
            Some((at, database)) => {
                database + chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
            }
            None => Utc::now(),
        }
    }

    /// Reads the database's clock every second until the pool closes.
    async fn measure(self: Arc<Self>, pool: Pool) {
        loop {
            let before = std::time::Instant::now();
            let read: Result<(DateTime<Utc>,), _> =
                super::db::query_as("SELECT statement_timestamp()")
                    .fetch_one(&pool)
                    .await;
            match read {
                Ok((database,)) => {
                    // Read halfway through the round trip, as near as can be told.
                    let at = before + before.elapsed() / 2;
                    *self.read.write().unwrap_or_else(|e| e.into_inner()) = Some((at, database));
                }
                Err(sqlx::Error::PoolClosed) => return,
                // Read again at the next turn; the last reading stands meanwhile.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Connections held outside the pool for the connect's read, out of `--db-max-connections`
/// when it is at least `HELD_FROM`.
const HELD: u32 = 2;
const HELD_FROM: u32 = 6;

/// The group committers, each with a connection held outside the pool, out of
/// `--db-max-connections` when it is at least `HELD_COMMITS_FROM`.
const COMMITTERS: u32 = 2;
const HELD_COMMITS_FROM: u32 = 8;

/// A pooled connection used this recently is handed out without a test.
const RECENTLY_USED: Duration = Duration::from_secs(1);

/// The options of every connection the hub opens to the server at `url`.
///
/// Generic plans: the hub's statements are prepared once per connection and their text never
/// carries a value, so planning each execution again for its values (the server's default for
/// a statement's first runs, and for good when its values change the estimates, as an array's
/// length does) only costs the server CPU. A group commit's statement is planned once instead
/// of on every call.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_generic_plan")]))
}

/// Connects and runs the migrations; a call waits at most `acquire_timeout` for a
/// connection.
pub async fn connect(url: &str, store: super::StoreOptions) -> Result<SqlStore, ConnectError> {
    let acquire_timeout = store.acquire_timeout;
    let options = connect_options(url)?;
    let held = if store.max_connections >= HELD_FROM {
        HELD
    } else {
        0
    };
    let held_commits = if store.max_connections >= HELD_COMMITS_FROM {
        COMMITTERS
    } else {
        0
    };
    // A connection idle for a while is tested before it is handed out (a database restart
    // breaks it); one used within the last second is not, which saves every busy query a
    // round trip to the server.
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= RECENTLY_USED {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_connections((store.max_connections - held - held_commits).max(2))
        .acquire_timeout(acquire_timeout)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    let pool = Pool::Postgres(pool);
    super::backfill_username_keys(&pool).await?;
    // Two committers. Each group costs the server a statement's fixed work (its executor's
    // start, its commit), so fewer and larger groups cost it less: the first committer alone
    // takes the calls of a steady load, in groups as large as what waited while it committed
    // the last one (at 5,000 calls/s the server's CPU 13 % lower, the hub's 9 %, than with
    // both taking every call); the second helps only while more waits than one group takes,
    // so that a large announcement's parts are committed side by side (one committer alone
    // delivered a fan-out to 10,000 0.74 times as fast). A group's one statement runs on a
    // connection held for the committers: through the pool, each would cost the hub and the
    // server a second round trip, the ping of its connection's release.
    let faults = std::sync::Arc::<tickethub_actors::ports::StoreFaults>::default();
    let committer = super::Committer {
        pool: pool.clone(),
        lane: None,
        held: (held_commits > 0).then(|| {
            Arc::new(held::Held::new(
                options.clone(),
                held::COMMITS,
                held_commits as usize,
                acquire_timeout,
            ))
        }),
    };
    let commits = SqlStore::group_committer(committer.clone(), COMMITTERS as usize, faults.clone());
    let clock = Arc::new(Clock::default());
    let measuring = tokio::spawn(clock.clone().measure(pool.clone())).abort_handle();
    Ok(SqlStore {
        kind: super::db::Kind::Postgres,
        writer: pool.clone(),
        reader: pool,
        commits,
        faults,
        purge_bounds: Default::default(),
        users: std::sync::Arc::new(tickethub_actors::ports::UserCache::new(store.user_cache)),
        own: super::Own::Postgres(std::sync::Arc::new(Own {
            held: (held > 0)
                .then(|| held::Held::new(options, held::READS, held as usize, acquire_timeout)),
            committer: committer.held,
            clock,
            measuring,
        })),
    })
}

/// The recipients, their seqs' offsets below the bumped `last_seq`, the content, and the
/// deliveries of a group commit bound as arrays ($1, $2: each recipient and its count; $3, $4:
/// each draft's recipient and offset; $5: the time; then the content; then the deliveries), so
/// that the statement's text is the same for every group and stays prepared.
const ONE_STATEMENT: &str = "\
WITH locked AS (SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE), \
bumped AS (UPDATE users SET last_seq = users.last_seq + c.n \
    FROM locked JOIN UNNEST($1::bigint[], $2::bigint[]) AS c(user_id, n) ON c.user_id = locked.id \
    WHERE users.id = locked.id RETURNING users.id, users.last_seq), \
drafts AS ({drafts}), \
inserted AS ({insert_notifications}\
    SELECT d.user_id, bumped.last_seq - d.k, d.notification_type, d.title, d.message, d.ticket_id, \
    d.data, d.action_url, FALSE, $5, NULL, d.action, d.actor_id \
    FROM drafts d LEFT JOIN bumped ON bumped.id = d.user_id RETURNING id, user_id, seq), \
queued AS ({insert_deliveries}\
    SELECT inserted.id, x.channel, x.address, x.recipients, 'QUEUED', 0, $5, $5, $5 \
    FROM UNNEST({deliveries}) AS x(user_id, k, channel, address, recipients) \
    JOIN bumped ON bumped.id = x.user_id \
    JOIN inserted ON inserted.user_id = x.user_id AND inserted.seq = bumped.last_seq - x.k) \
SELECT id, user_id, seq FROM inserted";

/// The statement for drafts that share their content (bound once) and for drafts that do not
/// (one array per column).
static ONE_STATEMENT_SHARED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ONE_STATEMENT
        .replace(
            "{insert_notifications}",
            super::notifications::INSERT_NOTIFICATIONS,
        )
        .replace(
            "{insert_deliveries}",
            super::notifications::INSERT_DELIVERIES,
        )
        .replace(
            "{drafts}",
            "SELECT r.user_id, r.k, $6::text AS notification_type, $7::text AS title, \
             $8::text AS message, $9::bigint AS ticket_id, $10::text AS data, \
             $11::text AS action_url, $12::text AS action, $13::bigint AS actor_id \
             FROM UNNEST($3::bigint[], $4::bigint[]) AS r(user_id, k)",
        )
        .replace(
            "{deliveries}",
            "$14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::text[]",
        )
});
static ONE_STATEMENT_EACH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    ONE_STATEMENT
        .replace(
            "{insert_notifications}",
            super::notifications::INSERT_NOTIFICATIONS,
        )
        .replace(
            "{insert_deliveries}",
            super::notifications::INSERT_DELIVERIES,
        )
        .replace(
            "{drafts}",
            "SELECT * FROM UNNEST($3::bigint[], $4::bigint[], $6::text[], $7::text[], \
             $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::bigint[]) \
             AS r(user_id, k, notification_type, title, message, ticket_id, data, action_url, \
             action, actor_id)",
        )
        .replace(
            "{deliveries}",
            "$14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::text[]",
        )
});

/// Commits a group that stores only notifications and their deliveries as one statement,
/// outside any explicit transaction (a statement is its own): one round trip instead of
/// `BEGIN`, the lock, the bump, the inserts and `COMMIT`. The recipients' rows are locked
/// in id order (`FOR NO KEY UPDATE` under `ORDER BY`, as the statement-by-statement path
/// does), so concurrent groups cannot deadlock; a recipient that does not exist leaves its
/// seq NULL, which NOT NULL refuses, and the statement applies nothing.
///
/// The statement runs on one of `held`'s connections, or through the pool when none is free.
pub(crate) async fn commit_at_once(
    pool: &PgPool,
    held: Option<&held::Held>,
    drafts: Vec<tickethub_actors::notification::Draft>,
    now: chrono::DateTime<chrono::Utc>,
) -> (
    Vec<tickethub_actors::notification::Draft>,
    Result<Vec<(i64, i64)>, super::notifications::CommitFailure>,
) {
    let taken = match held {
        Some(held) => held.take().await,
        None => None,
    };
    let applied = match taken {
        Some(mut taken) => {
            let (applied, usable) = commit_one_statement(taken.conn(), &drafts, now).await;
            // A connection the server refused a statement on is kept; one that broke, or that
            // the server is closing, is closed, and the next group opens a fresh one.
            if usable {
                taken.keep();
            }
            applied
        }
        None => commit_one_statement(pool, &drafts, now).await.0,
    };
    (drafts, applied)
}

/// Whether a connection is fit for the next statement after this one failed on it: the server
/// refused the statement and goes on serving the connection (an `ERROR`, not a `FATAL`), or the
/// statement was never sent.
fn still_usable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|e| e.severity() == sqlx::postgres::PgSeverity::Error),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

async fn commit_one_statement<'c>(
    on: impl sqlx::PgExecutor<'c>,
    drafts: &[tickethub_actors::notification::Draft],
    now: chrono::DateTime<chrono::Utc>,
) -> (
    Result<Vec<(i64, i64)>, super::notifications::CommitFailure>,
    bool,
) {
    use super::notifications::CommitFailure;
    let (counts, back) = super::notifications::seq_plan(drafts);
    let (users, ns): (Vec<i64>, Vec<i64>) = counts.into_iter().unzip();
    let recipients: Vec<i64> = drafts.iter().map(|d| d.recipient.0).collect();
    let first = &drafts[0];
    let shared = drafts
        .iter()
        .all(|d| super::notifications::same_content(d, first));
    let action = |d: &tickethub_actors::notification::Draft| {
        (!d.cause.action.is_empty()).then_some(d.cause.action)
    };
    let mut q = sqlx::query_as::<_, (i64, i64, i64)>(if shared {
        ONE_STATEMENT_SHARED.as_str()
    } else {
        ONE_STATEMENT_EACH.as_str()
    })
    .bind(users)
    .bind(ns)
    .bind(recipients)
    .bind(&back)
    .bind(now);
    q = if shared {
        q.bind(first.notification_type.as_str())
            .bind(first.title.as_str())
            .bind(first.message.as_str())
            .bind(first.ticket.as_ref().map(|t| t.id.0))
            .bind(first.data.as_str())
            .bind(first.action_url.as_deref())
            .bind(action(first))
            .bind(first.cause.actor.map(|a| a.0))
    } else {
        q.bind(
            drafts
                .iter()
                .map(|d| d.notification_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(drafts.iter().map(|d| d.title.as_str()).collect::<Vec<_>>())
        .bind(
            drafts
                .iter()
                .map(|d| d.message.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            drafts
                .iter()
                .map(|d| d.ticket.as_ref().map(|t| t.id.0))
                .collect::<Vec<_>>(),
        )
        .bind(drafts.iter().map(|d| d.data.as_str()).collect::<Vec<_>>())
        .bind(
            drafts
                .iter()
                .map(|d| d.action_url.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(drafts.iter().map(action).collect::<Vec<_>>())
        .bind(
            drafts
                .iter()
                .map(|d| d.cause.actor.map(|a| a.0))
                .collect::<Vec<_>>(),
        )
    };
    let mut x_users = Vec::new();
    let mut x_back = Vec::new();
    let mut x_channels = Vec::new();
    let mut x_addresses = Vec::new();
    let mut x_recipients = Vec::new();
    for (d, k) in drafts.iter().zip(&back) {
        for (channel, address) in &d.deliveries {
            x_users.push(d.recipient.0);
            x_back.push(*k);
            x_channels.push(channel.as_str());
            x_addresses.push(address.as_str());
            x_recipients.push(super::notifications::recipients_json(d, *channel));
        }
    }
    let rows = q
        .bind(x_users)
        .bind(x_back)
        .bind(x_channels)
        .bind(x_addresses)
        .bind(x_recipients)
        .fetch_all(on)
        .await;
    match rows {
        Ok(rows) => (super::notifications::placement(drafts, &back, rows), true),
        Err(e) => {
            let usable = still_usable(&e);
            let failure = match e {
                // The server refused the statement, or it never reached the server: nothing
                // applied.
                sqlx::Error::Database(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Encode(_) => CommitFailure::NotApplied(super::backend_error(e)),
                // The connection broke on the way: it may have applied.
                e => CommitFailure::Unknown(super::backend_error(e)),
            };
            (Err(failure), usable)
        }
    }
}
