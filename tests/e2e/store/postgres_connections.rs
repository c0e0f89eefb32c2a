//! The store's connections to PostgreSQL: the held connections of a connect's read and of the
//! group commits, and the plans every connection asks for.

use super::{add_user, open, plain_draft};
use crate::harness::{eventually, eventually_ok, Backend, TestDb};

/// How the held connections for a connect's read name themselves.
const READS: &str = "tickethub held reads";

/// How the held connections for group commits name themselves.
const COMMITS: &str = "tickethub held commits";

/// The pids and last statements of the held connections named `name` (`pg_stat_activity`).
async fn held_connections(admin: &mut sqlx::PgConnection, name: &str) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT pid, query FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(name)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Drops every connection to the test's database but `admin`'s, and waits until they are gone.
async fn drop_every_connection(admin: &mut sqlx::PgConnection, url: &str) {
    use sqlx::Connection;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut *admin)
    .await
    .unwrap();
    eventually("the dropped connections gone", || {
        let url = url.to_owned();
        async move {
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            let (others,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND application_name LIKE 'tickethub held%'",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            others == 0
        }
    })
    .await;
}

/// On PostgreSQL, the hub's connections plan a prepared statement once for all its values
/// (generic plans): a statement over an array, run again with arrays of other lengths, is
/// never planned again for them (the server's default plans each of a statement's first five
/// runs for its values, and an array's length can keep it doing so).
pub(super) async fn postgres_connections_plan_a_statement_once_for_all_its_values() {
    use sqlx::ConnectOptions;
    let db = TestDb::create(&Backend::postgres()).await;
    let mut conn = tickethub::store::postgres::connect_options(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "force_generic_plan");
    let sql = "SELECT count(*) FROM UNNEST($1::bigint[]) AS r(id) WHERE r.id > 0";
    let lengths = [1_i64, 10, 1000, 3, 7, 10_000];
    for n in lengths {
        let ids: Vec<i64> = (1..=n).collect();
        let counted: i64 = sqlx::query_scalar(sql)
            .bind(&ids)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(counted, n);
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
    )
    .bind(sql)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (generic, custom),
        (lengths.len() as i64, 0),
        "every run on the generic plan, none planned for its values"
    );
}

/// On PostgreSQL, the read every socket's connect makes (its user's cursor) goes over a
/// connection held outside the pool, and goes on answering after the server drops every
/// connection: the failed read is answered through the pool, and the next opens a new one.
pub(super) async fn a_connects_read_goes_over_a_held_connection_that_survives_the_server_dropping_it(
) {
    use sqlx::Connection;
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    assert_eq!(store.notification_cursor(ann.id).await.unwrap().last_seq, 0);
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let held = held_connections(&mut admin, READS).await;
    assert_eq!(
        held.len(),
        1,
        "one held connection after one read: {held:?}"
    );
    assert!(
        held[0].1.contains("acked_seq, sent_seq FROM users"),
        "the held connection read the cursor: {held:?}"
    );
    let dropped = held[0].0;
    drop_every_connection(&mut admin, &db.url).await;
    eventually_ok("a read on a new held connection", || {
        let (store, ann) = (store.clone(), ann.id);
        async move {
            let cursor = store
                .notification_cursor(ann)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(cursor)
        }
    })
    .await;
    eventually("a new held connection", || {
        let url = db.url.clone();
        async move {
            let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
            let held = held_connections(&mut admin, READS).await;
            held.len() == 1 && held[0].0 != dropped
        }
    })
    .await;
    let cursor = store.notification_cursor(ann.id).await.unwrap();
    assert_eq!(cursor.last_seq, 0);
}

/// On PostgreSQL, a group commit's statement runs on a connection held for the committers, not
/// on one of the pool's (whose release costs a second round trip, sqlx's ping); a statement
/// the server refuses keeps its connection; and commits go on after the server drops every
/// connection: a held connection idle for a second is tested before it is used, and a broken
/// one replaced before a statement is sent on it.
pub(super) async fn a_group_commit_goes_over_a_held_connection_that_survives_the_server_dropping_it(
) {
    use sqlx::Connection;
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await.id;
    let commit = |title: &'static str| {
        let store = store.clone();
        async move {
            store
                .commit_notifications(vec![plain_draft(ann, title.into(), "m".into())], None)
                .await
        }
    };
    let first = commit("first").await.unwrap();
    assert_eq!(first[0].seq, 1);
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let held = held_connections(&mut admin, COMMITS).await;
    assert_eq!(
        held.len(),
        1,
        "one held connection after one commit: {held:?}"
    );
    assert!(
        held[0].1.contains("INSERT INTO notifications"),
        "the held connection ran the commit: {held:?}"
    );
    let (commits_on_the_pool,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND application_name NOT LIKE 'tickethub held%' \
         AND query LIKE '%INSERT INTO notifications%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(commits_on_the_pool, 0, "no pooled connection ran a commit");
    // A statement the server refuses (a recipient that does not exist) leaves the connection
    // fit for the next one: it is kept.
    let nobody = tickethub_actors::domain::UserId(ann.0 + 1_000_000);
    assert!(store
        .commit_notifications(vec![plain_draft(nobody, "lost".into(), "m".into())], None)
        .await
        .is_err());
    let kept = held_connections(&mut admin, COMMITS).await;
    assert_eq!(
        kept.iter().map(|(pid, _)| *pid).collect::<Vec<_>>(),
        [held[0].0],
        "the refused statement's connection kept: {kept:?}"
    );
    let dropped = held[0].0;
    drop_every_connection(&mut admin, &db.url).await;
    // Idle past the test's threshold (a second), the broken connection is found out by its
    // test and replaced: the commit goes through at its first try.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = commit("second").await.unwrap();
    assert_eq!(second[0].seq, 2);
    let held = held_connections(&mut admin, COMMITS).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_ne!(held[0].0, dropped, "a new held connection: {held:?}");
    // Dropped again and used at once, before its test is due: the commit may fail (the server
    // said it dropped the connection), never apply twice, and the next ones go through.
    drop_every_connection(&mut admin, &db.url).await;
    let third = commit("third").await;
    let fourth = eventually_ok("a commit after the drop", || {
        let commit = commit("fourth");
        async move { commit.await.map_err(|e| e.to_string()) }
    })
    .await;
    let titles: Vec<(String,)> =
        sqlx::query_as("SELECT title FROM notifications WHERE user_id = $1 ORDER BY seq")
            .bind(ann.0)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let titles: Vec<&str> = titles.iter().map(|(t,)| t.as_str()).collect();
    // The server's answer to a statement on a dropped connection is its notice of the drop:
    // nothing applied, and nothing is committed twice.
    let expected: &[&str] = match &third {
        Ok(_) => &["first", "second", "third", "fourth"],
        Err(_) => &["first", "second", "fourth"],
    };
    assert_eq!(titles, expected, "{third:?}");
    assert_eq!(fourth[0].seq, expected.len() as i64);
}

/// On PostgreSQL, a send's one recipient missing from the user cache is read on a held
/// connection, as a connect reads its user, not through the pool.
pub(super) async fn a_sends_one_missing_recipient_is_read_on_a_held_connection() {
    use sqlx::Connection;
    let db = TestDb::create(&Backend::postgres()).await;
    let store = open(&db).await;
    let ann = add_user(&store, "ann").await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    assert_eq!(held_connections(&mut admin, READS).await, []);
    assert_eq!(store.active_user_ids(&[ann.id]).await.unwrap(), [ann.id]);
    let held = held_connections(&mut admin, READS).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0].1.contains("acked_seq, sent_seq FROM users"),
        "the held connection read the recipient: {held:?}"
    );
}
