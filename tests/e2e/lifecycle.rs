//! The data lifecycle: retention purges what is old enough, never what was not delivered;
//! erasure removes a person and keeps their tickets.

use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{db_number, eventually, eventually_some, Backend, TestHub, Ws};

/// A hub whose purges run only when a test asks, with everything older than now purgeable.
async fn purging_hub(
    backend: &Backend,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    TestHub::start_with(backend, |c| {
        c.retention = Duration::ZERO;
        c.retention_unread = Some(Duration::ZERO);
        c.retention_interval = Duration::from_secs(3600);
        tweak(c);
    })
    .await
}

/// Starts a sweep and waits for it to finish; answers what the purge actor says it removed.
async fn sweep(hub: &TestHub) -> tickethub_actors::purge::PurgeSnapshot {
    hub.sweep().await
}

/// Runs a sweep; answers what it alone removed, per table (none: absent).
async fn sweep_removed(hub: &TestHub) -> std::collections::BTreeMap<&'static str, u64> {
    let before = hub.purge_snapshot().await.removed;
    let after = sweep(hub).await.removed;
    after
        .into_iter()
        .map(|(table, n)| (table, n - before.get(table).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

async fn send(hub: &TestHub, admin: &User, to: &User, title: &str) {
    hub.post_as(
        admin,
        "/api/notifications/send/",
        json!({"user_ids": [to.id.0], "title": title, "message": "m"}),
        201,
    )
    .await;
}

async fn seqs_stored(hub: &TestHub, user: &User) -> Vec<i64> {
    let n = db_number(
        &hub.db,
        &format!(
            "SELECT COUNT(*) FROM notifications WHERE user_id = {}",
            user.id.0
        ),
    )
    .await;
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(
            db_number(
                &hub.db,
                &format!(
                    "SELECT seq FROM notifications WHERE user_id = {} ORDER BY seq LIMIT 1 OFFSET {i}",
                    user.id.0
                ),
            )
            .await,
        );
    }
    seqs
}

async fn retention_purges_read_history_and_keeps_what_was_never_delivered(backend: Backend) {
    let hub = purging_hub(&backend, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let project = hub.project("RET", &[&admin, &bob]).await;
    // Ann hears of five notifications on her socket.
    let mut ws = hub.connect(&ann).await;
    for i in 1..=5 {
        send(&hub, &admin, &ann, &format!("n{i}")).await;
    }
    let live = ws.notifications(5).await;
    let ids: Vec<i64> = live.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    // She reads the first two and deletes the third; the fourth and fifth stay unread.
    for id in &ids[..2] {
        hub.post_as(
            &ann,
            &format!("/api/notifications/{id}/mark_as_read/"),
            json!({}),
            200,
        )
        .await;
    }
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/{}/", ids[2]),
            Some(&hub.token(&ann)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    drop(ws);
    // Gone, not closing: what comes next is sent to no socket.
    hub.offline(&ann).await;
    eventually("ann's socket records what it was sent", || async {
        hub.store
            .notification_cursor(ann.id)
            .await
            .unwrap()
            .sent_seq
            == 5
    })
    .await;
    // Two more while she is away: unread, and never delivered to a socket.
    send(&hub, &admin, &ann, "n6").await;
    send(&hub, &admin, &ann, "n7").await;
    // Ticket history, and an admin's notification no socket was sent.
    crate::tickets::create_ticket(&hub, &bob, project.id.0, "Old").await;
    assert!(db_number(&hub.db, "SELECT COUNT(*) FROM ticket_events").await > 0);
    assert!(db_number(&hub.db, "SELECT COUNT(*) FROM stream_events").await > 0);

    let purged = sweep(&hub).await;
    assert_eq!(purged.removed.get("read_notifications"), Some(&2));
    assert_eq!(purged.removed.get("deleted_notifications"), Some(&1));
    assert_eq!(purged.removed.get("unread_notifications"), Some(&2));
    // Really deleted, not hidden.
    assert_eq!(seqs_stored(&hub, &ann).await, [6, 7]);
    assert_eq!(
        db_number(&hub.db, "SELECT COUNT(*) FROM ticket_events").await,
        0
    );
    assert_eq!(
        db_number(&hub.db, "SELECT COUNT(*) FROM stream_events").await,
        0
    );
    assert_eq!(
        seqs_stored(&hub, &admin).await,
        [1],
        "never delivered: kept"
    );
    // A purged notification's timeline is gone, for its recipient and for admins.
    for who in [&ann, &admin] {
        hub.get_as(
            who,
            &format!("/api/notifications/{}/timeline/", ids[0]),
            404,
        )
        .await;
    }
    // Replay from the start gives what is kept, in order, and says so truthfully.
    let mut ws = Ws::connect(&hub.ws_url(&format!(
        "/ws/notifications/?token={}&last_seq=0",
        hub.token(&ann)
    )))
    .await;
    ws.established().await;
    let replayed: Vec<Value> = ws.replayed.iter().map(|n| n["seq"].clone()).collect();
    assert_eq!(replayed, [json!(6), json!(7)]);
    assert_eq!(ws.replay_complete["count"], 2);
    assert_eq!(ws.replay_complete["last_seq"], 7);
    // Seqs never repeat.
    send(&hub, &admin, &ann, "n8").await;
    assert_eq!(ws.notifications(1).await[0]["seq"], 8);
    // Once her socket's writes are recorded, what it was sent may go (unread retention is
    // zero here); what arrives while she is away again may not.
    drop(ws);
    hub.offline(&ann).await;
    eventually("ann's socket records 8 as sent", || async {
        hub.store
            .notification_cursor(ann.id)
            .await
            .unwrap()
            .sent_seq
            == 8
    })
    .await;
    send(&hub, &admin, &ann, "n9").await;
    let purged = sweep_removed(&hub).await;
    assert_eq!(purged.get("unread_notifications"), Some(&3), "{purged:?}");
    assert_eq!(seqs_stored(&hub, &ann).await, [9]);
}

async fn unread_notifications_stay_unless_retention_unread_says_otherwise(backend: Backend) {
    let hub = purging_hub(&backend, |c| c.retention_unread = None).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    // Three notifications reach her socket, each with an email.
    let mut ws = hub.connect(&ann).await;
    for i in 1..=3 {
        hub.post_as(
            &admin,
            "/api/notifications/send/",
            json!({"user_ids": [ann.id.0], "title": format!("n{i}"), "message": "m", "channels": ["email"]}),
            201,
        )
        .await;
    }
    let live = ws.notifications(3).await;
    let first = live[0]["id"].as_i64().unwrap();
    hub.post_as(
        &ann,
        &format!("/api/notifications/{first}/mark_as_read/"),
        json!({}),
        200,
    )
    .await;
    eventually("the three mails are sent", || async {
        db_number(
            &hub.db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'SENT'",
        )
        .await
            == 3
    })
    .await;
    drop(ws);
    eventually("ann's socket records what it was sent", || async {
        hub.store
            .notification_cursor(ann.id)
            .await
            .unwrap()
            .sent_seq
            == 3
    })
    .await;

    // (The recorder is the test process's: other tests' purges count too.)
    let counted = |m: &crate::harness::Metrics, table: &str| {
        m.value(
            "tickethub_purged_rows_total",
            &[&format!("table=\"{table}\"")],
        )
    };
    let before = hub.metrics().await;
    let purged = sweep_removed(&hub).await;
    let after = hub.metrics().await;
    for (table, n) in [("read_notifications", 1.0), ("finished_deliveries", 2.0)] {
        assert!(
            counted(&after, table) >= counted(&before, table) + n,
            "{table}: {after}"
        );
    }
    // The read one goes with its mail; the unread ones stay, delivered or not, and their
    // finished mails go.
    assert_eq!(purged.get("read_notifications"), Some(&1), "{purged:?}");
    assert_eq!(purged.get("unread_notifications"), None, "{purged:?}");
    assert_eq!(purged.get("finished_deliveries"), Some(&2), "{purged:?}");
    assert_eq!(seqs_stored(&hub, &ann).await, [2, 3]);
    assert_eq!(
        db_number(&hub.db, "SELECT COUNT(*) FROM deliveries").await,
        0
    );

    // The supervision tree shows what the purge removed, and /metrics counts it.
    let tree = hub.get_as(&admin, "/api/admin/actors", 200).await;
    let node = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "purge")
        .cloned()
        .unwrap_or_else(|| panic!("no purge node in {tree}"));
    assert_eq!(node["status"], "running", "{node}");
    assert_eq!(node["removed"]["read_notifications"], 1, "{node}");
    assert_eq!(node["removed"]["finished_deliveries"], 2, "{node}");
    assert_eq!(node["sweeps"], 1, "{node}");
    // A purge actor that fails is restarted alone, and sweeps again.
    hub.hub
        .inject_fault(tickethub_actors::hub::RootChild::Purge);
    eventually_some("a fresh purge actor answers", || async {
        hub.hub.purge_snapshot().await.filter(|s| s.sweeps == 0)
    })
    .await;
    let (status, ready) = hub.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    hub.post_as(
        &ann,
        &format!("/api/notifications/{}/mark_as_read/", live[1]["id"]),
        json!({}),
        200,
    )
    .await;
    let purged = sweep_removed(&hub).await;
    assert_eq!(purged.get("read_notifications"), Some(&1), "{purged:?}");
    assert_eq!(seqs_stored(&hub, &ann).await, [3]);
}

async fn a_purge_runs_beside_live_commits(backend: Backend) {
    // A purge of many small batches, slow on purpose: commits go on between its batches.
    let hub = purging_hub(&backend, |c| {
        c.retention_unread = None;
        c.retention_batch = 50;
        c.retention_pause_ms = 200;
    })
    .await;
    let admin = hub.user("root", Role::Admin).await;
    let mut readers = Vec::new();
    for i in 0..10 {
        readers.push(hub.user(&format!("reader{i}"), Role::Client).await);
    }
    // 2,000 read notifications: 40 batches, eight seconds of pauses at the least.
    for _ in 0..200 {
        hub.post_as(
            &admin,
            "/api/notifications/send/",
            json!({"user_ids": readers.iter().map(|u| u.id.0).collect::<Vec<_>>(), "title": "t", "message": "m"}),
            201,
        )
        .await;
    }
    for r in &readers {
        hub.post_as(r, "/api/notifications/mark_all_as_read/", json!({}), 200)
            .await;
    }
    let carl = hub.user("carl", Role::Client).await;
    let mut ws = hub.connect(&carl).await;
    hub.hub.purge_now();
    eventually("the sweep starts", || async {
        hub.hub.purge_snapshot().await.is_some_and(|s| s.sweeping)
    })
    .await;
    // Commits and their fan-out go on while the purge runs.
    for i in 0..5 {
        send(&hub, &admin, &carl, &format!("live{i}")).await;
        assert_eq!(ws.notifications(1).await[0]["title"], format!("live{i}"));
    }
    let s = hub.purge_snapshot().await;
    assert!(s.sweeping, "the purge ended before the commits: {s:?}");
    eventually("the sweep ends", || async {
        hub.hub.purge_snapshot().await.is_some_and(|s| !s.sweeping)
    })
    .await;
    let s = hub.purge_snapshot().await;
    assert_eq!(s.removed.get("read_notifications"), Some(&2000));
    assert_eq!(
        db_number(
            &hub.db,
            "SELECT COUNT(*) FROM notifications WHERE is_read = true"
        )
        .await,
        0
    );
}

async fn a_sweep_vacuums_what_it_deleted_where_nothing_else_would(backend: Backend) {
    let postgres = matches!(backend, Backend::Postgres(_));
    let hub = purging_hub(&backend, |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    for i in 0..3 {
        send(&hub, &admin, &ann, &format!("n{i}")).await;
    }
    hub.post_as(&ann, "/api/notifications/mark_all_as_read/", json!({}), 200)
        .await;
    let before = sweep(&hub).await;
    // All but the newest, which is always kept.
    assert_eq!(before.removed.get("read_notifications"), Some(&2));
    // A sweep that deletes nothing vacuums nothing.
    let idle = sweep(&hub).await;
    assert_eq!(idle.last_removed, 0, "{idle:?}");
    assert_eq!(idle.vacuumed, before.vacuumed, "{idle:?}");
    // PostgreSQL's autovacuum (its default) reclaims dead rows on its own; with it off the
    // sweep vacuums the tables it deleted from, and those its deletions cascaded to. SQLite
    // reuses a deleted row's pages at once.
    let autovacuum = if postgres {
        db_number(
            &hub.db,
            "SELECT (current_setting('autovacuum') = 'on')::int::bigint",
        )
        .await
            == 1
    } else {
        true
    };
    if autovacuum {
        assert_eq!(before.vacuumed, 0, "{before:?}");
        return;
    }
    // notifications, and the tables pointing at it (deliveries, escalations, replies …).
    assert!(before.vacuumed >= 2, "{before:?}");
    assert_eq!(before.errors, 0, "{before:?}");
    // PostgreSQL's own count of the table's vacuums (its dead rows are not counted here: a
    // transaction open elsewhere in the database at that moment may keep some for the next).
    let vacuums = "SELECT vacuum_count FROM pg_stat_user_tables \
                   WHERE relname = 'notifications' AND schemaname = current_schema()";
    eventually("notifications was vacuumed", || async {
        db_number(&hub.db, vacuums).await >= 1
    })
    .await;
    // Its statistics, never taken, were taken with it; the next sweep vacuums it again but
    // leaves statistics younger than ten minutes as they are.
    let analyzes = "SELECT analyze_count FROM pg_stat_user_tables \
                    WHERE relname = 'notifications' AND schemaname = current_schema()";
    eventually("notifications was analyzed", || async {
        db_number(&hub.db, analyzes).await >= 1
    })
    .await;
    assert_eq!(db_number(&hub.db, analyzes).await, 1);
    for i in 3..5 {
        send(&hub, &admin, &ann, &format!("n{i}")).await;
    }
    hub.post_as(&ann, "/api/notifications/mark_all_as_read/", json!({}), 200)
        .await;
    let again = sweep(&hub).await;
    assert_eq!(
        again.removed.get("read_notifications"),
        Some(&4),
        "{again:?}"
    );
    assert!(again.vacuumed >= before.vacuumed + 2, "{again:?}");
    eventually("notifications was vacuumed again", || async {
        db_number(&hub.db, vacuums).await >= 2
    })
    .await;
    assert_eq!(db_number(&hub.db, analyzes).await, 1);
    // The supervision tree says so.
    let text = hub
        .get_as(&admin, "/api/admin/actors", 200)
        .await
        .to_string();
    assert!(
        text.contains(&format!("\"vacuumed\":{}", again.vacuumed)),
        "{text}"
    );
}

/// With the server's autovacuum off, the sweep's `VACUUM` rests as autovacuum does
/// (`vacuum_cost_delay`) rather than holding the server's disk against the commits: the
/// server shows the rest as its session's `VacuumDelay` wait, which an unpaced vacuum never
/// takes.
async fn a_sweeps_vacuum_rests_as_autovacuum_does() {
    let hub = purging_hub(&Backend::postgres(), |c| {
        c.retention_unread = None;
        c.retention_batch = 5000;
        c.retention_pause_ms = 0;
    })
    .await;
    let autovacuum = db_number(
        &hub.db,
        "SELECT (current_setting('autovacuum') = 'on')::int::bigint",
    )
    .await;
    if autovacuum == 1 {
        println!("the server's autovacuum is on: no sweep vacuums, nothing to pace");
        return;
    }
    let ann = hub.user("ann", Role::Client).await;
    // 20,000 read notifications, a day old: enough pages for the vacuum to rest many times.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&hub.db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO notifications (user_id, seq, notification_type, title, message, is_read, \
           read_at, created_at) \
         SELECT $1, g, 'general', 't', repeat('m', 200), true, now() - interval '1 day', \
           now() - interval '1 day' FROM generate_series(1, 20000) g",
    )
    .bind(ann.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET last_seq = 20000 WHERE id = $1")
        .bind(ann.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (swept, rested) = tokio::join!(
        async {
            let s = sweep(&hub).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            s
        },
        async {
            let mut conn = sqlx::PgConnection::connect(&hub.db.url).await.unwrap();
            loop {
                let resting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event = 'VacuumDelay'",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                if resting > 0 {
                    return true;
                }
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
            }
        }
    );
    assert_eq!(
        swept.removed.get("read_notifications"),
        Some(&19_999),
        "all but the newest: {swept:?}"
    );
    assert!(swept.vacuumed >= 2, "{swept:?}");
    assert!(rested, "the sweep's vacuum never rested: {swept:?}");
}

/// On PostgreSQL a purge batch commits without waiting for the disk (`synchronous_commit`
/// off for its transaction alone), where a live notification's commit waits. Triggers record
/// the setting each statement ran under: the batches' deletions (the folded path of
/// notifications, the plain one of `stream_events`) and the live inserts.
async fn a_purge_batch_commits_without_waiting_for_the_disk() {
    let hub = purging_hub(&Backend::postgres(), |_| {}).await;
    let admin = hub.user("root", Role::Admin).await;
    let ann = hub.user("ann", Role::Client).await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&hub.db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE commit_modes (tbl TEXT NOT NULL, op TEXT NOT NULL, mode TEXT NOT NULL); \
         CREATE FUNCTION record_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO commit_modes VALUES (TG_TABLE_NAME, TG_OP, \
             current_setting('synchronous_commit')); RETURN NULL; END $$; \
         CREATE TRIGGER record_commit_mode AFTER INSERT OR DELETE ON notifications \
           FOR EACH STATEMENT EXECUTE FUNCTION record_commit_mode(); \
         CREATE TRIGGER record_commit_mode AFTER DELETE ON stream_events \
           FOR EACH STATEMENT EXECUTE FUNCTION record_commit_mode();",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for i in 0..3 {
        send(&hub, &admin, &ann, &format!("n{i}")).await;
    }
    hub.post_as(&ann, "/api/notifications/mark_all_as_read/", json!({}), 200)
        .await;
    sqlx::query(
        "INSERT INTO stream_events (user_id, kind, first_seq, last_seq, at) \
         SELECT $1, 'acked', g, g, now() - interval '1 day' FROM generate_series(1, 3) g",
    )
    .bind(ann.id.0)
    .execute(&mut conn)
    .await
    .unwrap();
    let swept = sweep(&hub).await;
    assert_eq!(
        swept.removed.get("read_notifications"),
        Some(&2),
        "{swept:?}"
    );
    assert_eq!(swept.removed.get("stream_events"), Some(&3), "{swept:?}");
    // Live commits, after the batches as before them, keep the server's setting.
    send(&hub, &admin, &ann, "after").await;
    let (server,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let modes: Vec<(String, String, String)> =
        sqlx::query_as("SELECT DISTINCT tbl, op, mode FROM commit_modes ORDER BY 1, 2")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let row = |t: &str, o: &str, m: &str| (t.to_owned(), o.to_owned(), m.to_owned());
    assert_eq!(
        modes,
        vec![
            row("notifications", "DELETE", "off"),
            row("notifications", "INSERT", &server),
            row("stream_events", "DELETE", "off"),
        ]
    );
}

async fn erasure_removes_a_person_and_keeps_their_tickets(backend: Backend) {
    let (a, b) = TestHub::pair_on_redis(&backend).await;
    let admin = a.user_with("root", Role::Admin, true).await;
    let dev = a.user("dev", Role::Developer).await;
    let ann = a.user("ann", Role::Client).await;
    let project = a.project("ERA", &[&admin, &dev, &ann]).await;
    let ticket = crate::tickets::create_ticket(&a, &ann, project.id.0, "Printer on fire").await;
    let id = ticket["id"].as_i64().unwrap();
    a.post_as(
        &admin,
        &format!("/api/tickets/{id}/open_ticket/"),
        json!({}),
        200,
    )
    .await;
    a.post_as(
        &admin,
        &format!("/api/tickets/{id}/assign/"),
        json!({"developer_ids": [dev.id.0]}),
        200,
    )
    .await;
    a.post_as(
        &ann,
        &format!("/api/tickets/{id}/comments/"),
        json!({"body": "Still burning"}),
        201,
    )
    .await;
    // Her phone is registered for pushes.
    a.store
        .register_device(
            ann.id,
            tickethub_actors::ports::NewDevice {
                kind: tickethub_actors::routing::Channel::Fcm,
                token: "ann-phone-token".into(),
                p256dh: None,
                auth: None,
            },
            20,
        )
        .await
        .unwrap();
    // Ann listens on the other node.
    let mut ws = b.connect(&ann).await;
    let path = format!("/api/users/{}/", ann.id.0);
    let erase = |who: &User, query: &str| {
        let (a, token, url) = (&a, a.token(who), format!("{path}{query}"));
        async move {
            a.call(reqwest::Method::DELETE, &url, Some(&token), None)
                .await
        }
    };
    assert_eq!(erase(&dev, "?erase=true").await.0, 403);
    assert_eq!(erase(&admin, "").await.0, 400, "erasure must be asked for");
    assert_eq!(erase(&admin, "?erase=true").await.0, 204);
    // Her socket on the other node closes; she can no longer log in.
    assert_eq!(ws.close_code().await, 4001);
    let (status, _) = a
        .post(
            "/api/auth/login/",
            None,
            json!({"username": "ann", "password": "ann-password"}),
        )
        .await;
    assert_eq!(status, 401);
    // Her inbox, preferences, memberships and devices are gone; her row is nameless.
    for table in [
        "devices",
        "notifications",
        "preferences",
        "project_members",
        "refresh_tokens",
    ] {
        assert_eq!(
            db_number(
                &a.db,
                &format!("SELECT COUNT(*) FROM {table} WHERE user_id = {}", ann.id.0)
            )
            .await,
            0,
            "{table}"
        );
    }
    let shown = a.get_as(&admin, &path, 200).await;
    assert_eq!(shown["username"], format!("erased-{}", ann.id.0));
    assert_eq!(shown["display_name"], "Erased user");
    assert_eq!(shown["email"], Value::Null);
    assert_eq!(shown["is_active"], false);
    // Her ticket and comment stay, signed "Erased user".
    let detail = a.get_as(&admin, &format!("/api/tickets/{id}/"), 200).await;
    assert_eq!(detail["title"], "Printer on fire");
    assert_eq!(detail["created_by_name"], "Erased user");
    assert_eq!(detail["comments"][0]["author_name"], "Erased user");
    // Other people's notifications no longer name her.
    let devs = a
        .get_as(&dev, "/api/notifications/?page_size=100", 200)
        .await;
    let text = devs.to_string();
    assert!(text.contains("Erased user commented on ERA-1"), "{text}");
    assert!(!text.contains("ann"), "{text}");
    // The name is free again.
    let (status, body) = a
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "ann", "password": "a-new-password"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

crate::trials! {
    both: [
        retention_purges_read_history_and_keeps_what_was_never_delivered,
        unread_notifications_stay_unless_retention_unread_says_otherwise,
        a_purge_runs_beside_live_commits,
        a_sweep_vacuums_what_it_deleted_where_nothing_else_would,
        erasure_removes_a_person_and_keeps_their_tickets,
    ],
    tests: [
        a_sweeps_vacuum_rests_as_autovacuum_does,
        a_purge_batch_commits_without_waiting_for_the_disk,
    ],
    sync: [],
}
