//! The store suite, run against SQLite and PostgreSQL alike.

use tickethub_actors::domain::{NewUser, Role, UserId};
use tickethub_actors::notification::Draft;
use tickethub_actors::ports::{NotificationCursor, Store, StoreError};

use crate::harness::{patience, Backend, TestDb};
mod notification_pages;
mod postgres_connections;
mod socket_writes;
mod user_reads;
use notification_pages::*;
use postgres_connections::*;
use socket_writes::*;
use std::time::Duration;
use user_reads::*;

async fn open(db: &TestDb) -> std::sync::Arc<dyn Store> {
    tickethub::store::connect(&db.url).await.unwrap()
}

/// A client, created.
async fn add_user(store: &std::sync::Arc<dyn Store>, name: &str) -> tickethub_actors::domain::User {
    store
        .create_user(new_user(name, Role::Client))
        .await
        .unwrap()
}

/// A `general` notification to `to`, emailed.
fn general_draft(to: UserId, title: &str) -> Draft {
    Draft {
        recipient: to,
        notification_type: "general".parse().unwrap(),
        title: title.into(),
        message: "m".into(),
        ticket: None,
        data: "{}".into(),
        action_url: None,
        deliveries: vec![(
            tickethub_actors::routing::Channel::Email,
            format!("{}@example.test", to.0),
        )],
        webhook_recipients: Vec::new(),
        cause: Default::default(),
        escalations: Vec::new(),
    }
}

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser {
        username: name.to_owned(),
        display_name: String::new(),
        email: None,
        whatsapp_number: Some("+15550001111".into()),
        phone_number: None,
        role,
        is_superuser: role == Role::Admin,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    }
}

async fn users_round_trip(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let a = store
        .create_user(new_user("ann", Role::Admin))
        .await
        .unwrap();
    assert_eq!(a.username, "ann");
    assert_eq!(a.name(), "ann");
    assert!(a.is_superuser && a.is_active);
    assert_eq!(
        a.address_of(tickethub_actors::routing::Channel::Whatsapp),
        Some("+15550001111")
    );

    assert!(matches!(
        store.create_user(new_user("ann", Role::Client)).await,
        Err(StoreError::Conflict(_))
    ));
    let d = store
        .create_user(new_user("dan", Role::Developer))
        .await
        .unwrap();
    assert!(d.id.0 > a.id.0);

    assert_eq!(store.user_by_id(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store
            .user_by_id(tickethub_actors::domain::UserId(-1))
            .await
            .unwrap(),
        None
    );
    let (found, hash) = store.user_with_hash("dan").await.unwrap().unwrap();
    assert_eq!(found, d);
    assert!(hash.starts_with("$argon2id$"));
    assert!(store.user_with_hash("nobody").await.unwrap().is_none());
    let all = store.list_users().await.unwrap();
    assert_eq!(
        all.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["ann", "dan"]
    );
    assert_eq!(
        store.notification_cursor(a.id).await.unwrap(),
        NotificationCursor::default()
    );
    store.ping().await.unwrap();
    store.close().await;
}

async fn projects_and_members(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let a = store
        .create_user(new_user("ann", Role::Admin))
        .await
        .unwrap();
    let c = store
        .create_user(new_user("cid", Role::Client))
        .await
        .unwrap();
    let d = store
        .create_user(new_user("dan", Role::Developer))
        .await
        .unwrap();

    let p = store
        .create_project("WEB", "Main Website", &[c.id, c.id, d.id])
        .await
        .unwrap();
    assert_eq!(p.key, "WEB");
    assert_eq!(p.member_ids, vec![c.id, d.id]);
    assert!(matches!(
        store.create_project("WEB", "Again", &[]).await,
        Err(StoreError::Conflict(_))
    ));
    // A member that does not exist fails the whole creation.
    assert!(store
        .create_project("API", "Api", &[tickethub_actors::domain::UserId(9_999)])
        .await
        .is_err());
    assert!(store.project_by_key("API").await.unwrap().is_none());

    let q = store
        .create_project("OPS", "Operations", &[])
        .await
        .unwrap();
    store.add_members(q.id, &[a.id, c.id]).await.unwrap();
    store.add_members(q.id, &[c.id]).await.unwrap();
    assert_eq!(
        store.project_by_id(q.id).await.unwrap().unwrap().member_ids,
        vec![a.id, c.id]
    );
    assert_eq!(store.project_by_key("WEB").await.unwrap().unwrap(), p);

    let keys = |ps: Vec<tickethub_actors::domain::Project>| {
        ps.into_iter().map(|p| p.key).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.list_projects(None).await.unwrap()),
        ["WEB", "OPS"]
    );
    assert_eq!(
        keys(store.list_projects(Some(c.id)).await.unwrap()),
        ["WEB", "OPS"]
    );
    assert_eq!(
        keys(store.list_projects(Some(d.id)).await.unwrap()),
        ["WEB"]
    );
    assert_eq!(
        keys(store.list_projects(Some(a.id)).await.unwrap()),
        ["OPS"]
    );
}

/// The schema as the database describes it: every table's columns and every index.
async fn schema(db: &TestDb) -> Vec<String> {
    use sqlx::{Connection, Row};
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2)
                )
            })
            .collect()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let mut out: Vec<String> = sqlx::query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY table_name, column_name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "column {}.{} {}",
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2)
            )
        })
        .collect();
        out.extend(
            sqlx::query("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("index {} {}", r.get::<String, _>(0), r.get::<String, _>(1))),
        );
        out
    }
}

/// Opening a database again runs the migrator again: every migration is recorded once and
/// applied, the schema does not move, and the data stays.
async fn migrations_are_idempotent(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let first = open(&db).await;
    let ann = first
        .create_user(new_user("ann", Role::Admin))
        .await
        .unwrap();
    let project = first
        .create_project("MIG", "Migrations", &[ann.id])
        .await
        .unwrap();
    first.close().await;
    let files = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        if db.url.starts_with("sqlite") {
            "migrations/sqlite"
        } else {
            "migrations/postgres"
        },
    ))
    .unwrap()
    .count() as i64;
    let applied = |db: &TestDb| {
        let url = db.url.clone();
        async move {
            crate::harness::db_number(
                &TestDb::existing(&url),
                "SELECT COUNT(*) FROM _sqlx_migrations WHERE success = true",
            )
            .await
        }
    };
    assert_eq!(applied(&db).await, files);
    let before = schema(&db).await;
    assert!(
        before.iter().any(|l| l.contains("refresh_tokens")),
        "{before:?}"
    );
    for _ in 0..2 {
        let again = open(&db).await;
        let (found, _) = again
            .user_with_hash("ann")
            .await
            .unwrap()
            .expect("ann is there");
        assert_eq!(found.id, ann.id);
        let kept = again
            .project_by_id(project.id)
            .await
            .unwrap()
            .expect("the project is there");
        assert_eq!(kept.member_ids, vec![ann.id]);
        again.close().await;
        assert_eq!(applied(&db).await, files, "a migration was recorded twice");
        assert_eq!(schema(&db).await, before, "the schema moved");
    }
}

async fn batched_commits_give_every_recipient_the_next_seq(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let a = store
        .create_user(new_user("ann", Role::Admin))
        .await
        .unwrap();
    let b = store
        .create_user(new_user("bob", Role::Client))
        .await
        .unwrap();
    let draft = general_draft;
    // A batch of distinct recipients takes the batched path.
    let first = store
        .commit_notifications(vec![draft(b.id, "b1"), draft(a.id, "a1")], None)
        .await
        .unwrap();
    let seqs: Vec<(i64, i64)> = first.iter().map(|n| (n.user_id.0, n.seq)).collect();
    assert_eq!(seqs, vec![(a.id.0, 1), (b.id.0, 1)]);
    // A batch naming one recipient twice gives consecutive seqs.
    let second = store
        .commit_notifications(
            vec![draft(a.id, "a2"), draft(a.id, "a3"), draft(b.id, "b2")],
            None,
        )
        .await
        .unwrap();
    let mut seqs: Vec<(i64, i64)> = second.iter().map(|n| (n.user_id.0, n.seq)).collect();
    seqs.sort();
    assert_eq!(seqs, vec![(a.id.0, 2), (a.id.0, 3), (b.id.0, 2)]);
    // Every notification got its delivery row, and the stored rows match what was returned.
    for n in first.iter().chain(&second) {
        let d = store.deliveries(n.user_id, n.id).await.unwrap().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].address, format!("{}@example.test", n.user_id.0));
        let stored = store.notification(n.user_id, n.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.seq, stored.title.as_str()),
            (n.seq, n.title.as_str())
        );
    }
    // An unknown recipient fails the whole batch.
    let err = store
        .commit_notifications(
            vec![
                draft(a.id, "a4"),
                draft(tickethub_actors::domain::UserId(999_999), "x"),
            ],
            None,
        )
        .await;
    assert!(err.is_err());
    assert_eq!(store.notification_cursor(a.id).await.unwrap().last_seq, 3);

    // A socket's handshake reads a user it does not hold in memory with their cursor, in one
    // read; once the user is held, it reads nothing, and the actor reads the cursor itself.
    let c = add_user(&store, "cid").await;
    store
        .commit_notifications(vec![draft(c.id, "c1"), draft(c.id, "c2")], None)
        .await
        .unwrap();
    store.ack(c.id, 1).await.unwrap();
    let (user, cursor) = store.user_and_cursor(c.id).await.unwrap().unwrap();
    assert_eq!(user, c);
    assert_eq!(cursor, Some(store.notification_cursor(c.id).await.unwrap()));
    assert_eq!(cursor.map(|c| (c.last_seq, c.acked_seq)), Some((2, 1)));
    let cached = store
        .user_cache()
        .is_some_and(|cache| cache.get(c.id).is_some());
    let (_, again) = store.user_and_cursor(c.id).await.unwrap().unwrap();
    assert_eq!(again.is_none(), cached);
    assert!(store
        .user_and_cursor(tickethub_actors::domain::UserId(999_999))
        .await
        .unwrap()
        .is_none());

    // What another node reads when it hears of a commit: by (recipient, seq), in batches,
    // leaving out deleted ones and keys that do not exist; the gap fill leaves them out too.
    assert!(store.delete_notification(a.id, second[1].id).await.unwrap());
    let mut got: Vec<(i64, i64, String)> = store
        .notifications_at(&[(a.id, 1), (b.id, 2), (a.id, 3), (a.id, 2), (b.id, 9)])
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.user_id.0, n.seq, n.title))
        .collect();
    got.sort();
    let deleted = second[1].seq;
    let mut want = vec![(a.id.0, 1, "a1".to_owned()), (b.id.0, 2, "b2".to_owned())];
    for (seq, title) in [(2, "a2"), (3, "a3")] {
        if seq != deleted {
            want.push((a.id.0, seq, title.to_owned()));
        }
    }
    want.sort();
    assert_eq!(got, want);
    let range: Vec<i64> = store
        .seq_range(a.id, 0, 4)
        .await
        .unwrap()
        .iter()
        .map(|n| n.seq)
        .collect();
    assert_eq!(range, (1..=3).filter(|s| *s != deleted).collect::<Vec<_>>());
    // The catch-up of many users in one read: each user's range, by user and seq, the deleted
    // one left out, an empty range and an unknown user giving nothing.
    let ranges: Vec<(i64, i64)> = store
        .seq_ranges(&[
            (b.id, 0, 3),
            (a.id, 0, 4),
            (a.id, 5, 5),
            (tickethub_actors::domain::UserId(999_999), 0, 9),
        ])
        .await
        .unwrap()
        .iter()
        .map(|n| (n.user_id.0, n.seq))
        .collect();
    let mut want: Vec<(i64, i64)> = (1..=3)
        .filter(|s| *s != deleted)
        .map(|s| (a.id.0, s))
        .chain([(b.id.0, 1), (b.id.0, 2)])
        .collect();
    want.sort_by_key(|(u, s)| (*u, *s));
    assert_eq!(ranges, want);
    let seqs = store
        .last_seqs(&[a.id, b.id, tickethub_actors::domain::UserId(999_999)])
        .await
        .unwrap();
    let mut seqs: Vec<(i64, i64)> = seqs.into_iter().map(|(u, s)| (u.0, s)).collect();
    seqs.sort();
    assert_eq!(seqs, vec![(a.id.0, 3), (b.id.0, 2)]);

    // One event's notifications (the same content for every recipient) take the path that
    // binds the content once: every recipient still gets its own next seq, its own row and
    // its own delivery, and the answer maps each id to its recipient.
    let c = store
        .create_user(new_user("cat", Role::Client))
        .await
        .unwrap();
    let shared = store
        .commit_notifications(
            vec![
                draft(c.id, "same"),
                draft(b.id, "same"),
                draft(a.id, "same"),
            ],
            None,
        )
        .await
        .unwrap();
    let mut seqs: Vec<(i64, i64)> = shared.iter().map(|n| (n.user_id.0, n.seq)).collect();
    seqs.sort();
    assert_eq!(seqs, vec![(a.id.0, 4), (b.id.0, 3), (c.id.0, 1)]);
    for n in &shared {
        let stored = store.notification(n.user_id, n.id).await.unwrap().unwrap();
        assert_eq!((stored.seq, stored.title.as_str()), (n.seq, "same"));
        let d = store.deliveries(n.user_id, n.id).await.unwrap().unwrap();
        assert_eq!(d[0].address, format!("{}@example.test", n.user_id.0));
    }
    // An unknown recipient fails the whole batch on this path too.
    let err = store
        .commit_notifications(
            vec![
                draft(a.id, "same"),
                draft(tickethub_actors::domain::UserId(999_999), "same"),
            ],
            None,
        )
        .await;
    assert!(err.is_err());
    assert_eq!(store.notification_cursor(a.id).await.unwrap().last_seq, 4);
}

/// Many calls at once, as one notification per HTTP call: each is answered with its own rows,
/// every user's seqs stay gapless and in each caller's order, and a call naming an unknown
/// user fails alone, not the calls committed with it.
async fn concurrent_commits_are_grouped_and_a_bad_call_fails_alone(backend: Backend) {
    use tickethub_actors::domain::UserId;
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let mut users = Vec::new();
    for i in 0..5 {
        let u = store
            .create_user(new_user(&format!("u{i}"), Role::Client))
            .await
            .unwrap();
        users.push(u.id);
    }
    let draft = |to: UserId, title: String| plain_draft(to, title, "m".into());
    const CALLS: usize = 200;
    const BAD: usize = 77;
    let calls = (0..CALLS).map(|i| {
        let store = store.clone();
        // Call i goes to user i % 5, and every tenth also to the next user.
        let mut drafts = vec![draft(users[i % 5], format!("c{i}"))];
        if i % 10 == 0 {
            drafts.push(draft(users[(i + 1) % 5], format!("c{i}+")));
        }
        if i == BAD {
            drafts.push(draft(UserId(999_999), "nobody".into()));
        }
        async move { (i, store.commit_notifications(drafts, None).await) }
    });
    // Two waves: the first is all good calls (committed together), the second holds the bad
    // one (its group fails and is committed call by call).
    let mut calls: Vec<_> = calls.collect();
    let second = calls.split_off(CALLS / 2);
    let mut results = futures::future::join_all(calls).await;
    results.extend(futures::future::join_all(second).await);
    let mut per_user: std::collections::HashMap<i64, Vec<(i64, String)>> = Default::default();
    for (i, result) in results {
        if i == BAD {
            assert!(result.is_err(), "the call naming an unknown user must fail");
            continue;
        }
        let rows = result.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        let want = if i % 10 == 0 { 2 } else { 1 };
        assert_eq!(rows.len(), want, "call {i}");
        assert!(rows.iter().all(|n| n.title.starts_with(&format!("c{i}"))));
        for n in rows {
            per_user
                .entry(n.user_id.0)
                .or_default()
                .push((n.seq, n.title));
        }
    }
    let total: usize = per_user.values().map(Vec::len).sum();
    assert_eq!(total, CALLS - 1 + CALLS / 10);
    for (user, mut seqs) in per_user {
        seqs.sort();
        let got: Vec<i64> = seqs.iter().map(|(s, _)| *s).collect();
        let want: Vec<i64> = (1..=got.len() as i64).collect();
        assert_eq!(got, want, "user {user}: seqs must be gapless");
        let cursor = store.notification_cursor(UserId(user)).await.unwrap();
        assert_eq!(cursor.last_seq, got.len() as i64);
    }
    // A lone call to one user, committed in a group of its own: an unknown user fails it,
    // and a known one gets the next seq.
    let lone = store
        .commit_notifications(vec![draft(UserId(999_998), "nobody".into())], None)
        .await;
    assert!(lone.is_err(), "a lone call to an unknown user must fail");
    let before = store.notification_cursor(users[0]).await.unwrap().last_seq;
    let lone = store
        .commit_notifications(vec![draft(users[0], "lone".into())], None)
        .await
        .unwrap();
    assert_eq!(lone[0].seq, before + 1);
}

/// The batched `sent_seq` write: several users in one call, each only ever moving forward.
async fn sent_seqs_of_many_users_are_recorded_in_one_call_and_never_move_back(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let a = store
        .create_user(new_user("ann", Role::Client))
        .await
        .unwrap();
    let b = store
        .create_user(new_user("bob", Role::Client))
        .await
        .unwrap();
    let c = store
        .create_user(new_user("cat", Role::Client))
        .await
        .unwrap();
    store
        .record_sent(&[(b.id, 3), (a.id, 5), (c.id, 0)])
        .await
        .unwrap();
    store.record_sent(&[(a.id, 2), (b.id, 4)]).await.unwrap();
    store.record_sent(&[]).await.unwrap();
    let sent = |u| {
        let store = store.clone();
        async move { store.notification_cursor(u).await.unwrap().sent_seq }
    };
    assert_eq!(sent(a.id).await, 5, "never moves back");
    assert_eq!(sent(b.id).await, 4);
    assert_eq!(sent(c.id).await, 0);
}

/// The size of a file, 0 if it does not exist.
fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Whether every frame of an SQLite log has been copied into the database file, as the
/// log's shared index says (https://www.sqlite.org/walformat.html, in native byte order):
/// `mxFrame`, the last frame of the log (offset 16 of the index header), against `nBackfill`,
/// the frames a checkpoint has copied (offset 96). Reading the file takes no lock and runs no
/// checkpoint of its own.
fn log_copied(shm: &std::path::Path) -> bool {
    let Ok(index) = std::fs::read(shm) else {
        return false;
    };
    if index.len() < 100 {
        return false;
    }
    let word = |at: usize| u32::from_ne_bytes(index[at..at + 4].try_into().unwrap());
    let (last, copied) = (word(16), word(96));
    last > 0 && copied == last
}

/// SQLite's writer never checkpoints (`wal_autocheckpoint=0`): a connection of the store's own
/// copies the log into the database file every half second. Observed from the files alone:
/// the database file grows by what was committed (only a checkpoint writes to it), and once a
/// checkpoint has copied the whole log, the next commit writes the log from its start again,
/// so that round after round of commits the log file stays the size of one round.
async fn the_sqlite_log_is_copied_into_the_database_file_and_reused() {
    const ROUNDS: u64 = 6;
    const PER_ROUND: u64 = 200;
    const MESSAGE: u64 = 4000;
    let db = TestDb::create(&Backend::Sqlite).await;
    let file = std::path::PathBuf::from(db.url.strip_prefix("sqlite://").unwrap());
    let (log, shm) = (
        std::path::PathBuf::from(format!("{}-wal", file.display())),
        std::path::PathBuf::from(format!("{}-shm", file.display())),
    );
    let store = open(&db).await;
    let ann = store
        .create_user(new_user("ann", Role::Client))
        .await
        .unwrap();
    let draft = |i: u64| plain_draft(ann.id, format!("n{i}"), "x".repeat(MESSAGE as usize));
    let mut logs = Vec::new();
    for round in 1..=ROUNDS {
        let drafts = (0..PER_ROUND)
            .map(|i| draft(round * PER_ROUND + i))
            .collect();
        store.commit_notifications(drafts, None).await.unwrap();
        // The file's size alone can be reached while a checkpoint is still copying; the log
        // is written from its start again only once the checkpoint has recorded that it copied
        // every frame, so wait for that too before the next round.
        let committed = round * PER_ROUND * MESSAGE;
        crate::harness::eventually(
            &format!("round {round}'s rows are copied into the database file"),
            || async { file_size(&file) >= committed && log_copied(&shm) },
        )
        .await;
        logs.push(file_size(&log));
    }
    // Unchecked, the log would hold every round; reused, it holds about one.
    let (first, last) = (logs[0], logs[logs.len() - 1]);
    assert!(
        first >= PER_ROUND * MESSAGE,
        "the first round went through the log: {logs:?}"
    );
    assert!(
        last <= 2 * first,
        "the log is reused after a checkpoint, not grown: {logs:?}"
    );
    assert_eq!(
        store.notification_cursor(ann.id).await.unwrap().last_seq,
        (ROUNDS * PER_ROUND) as i64
    );
    store.close().await;
}

/// Under a steady load the readers always hold some snapshot of the log, so a copy that stops
/// no one never lets SQLite write the log from its start again: past its limit, the store
/// makes that moment itself. Here readers list the inbox (or read a user as a socket's
/// handshake does) without pause while commits write twenty times the limit; the log stays
/// within a few limits of its bound, and the rows are all there.
async fn the_sqlite_log_stays_bounded_while_readers_never_pause() {
    const LIMIT: u64 = 1 << 20;
    const COMMITS: u64 = 100;
    const COMMITS_PER_ROUND: u64 = 10;
    const PER_COMMIT: u64 = 50;
    const MESSAGE: u64 = 4000;
    let db = TestDb::create(&Backend::Sqlite).await;
    let log =
        std::path::PathBuf::from(format!("{}-wal", db.url.strip_prefix("sqlite://").unwrap()));
    let store = tickethub::store::connect_with(
        &db.url,
        tickethub::store::StoreOptions {
            wal_limit_bytes: LIMIT,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ann = store
        .create_user(new_user("ann", Role::Client))
        .await
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    reads += 1;
                    if i == 0 {
                        // A socket's handshake, which reads on a connection of its own.
                        store.user_cache().unwrap().forget(ann.id);
                        let read = store.user_and_cursor(ann.id).await.unwrap();
                        assert!(read.is_some_and(|(_, cursor)| cursor.is_some()));
                        // That read may never wait: let the others run.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    store
                        .list_notifications(
                            ann.id,
                            &Default::default(),
                            tickethub_actors::ports::Page {
                                offset: 0,
                                limit: 100,
                            },
                        )
                        .await
                        .unwrap();
                }
                reads
            })
        })
        .collect();
    let mut largest = 0;
    let mut ticks = 0;
    for c in 0..COMMITS {
        let drafts = (0..PER_COMMIT)
            .map(|i| plain_draft(ann.id, format!("n{c}-{i}"), "x".repeat(MESSAGE as usize)))
            .collect();
        store.commit_notifications(drafts, None).await.unwrap();
        largest = largest.max(file_size(&log));
        if (c + 1) % COMMITS_PER_ROUND == 0 {
            // A round wrote twice the limit: the checkpointer, which looks every half second,
            // restarts the log. Small commits go on until one writes it from its start (the
            // log's header counts its restarts), however fast the round went.
            let restarts = wal_restarts(&log);
            let deadline = tokio::time::Instant::now() + patience();
            while wal_restarts(&log) == restarts {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the log was never restarted"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                let tick = plain_draft(ann.id, format!("tick{ticks}"), String::new());
                store.commit_notifications(vec![tick], None).await.unwrap();
                ticks += 1;
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    let written = COMMITS * PER_COMMIT * MESSAGE;
    assert!(reads > COMMITS, "the readers kept reading: {reads} reads");
    assert!(
        largest <= written / 4,
        "the log grew to {largest} bytes of {written} written (limit {LIMIT})"
    );
    assert_eq!(
        store.notification_cursor(ann.id).await.unwrap().last_seq,
        (COMMITS * PER_COMMIT + ticks) as i64
    );
    store.close().await;
}

/// How many times an SQLite log was written from its start again: the checkpoint sequence
/// number of its header (https://www.sqlite.org/walformat.html, big-endian at offset 12).
fn wal_restarts(path: &std::path::Path) -> u32 {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) => u32::from_be_bytes([header[12], header[13], header[14], header[15]]),
        Err(_) => 0,
    }
}

/// An in-app `general` notification with no deliveries.
pub(crate) fn plain_draft(to: UserId, title: String, message: String) -> Draft {
    Draft {
        recipient: to,
        notification_type: "general".parse().unwrap(),
        title,
        message,
        ticket: None,
        data: "{}".into(),
        action_url: None,
        deliveries: Vec::new(),
        webhook_recipients: Vec::new(),
        cause: Default::default(),
        escalations: Vec::new(),
    }
}

/// Acks of several users written in one transaction: each moves only forward and never past
/// the user's last seq, and an unknown user is left out rather than failing the others.
async fn acks_of_many_users_are_written_in_one_call(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let a = add_user(&store, "ann").await;
    let b = add_user(&store, "bob").await;
    let draft = |to: UserId| Draft {
        deliveries: Vec::new(),
        ..general_draft(to, "t")
    };
    for _ in 0..3 {
        store
            .commit_notifications(vec![draft(a.id)], None)
            .await
            .unwrap();
    }
    store
        .commit_notifications(vec![draft(b.id)], None)
        .await
        .unwrap();
    let mut acked = store
        .ack_many(&[(b.id, 5), (UserId(999_999), 1), (a.id, 2)])
        .await
        .unwrap();
    acked.sort();
    assert_eq!(acked, vec![(a.id, 2), (b.id, 1)]);
    let acked = store.ack_many(&[(a.id, 1)]).await.unwrap();
    assert_eq!(acked, vec![(a.id, 2)], "never moves back");
    assert_eq!(store.notification_cursor(a.id).await.unwrap().acked_seq, 2);
    assert_eq!(store.notification_cursor(b.id).await.unwrap().acked_seq, 1);
}

/// A join request is decided once: deciding it again is a conflict, however old it is, and
/// one that does not exist is not found.
async fn a_join_request_is_decided_once(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let store = open(&db).await;
    let ann = store
        .create_user(new_user("ann", Role::Admin))
        .await
        .unwrap();
    let bob = add_user(&store, "bob").await;
    let project = store
        .create_project("JR", "Joins", &[ann.id])
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let asked = store
        .add_join_request(project.id, bob.id, "let me in", now)
        .await
        .unwrap();
    let decided = store
        .decide_join_request(asked.id, true, ann.id, now)
        .await
        .unwrap()
        .expect("a waiting request is decided");
    assert_eq!(decided.id, asked.id);
    assert!(matches!(
        store
            .decide_join_request(asked.id, false, ann.id, now)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .decide_join_request(asked.id + 1_000, true, ann.id, now)
        .await
        .unwrap()
        .is_none());
}

crate::trials! {
    both: [
        users_round_trip,
        one_user_is_read_by_key_for_a_send_and_a_token,
        projects_and_members,
        migrations_are_idempotent,
        batched_commits_give_every_recipient_the_next_seq,
        concurrent_commits_are_grouped_and_a_bad_call_fails_alone,
        sent_seqs_of_many_users_are_recorded_in_one_call_and_never_move_back,
        socket_write_runs_of_many_users_are_recorded_whole_in_parts,
        acks_of_many_users_are_written_in_one_call,
        a_join_request_is_decided_once,
        the_purge_keeps_the_newest_notification_so_no_id_is_given_twice,
        seqs_go_on_after_every_notification_of_a_user_was_purged,
        analytics_count_the_notifications_of_a_range_exactly,
    ],
    tests: [
        the_sqlite_log_is_copied_into_the_database_file_and_reused,
        the_sqlite_log_stays_bounded_while_readers_never_pause,
        a_connects_read_goes_over_a_held_connection_that_survives_the_server_dropping_it,
        a_group_commit_goes_over_a_held_connection_that_survives_the_server_dropping_it,
        a_sends_one_missing_recipient_is_read_on_a_held_connection,
        postgres_connections_plan_a_statement_once_for_all_its_values,
        a_new_sqlite_database_writes_two_small_pages_a_notification,
        a_postgresql_notification_writes_two_index_entries,
        a_postgresql_seq_bump_keeps_each_users_row_on_its_page,
        a_postgresql_notification_needs_its_recipient_without_a_foreign_key,
        the_notifications_table_is_rebuilt_with_what_points_at_it,
    ],
    sync: [],
}
