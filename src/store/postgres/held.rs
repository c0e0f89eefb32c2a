//! Connections held outside the pool for the one read every socket's connect makes: its user
//! and notification cursor, by primary key. sqlx tests each connection the pool takes back
//! with a round trip to the server (a ping on release, which no option turns off); a read on
//! a held connection costs its own round trip only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::Connection;

/// How the held connections name themselves to the server (`pg_stat_activity`).
pub(crate) const APPLICATION_NAME: &str = "tickethub held reads";

/// After a held connection fails to open, reads go through the pool for this long.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A few connections, each used by one read at a time. When all are busy, or one fails, the
/// read goes through the pool instead, which tests and reopens its own; a connection whose
/// read fails is dropped (a database restart breaks every held connection, and the next reads
/// open new ones).
#[derive(Debug)]
pub(crate) struct HeldReads {
    options: PgConnectOptions,
    /// The longest an opening waits.
    open_timeout: Duration,
    state: Mutex<Held>,
    permits: tokio::sync::Semaphore,
}

#[derive(Debug, Default)]
struct Held {
    idle: Vec<PgConnection>,
    /// No connection is opened before then (the last opening failed).
    closed_until: Option<Instant>,
}

impl HeldReads {
    /// Up to `count` connections, opened when first needed, each within `open_timeout`.
    pub(crate) fn new(options: PgConnectOptions, count: usize, open_timeout: Duration) -> Self {
        Self {
            options: options.application_name(APPLICATION_NAME),
            open_timeout,
            state: Mutex::default(),
            permits: tokio::sync::Semaphore::new(count),
        }
    }

    /// The row `sql` finds for `id` (its only parameter), read on a held connection; `None`
    /// when no held connection could read it, and the caller reads through the pool.
    pub(crate) async fn row(&self, sql: &str, id: i64) -> Option<Option<PgRow>> {
        let _permit = self.permits.try_acquire().ok()?;
        let held = {
            let mut state = self.state.lock().expect("held reads");
            match state.idle.pop() {
                Some(conn) => Some(conn),
                None if state.closed_until.is_some_and(|t| Instant::now() < t) => return None,
                None => None,
            }
        };
        let mut conn = match held {
            Some(conn) => conn,
            None => match self.open().await {
                Some(conn) => conn,
                None => {
                    self.state.lock().expect("held reads").closed_until =
                        Some(Instant::now() + REOPEN_AFTER);
                    return None;
                }
            },
        };
        // Dropped midway (the caller went away), the connection is closed with the future.
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&mut conn)
            .await
            .ok()?;
        self.state.lock().expect("held reads").idle.push(conn);
        Some(row)
    }

    /// Closes the idle connections; reads from now on go through the pool.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut self.state.lock().expect("held reads").idle);
        for conn in idle {
            let _ = conn.close().await;
        }
    }

    async fn open(&self) -> Option<PgConnection> {
        tokio::time::timeout(self.open_timeout, PgConnection::connect_with(&self.options))
            .await
            .ok()?
            .ok()
    }
}
