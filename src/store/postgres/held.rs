//! Connections held outside the pool, for the statements every busy hub runs most: the read
//! each socket's connect makes (its user and notification cursor, by primary key) and a group
//! commit's one statement. sqlx tests each connection the pool takes back with a round trip to
//! the server (a ping on release, which no option turns off); a statement on a held connection
//! costs its own round trip only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::Connection;

/// How the held connections for reads name themselves to the server (`pg_stat_activity`).
pub(crate) const READS: &str = "tickethub held reads";

/// How the held connections for group commits name themselves to the server.
pub(crate) const COMMITS: &str = "tickethub held commits";

/// After a held connection fails to open, statements go through the pool for this long.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A few connections, each used by one statement at a time. When all are busy, or one fails
/// to open, the statement goes through the pool instead, which tests and reopens its own; a
/// connection whose statement fails is dropped unless its user keeps it (a database restart
/// breaks every held connection, and the next statements open new ones). As in the pool, a connection idle for
/// a second or more is tested before it is used, so that a restart is noticed before a
/// statement is sent rather than by it.
#[derive(Debug)]
pub(crate) struct Held {
    options: PgConnectOptions,
    /// The longest an opening waits.
    open_timeout: Duration,
    state: Mutex<Idle>,
    permits: tokio::sync::Semaphore,
}

#[derive(Debug, Default)]
struct Idle {
    /// Each with when it was given back.
    idle: Vec<(PgConnection, Instant)>,
    /// No connection is opened before then (the last opening failed).
    closed_until: Option<Instant>,
}

impl Held {
    /// Up to `count` connections, named `name` to the server, opened when first needed, each
    /// within `open_timeout`.
    pub(crate) fn new(
        options: PgConnectOptions,
        name: &str,
        count: usize,
        open_timeout: Duration,
    ) -> Self {
        Self {
            options: options.application_name(name),
            open_timeout,
            state: Mutex::default(),
            permits: tokio::sync::Semaphore::new(count),
        }
    }

    /// A held connection for one statement; `None` when all are busy or none could be opened
    /// (the caller goes through the pool).
    pub(crate) async fn take(&self) -> Option<Taken<'_>> {
        let permit = self.permits.try_acquire().ok()?;
        let idle = {
            let mut state = self.state.lock().expect("held connections");
            match state.idle.pop() {
                Some(conn) => Some(conn),
                None if state.closed_until.is_some_and(|t| Instant::now() < t) => return None,
                None => None,
            }
        };
        let idle = match idle {
            Some((mut conn, since)) if since.elapsed() >= super::RECENTLY_USED => {
                // A failed test drops the connection, and a new one is opened.
                let tested = tokio::time::timeout(self.open_timeout, conn.ping()).await;
                matches!(tested, Ok(Ok(()))).then_some(conn)
            }
            Some((conn, _)) => Some(conn),
            None => None,
        };
        let conn = match idle {
            Some(conn) => conn,
            None => match self.open().await {
                Some(conn) => conn,
                None => {
                    self.state.lock().expect("held connections").closed_until =
                        Some(Instant::now() + REOPEN_AFTER);
                    return None;
                }
            },
        };
        Some(Taken {
            held: self,
            conn,
            _permit: permit,
        })
    }

    /// The row `sql` finds for `id` (its only parameter), read on a held connection; `None`
    /// when no held connection could read it, and the caller reads through the pool.
    pub(crate) async fn row(&self, sql: &str, id: i64) -> Option<Option<PgRow>> {
        let mut taken = self.take().await?;
        // Dropped midway (the caller went away), the connection is closed with the future.
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(taken.conn())
            .await
            .ok()?;
        taken.keep();
        Some(row)
    }

    /// Closes the idle connections; statements from now on go through the pool.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut self.state.lock().expect("held connections").idle);
        for (conn, _) in idle {
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

/// A held connection taken for one statement: given back by [`Taken::keep`] once the statement
/// has run to its end, closed when dropped (the statement failed, or was dropped midway and left
/// the connection in the middle of an exchange).
pub(crate) struct Taken<'a> {
    held: &'a Held,
    conn: PgConnection,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Taken<'_> {
    /// The connection, to run the statement on.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Gives the connection back for the next statement.
    pub(crate) fn keep(self) {
        self.held
            .state
            .lock()
            .expect("held connections")
            .idle
            .push((self.conn, Instant::now()));
    }
}
