//! The SQLite store's own tests: its writer thread, its gate, its inline reader.

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

/// A store on a file, a user of it, and the handle to its writer thread.
async fn with_writer_thread(
    name: &str,
) -> (
    tempfile::TempDir,
    SqlStore,
    tickethub_actors::domain::User,
    std::sync::Arc<writer::DirectWriter>,
) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let user = s.create_user(new_user(name)).await.unwrap();
    let super::super::Own::Sqlite(own) = &s.own else {
        unreachable!("a SQLite store")
    };
    let direct = own.lane.clone().expect("a writer thread");
    (dir, s, user, direct)
}

/// The writer thread writes only in its turn at the writers' gate: a report of what was
/// sent waits while the writer pool's connection is taken, and is written once it is given
/// back.
#[tokio::test]
async fn the_writer_thread_waits_for_the_writer_connection() {
    let (_dir, s, user, direct) = with_writer_thread("di").await;
    let held = s.writer().acquire().await.unwrap();
    let mut report = tokio::spawn(async move { direct.record_sent(vec![(user.id.0, 5)]).await });
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

/// The reverse: while the writer thread writes, the writer pool's transactions wait.
#[tokio::test]
async fn the_writer_pool_waits_for_the_writer_thread() {
    let (_dir, s, user, direct) = with_writer_thread("dj").await;
    let (writing, started) = tokio::sync::oneshot::channel();
    let (finish, release) = std::sync::mpsc::channel::<()>();
    let job = tokio::spawn(async move {
        direct
            .run(move |conn| {
                let tx = conn.transaction().map_err(thread_error)?;
                tx.execute(
                    "UPDATE users SET display_name = 'thread' WHERE id = ?1",
                    [user.id.0],
                )
                .map_err(thread_error)?;
                let _ = writing.send(());
                let _ = release.recv();
                tx.commit().map_err(thread_error)
            })
            .await
    });
    started.await.expect("the thread writes");
    let writer = s.writer().clone();
    let mut begun = tokio::spawn(async move { writer.begin().await.map(drop) });
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut begun)
            .await
            .is_err(),
        "the transaction waits for the thread's turn"
    );
    finish.send(()).unwrap();
    job.await.unwrap().expect("the thread runs").unwrap();
    begun.await.unwrap().expect("begun once the thread is done");
    s.close().await;
}

/// A transaction dropped before its commit keeps its turn until it is rolled back: the next
/// writer, here the writer thread with no busy timeout, never meets its lock, even when the
/// transaction is dropped in the middle of a long statement, which its rollback waits for.
#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_within_its_turn() {
    let (_dir, s, user, direct) = with_writer_thread("dk").await;
    let mut tx = s.writer().begin().await.unwrap();
    crate::store::db::query("UPDATE users SET display_name = 'dropped' WHERE id = $1")
        .bind(user.id.0)
        .execute(&mut tx)
        .await
        .unwrap();
    let long = crate::store::db::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) \
         SELECT count(*) FROM c",
    );
    let cut = tokio::time::timeout(Duration::from_millis(20), long.fetch_one(&mut tx)).await;
    assert!(cut.is_err(), "the statement outlasts its timeout");
    drop(tx);
    let written = direct
        .run(move |conn| {
            conn.busy_timeout(Duration::ZERO).map_err(thread_error)?;
            let written = conn.execute(
                "UPDATE users SET display_name = 'thread' WHERE id = ?1",
                [user.id.0],
            );
            conn.busy_timeout(Duration::from_secs(10))
                .map_err(thread_error)?;
            written.map_err(thread_error)
        })
        .await
        .expect("the thread runs");
    assert_eq!(written.expect("the lock was given up before the turn"), 1);
    let name = crate::store::db::query("SELECT display_name FROM users WHERE id = $1")
        .bind(user.id.0)
        .fetch_one(s.reader())
        .await
        .unwrap();
    assert_eq!(name.try_get::<String, _>(0).unwrap(), "thread");
    s.close().await;
}

fn thread_error(e: rusqlite::Error) -> tickethub_actors::ports::StoreError {
    tickethub_actors::ports::StoreError::Backend(Box::new(e))
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
    crate::store::db::query("UPDATE users SET created_at = '2026-01-02 03:04:05' WHERE id = $1")
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
