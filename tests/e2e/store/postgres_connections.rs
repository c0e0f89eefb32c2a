//! The store's connections to PostgreSQL: the held connection of a connect's read, and the
//! plans every connection asks for.

use super::{add_user, open};
use crate::harness::{eventually, eventually_ok, Backend, TestDb};

/// The held connections' pids and last statements (`pg_stat_activity`).
async fn held_connections(admin: &mut sqlx::PgConnection) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT pid, query FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'tickethub held reads'",
    )
    .fetch_all(admin)
    .await
    .unwrap()
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
    let held = held_connections(&mut admin).await;
    assert_eq!(
        held.len(),
        1,
        "one held connection after one read: {held:?}"
    );
    assert!(
        held[0].1.contains("acked_seq, sent_seq FROM users"),
        "the held connection read the cursor: {held:?}"
    );
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let dropped = held[0].0;
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
            let held = held_connections(&mut admin).await;
            held.len() == 1 && held[0].0 != dropped
        }
    })
    .await;
    let cursor = store.notification_cursor(ann.id).await.unwrap();
    assert_eq!(cursor.last_seq, 0);
}
