//! The pages a commit of notifications writes: SQLite's page size and the notifications table
//! without AUTOINCREMENT or the `is_read` and `created_at` indexes (SQLite's migration 0031),
//! what that keeps of an older database, and what it asks of the purge and the analytics; on
//! PostgreSQL, the same two indexes gone and room on `users`' pages for seq bumps (its 0031),
//! and no foreign key check per notification (its 0032).

use super::{add_user, open, plain_draft};
use crate::analytics::{db_exec, Bind};
use crate::harness::{Backend, TestDb};
use tickethub_actors::ports::{Purgeable, Store};

/// A connection of the test's own to a SQLite store's file.
async fn sqlite_file(db: &TestDb) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One notification to `to`, committed alone.
async fn commit_one(
    store: &std::sync::Arc<dyn Store>,
    to: tickethub_actors::domain::UserId,
    title: &str,
) -> i64 {
    let committed = store
        .commit_notifications(vec![plain_draft(to, title.into(), "m".into())], None)
        .await
        .unwrap();
    committed[0].id
}

/// A new SQLite database is made of 2 KiB pages, and its notifications table neither counts
/// its ids in `sqlite_sequence` nor keeps an index on `is_read` or `created_at`, and a commit
/// leaves the recipient's `users` row as it was (its seqs are read from the (user, seq)
/// index): what a commit of one notification writes is its row's leaf and its (user, seq)
/// index's leaf.
pub(super) async fn a_new_sqlite_database_writes_two_small_pages_a_notification() {
    let db = TestDb::create(&Backend::Sqlite).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let first = commit_one(&store, ann.id, "first").await;
    let second = commit_one(&store, ann.id, "second").await;
    assert_eq!(second, first + 1, "ids still grow by one");
    let mut conn = sqlite_file(&db).await;
    let floor: i64 = sqlx::query_scalar("SELECT last_seq FROM users WHERE id = ?")
        .bind(ann.id.0)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(floor, 0, "no commit wrote ann's users row");
    let cursor = store.notification_cursor(ann.id).await.unwrap();
    assert_eq!(cursor.last_seq, 2, "her highest seq, from the index");
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(page, 2048);
    let counted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'notifications'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(counted, 0, "no AUTOINCREMENT counter is written");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'notifications' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "notifications_deleted_at",
            "notifications_event",
            "notifications_inbox_changed",
            "notifications_read_at",
            "sqlite_autoindex_notifications_1",
        ]
    );
    // The unread figures are still read, through the (user, seq) index.
    let (unread, by_type) = store.unread_counts(ann.id).await.unwrap();
    assert_eq!((unread, by_type), (2, vec![("general".to_owned(), 2)]));

    // `--sqlite-page-size` makes a new file of other pages; an existing file keeps its own.
    let other = TestDb::create(&Backend::Sqlite).await;
    for size in [4096, 1024] {
        let store = tickethub::store::connect_with(
            &other.url,
            tickethub::store::StoreOptions {
                page_size: size,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        drop(store);
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut sqlite_file(&other).await)
            .await
            .unwrap();
        assert_eq!(page, 4096, "made with 4096, opened with {size}");
    }
}

/// A PostgreSQL notification inserts two index entries, its id's and its (user, seq)'s (the
/// partial indexes skip a new row): no unread or `created_at` index; the unread figures are
/// read through the (user, seq) index.
pub(super) async fn a_postgresql_notification_writes_two_index_entries() {
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    commit_one(&store, ann.id, "first").await;
    commit_one(&store, ann.id, "second").await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'notifications' \
         AND schemaname = current_schema() ORDER BY indexname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "notifications_deleted_at",
            "notifications_event",
            "notifications_inbox_changed",
            "notifications_pkey",
            "notifications_read_at",
            "notifications_user_id_seq_key",
        ],
        "{indexes:?}"
    );
    for (name, def) in &indexes {
        if !matches!(
            name.as_str(),
            "notifications_pkey" | "notifications_user_id_seq_key"
        ) {
            assert!(def.contains(" WHERE "), "{name} is partial: {def}");
        }
    }
    let (unread, by_type) = store.unread_counts(ann.id).await.unwrap();
    assert_eq!((unread, by_type), (2, vec![("general".to_owned(), 2)]));
    store
        .mark_all_read(ann.id, &Default::default())
        .await
        .unwrap();
    let (unread, _) = store.unread_counts(ann.id).await.unwrap();
    assert_eq!(unread, 0);
}

/// A PostgreSQL notification's recipient is checked by the commit's own statement, not by a
/// foreign key: a commit naming a user without a row applies nothing, and a users row deleted
/// takes its notifications with it, as the key's `ON DELETE CASCADE` did.
pub(super) async fn a_postgresql_notification_needs_its_recipient_without_a_foreign_key() {
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let bob = add_user(&store, "bob").await;
    commit_one(&store, ann.id, "to ann").await;
    commit_one(&store, bob.id, "to bob").await;
    let nobody = tickethub_actors::domain::UserId(bob.id.0 + 1_000);
    for drafts in [
        vec![plain_draft(nobody, "lost".into(), "m".into())],
        vec![
            plain_draft(ann.id, "with".into(), "m".into()),
            plain_draft(nobody, "lost".into(), "m".into()),
        ],
    ] {
        assert!(store.commit_notifications(drafts, None).await.is_err());
    }
    const COUNT: &str = "SELECT COUNT(*) FROM notifications";
    assert_eq!(
        crate::harness::db_number(&db, COUNT).await,
        2,
        "nothing of a refused commit applied"
    );
    let keys = crate::harness::db_number(
        &db,
        "SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'notifications'::regclass \
         AND confrelid = 'users'::regclass",
    )
    .await;
    assert_eq!(keys, 0, "no foreign key from notifications to users");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(ann.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let left: Vec<i64> = sqlx::query_scalar("SELECT user_id FROM notifications ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, [bob.id.0], "ann's notification went with her row");
    commit_one(&store, bob.id, "still").await;
    assert_eq!(crate::harness::db_number(&db, COUNT).await, 2);
}

/// The block of each user's row's current version (`ctid` is `(block,offset)`), by id.
async fn user_blocks(conn: &mut sqlx::PgConnection) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT id, split_part(trim(both '()' from ctid::text), ',', 1) FROM users ORDER BY id",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// A seq bump keeps the recipient's users row on its page (a heap-only update, no index
/// entry written), even when one commit bumps every user of the table's pages: PostgreSQL's
/// `users` leaves half of each page free. Pages filled to the brim (the default) sent nearly
/// every bumped row to another page.
pub(super) async fn a_postgresql_seq_bump_keeps_each_users_row_on_its_page() {
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let mut users = Vec::new();
    for i in 0..120 {
        users.push(add_user(&store, &format!("user{i}")).await.id);
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let options: Option<Vec<String>> =
        sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE relname = 'users'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(options, Some(vec!["fillfactor=50".to_owned()]));
    let pages = user_blocks(&mut conn)
        .await
        .iter()
        .map(|(_, b)| b.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(pages >= 2, "the users span several pages: {pages}");
    for round in 0..3 {
        let drafts = users
            .iter()
            .map(|u| plain_draft(*u, format!("round {round}"), "m".into()))
            .collect();
        // The round before's versions are cleared first: a page's own pruning waits until
        // no transaction of the server could see them, and the suite's other databases
        // keep some running (a vacuum looks at this database's alone).
        sqlx::query("VACUUM users")
            .execute(&mut conn)
            .await
            .unwrap();
        let now = user_blocks(&mut conn).await;
        store.commit_notifications(drafts, None).await.unwrap();
        let after = user_blocks(&mut conn).await;
        let moved: Vec<i64> = now
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0)
            .collect();
        // A page a user's creation filled past its half may send a row or two elsewhere;
        // with full pages nearly every row went.
        assert!(
            moved.len() <= users.len() / 20,
            "round {round}: {} of {} bumped rows left their page: {moved:?}",
            moved.len(),
            users.len()
        );
    }
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT last_seq FROM users ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(seqs.iter().all(|s| *s == 3), "{seqs:?}");
}

/// A database made before migration 0031 keeps every notification, with its id, and what
/// points at it (its outbox rows would have gone with a rebuilt table's drop had foreign keys
/// been on); the next notification takes the id after the largest.
pub(super) async fn the_notifications_table_is_rebuilt_with_what_points_at_it() {
    let db = TestDb::create(&Backend::Sqlite).await;
    let migrator = sqlx::migrate!("migrations/sqlite");
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            migrator
                .migrations
                .iter()
                .filter(|m| m.version < 31)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    {
        use sqlx::ConnectOptions;
        let mut conn = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true)
            .connect()
            .await
            .unwrap();
        before.run(&mut conn).await.unwrap();
        for sql in [
            "INSERT INTO users (id, username, role, password_hash, created_at, last_seq) \
             VALUES (7, 'ann', 'client', 'x', '2026-01-01T00:00:00Z', 2)",
            "INSERT INTO notifications (id, user_id, seq, notification_type, title, message, created_at) \
             VALUES (40, 7, 1, 'general', 'old', 'm', '2026-01-01T00:00:00Z'), \
                    (41, 7, 2, 'general', 'newer', 'm', '2026-01-01T00:00:01Z')",
            "INSERT INTO deliveries (notification_id, channel, address, next_attempt_at, created_at, updated_at) \
             VALUES (41, 'email', 'ann@example.com', '2026-01-01T00:00:01Z', '2026-01-01T00:00:01Z', '2026-01-01T00:00:01Z')",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
    let store = open(&db).await;
    let mut conn = sqlite_file(&db).await;
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT id, seq, title FROM notifications ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows, [(40, 1, "old".into()), (41, 2, "newer".into())]);
    let outbox: Vec<(i64,)> = sqlx::query_as("SELECT notification_id FROM deliveries")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(outbox, [(41,)], "the outbox row is kept");
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(
        broken.is_empty(),
        "no foreign key is left dangling: {broken:?}"
    );
    let on: i64 = sqlx::query_scalar("SELECT foreign_keys FROM pragma_foreign_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(on, 1);
    let next = commit_one(&store, tickethub_actors::domain::UserId(7), "next").await;
    assert_eq!(next, 42);
    let (unread, _) = store
        .unread_counts(tickethub_actors::domain::UserId(7))
        .await
        .unwrap();
    assert_eq!(unread, 3);
}

/// Marks every notification of `user` read and purges the read ones older than `before`, in
/// batches of `batch`, until a batch finds none: how many went.
async fn read_and_purge(
    store: &std::sync::Arc<dyn Store>,
    user: tickethub_actors::domain::UserId,
    before: chrono::DateTime<chrono::Utc>,
    batch: i64,
) -> u64 {
    store
        .mark_all_read(user, &Default::default())
        .await
        .unwrap();
    let mut purged = 0;
    loop {
        let n = store
            .purge(Purgeable::ReadNotifications, before, batch)
            .await
            .unwrap();
        if n == 0 {
            return purged;
        }
        purged += n;
    }
}

/// The purge never deletes the newest notification, whatever its age: on SQLite the next one
/// would take its id again. Once a newer one exists, it goes too.
pub(super) async fn the_purge_keeps_the_newest_notification_so_no_id_is_given_twice(
    backend: Backend,
) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let ids = [
        commit_one(&store, ann.id, "one").await,
        commit_one(&store, ann.id, "two").await,
        commit_one(&store, ann.id, "three").await,
    ];
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let purged = read_and_purge(&store, ann.id, later, 100).await;
    assert_eq!(purged, 2, "all but the newest");
    let next = commit_one(&store, ann.id, "four").await;
    assert!(next > ids[2], "a new id: {next} after {ids:?}");
    let purged = read_and_purge(&store, ann.id, later, 100).await;
    assert_eq!(purged, 1, "the one that was newest");
    let (total, left) = store
        .list_notifications(
            ann.id,
            &Default::default(),
            tickethub_actors::ports::Page {
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(left[0].id, next);
}

/// A user's seqs go on where they were once the purge removed every notification of theirs
/// (on SQLite, where a commit writes no `users` row, the delete of a user's newest
/// notification leaves its seq in `users.last_seq`), on the writer's path and on the pool's
/// (a ticket's transition commits its notifications in its own transaction).
pub(super) async fn seqs_go_on_after_every_notification_of_a_user_was_purged(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let bob = add_user(&store, "bob").await;
    for title in ["one", "two", "three"] {
        commit_one(&store, ann.id, title).await;
    }
    // The newest notification of all is never purged: bob's.
    commit_one(&store, bob.id, "newest").await;
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let purged = read_and_purge(&store, ann.id, later, 2).await;
    assert_eq!(purged, 3, "every one of ann's, in two batches");
    let cursor = store.notification_cursor(ann.id).await.unwrap();
    assert_eq!(
        cursor.last_seq, 3,
        "her highest seq outlives her notifications"
    );
    let committed = store
        .commit_notifications(
            vec![
                plain_draft(ann.id, "four".into(), "m".into()),
                plain_draft(ann.id, "five".into(), "m".into()),
                plain_draft(bob.id, "two".into(), "m".into()),
            ],
            None,
        )
        .await
        .unwrap();
    let mut seqs: Vec<(i64, i64)> = committed.iter().map(|n| (n.user_id.0, n.seq)).collect();
    seqs.sort();
    assert_eq!(seqs, [(ann.id.0, 4), (ann.id.0, 5), (bob.id.0, 2)]);
    // Acks stop at her highest seq, whichever way it is kept.
    store.ack(ann.id, 99).await.unwrap();
    let cursor = store.notification_cursor(ann.id).await.unwrap();
    assert_eq!((cursor.last_seq, cursor.acked_seq), (5, 5));
    // The pool's path (an idempotent send, marked in the notifications' own transaction)
    // takes the next one too, and leaves the next for the writer's.
    let purged = read_and_purge(&store, ann.id, later, 100).await;
    assert_eq!(purged, 2, "ann's two (bob's newest of all stays)");
    let mark = tickethub_actors::ports::IdempotencyMark {
        caller: format!("user:{}", bob.id.0),
        key: "once".into(),
    };
    let now = chrono::Utc::now();
    store
        .claim_idempotency(&mark, "send", now, now + chrono::TimeDelta::minutes(1))
        .await
        .unwrap();
    let marked = store
        .commit_notifications(
            vec![plain_draft(ann.id, "six".into(), "m".into())],
            Some(&mark),
        )
        .await
        .unwrap();
    assert_eq!(marked[0].seq, 6);
    let next = store
        .commit_notifications(vec![plain_draft(ann.id, "seven".into(), "m".into())], None)
        .await
        .unwrap();
    assert_eq!(next[0].seq, 7);
    let mut last = store.last_seqs(&[ann.id, bob.id]).await.unwrap();
    last.sort();
    assert_eq!(last, [(ann.id, 7), (bob.id, 2)]);
}

/// The analytics' live rows of a range are its notifications exactly, on SQLite found by an
/// id range: rows an hour apart with gaps in their ids, counted by ranges that start and end
/// on them, between them and in the gaps.
pub(super) async fn analytics_count_the_notifications_of_a_range_exactly(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(commit_one(&store, ann.id, &format!("n{i}")).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let at = start + chrono::TimeDelta::hours(i as i64);
        db_exec(
            &db,
            "UPDATE notifications SET created_at = $1 WHERE id = $2",
            &[Bind::At(at), Bind::Int(*id)],
        )
        .await;
    }
    // Gaps in the ids, as the purge leaves them.
    for h in [1, 2, 5, 8, 9] {
        db_exec(
            &db,
            "DELETE FROM notifications WHERE id = $1",
            &[Bind::Int(ids[h])],
        )
        .await;
    }
    let hour = |h: i64| start + chrono::TimeDelta::hours(h);
    for (from, to, expect) in [
        (0, 12, 7),
        (3, 7, 3),
        (0, 1, 1),
        (1, 3, 0),
        (2, 4, 1),
        (8, 10, 0),
        (7, 11, 2),
        (11, 24, 1),
        (12, 24, 0),
        (-5, 0, 0),
    ] {
        let query = tickethub_actors::analytics::AnalyticsQuery {
            from: hour(from),
            to: hour(to),
            notification_type: None,
            channel: None,
        };
        let tallies = store.analytics(&query).await.unwrap();
        let committed: i64 = tallies.0.values().map(|t| t.committed).sum();
        assert_eq!(committed, expect, "hours {from}..{to}");
    }
}
