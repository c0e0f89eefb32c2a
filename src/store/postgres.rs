//! The PostgreSQL store: the production backend, shared by every node of a cluster.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{impl_store, ConnectError};

/// The PostgreSQL implementation of the ports.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    commits: super::CommitQueue,
    faults: std::sync::Arc<tickethub_actors::ports::StoreFaults>,
    /// The bounds of the purge's running sweep.
    purge_bounds: std::sync::Arc<super::retention::PurgeBounds>,
    /// Active users, kept between requests.
    users: std::sync::Arc<tickethub_actors::ports::UserCache>,
}

/// A pooled connection used this recently is handed out without a test.
const RECENTLY_USED: Duration = Duration::from_secs(1);

impl PgStore {
    /// Connects and runs the migrations; a call waits at most `acquire_timeout` for a
    /// connection.
    pub async fn connect(url: &str, store: super::StoreOptions) -> Result<Self, ConnectError> {
        let acquire_timeout = store.acquire_timeout;
        let options = PgConnectOptions::from_str(url)?;
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
            .max_connections(16)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        super::backfill_username_keys(&pool).await?;
        // A few committers: one gathers the next group while others commit theirs.
        let faults = std::sync::Arc::<tickethub_actors::ports::StoreFaults>::default();
        let commits = Self::group_committer(pool.clone(), 4, faults.clone());
        Ok(Self {
            pool,
            commits,
            faults,
            purge_bounds: Default::default(),
            users: std::sync::Arc::new(tickethub_actors::ports::UserCache::new(store.user_cache)),
        })
    }

    fn users(&self) -> &tickethub_actors::ports::UserCache {
        &self.users
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

impl_store!(
    PgStore,
    sqlx::Postgres,
    "postgres",
    "FOR UPDATE SKIP LOCKED"
);
