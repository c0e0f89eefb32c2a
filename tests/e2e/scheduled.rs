//! Scheduled sends end to end: `send_at` and `delay` on `POST /api/notifications/send/`, the
//! list and the cancel, recipients resolved when the send fires, `kill -9` during the wait and
//! an outage past the due time (fired late, once), and two nodes firing each send once.

use std::time::Duration;

use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::harness::{eventually_ok, scaled_ms, send_body, Backend, TestHub};

/// The wait of a scheduled send: long enough to check it has not arrived early, on a loaded
/// machine too.
fn ahead() -> Duration {
    Duration::from_millis(scaled_ms(3000))
}

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

async fn scheduling_hub(
    backend: &Backend,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> TestHub {
    TestHub::start_with(backend, |c| {
        c.escalation_poll_ms = 100;
        tweak(c);
    })
    .await
}

/// `POST /api/notifications/send/` with optional headers; answers status, body and headers.
async fn post_send(
    hub: &TestHub,
    by: &User,
    body: Value,
    key: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = hub
        .http
        .post(hub.url("/api/notifications/send/"))
        .bearer_auth(hub.token(by))
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap_or(Value::Null), headers)
}

/// The user's notifications of `kind`, oldest first.
async fn inbox(hub: &TestHub, user: &User, kind: &str) -> Vec<Value> {
    let page = hub
        .get_as(
            user,
            &format!("/api/notifications/?notification_type={kind}&page_size=100"),
            200,
        )
        .await;
    let mut list = page["results"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

async fn a_send_scheduled_ahead_arrives_then_and_not_before(backend: Backend) {
    let hub = scheduling_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let mut ws = hub.connect(&ada).await;
    let requested = chrono::Utc::now();
    let (status, stored, _) = post_send(
        &hub,
        &admin,
        send_body(
            &[ada.id.0],
            json!({"notification_type": "reminder", "title": "Stand-up", "delay": secs(ahead())}),
        ),
        None,
    )
    .await;
    assert_eq!(status, 202, "{stored}");
    assert_eq!(stored["status"], "PENDING");
    assert_eq!(stored["user_ids"], json!([ada.id.0]));
    let send_at =
        chrono::DateTime::parse_from_rfc3339(stored["send_at"].as_str().unwrap()).unwrap();
    let listed = hub
        .get_as(&admin, "/api/notifications/scheduled/", 200)
        .await;
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["results"][0]["id"], stored["id"]);
    // Nothing now; the notification when due, not before.
    assert!(inbox(&hub, &ada, "reminder").await.is_empty());
    let frame = ws.next_of("notification").await;
    let arrived = chrono::Utc::now();
    // The hub reckons the delay from when it received the call, after `requested` (`send_at`
    // is shown to the second only).
    let due = requested + ahead();
    assert!(
        arrived >= due,
        "arrived {arrived}, due no sooner than {due}"
    );
    assert!(arrived >= send_at, "arrived {arrived}, due {send_at}");
    assert_eq!(frame["title"], "Stand-up");
    let scheduled = &frame["data"]["scheduled_send"];
    assert_eq!(scheduled["id"], stored["id"], "{frame}");
    assert_eq!(scheduled["send_at"], stored["send_at"], "{frame}");
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(scheduled[field].as_str().unwrap()).unwrap()
    };
    assert!(at("fired_at") >= at("send_at"), "{frame}");
    // Fired after it was due and before it arrived: late by no more than that span.
    let late = scheduled["late_seconds"].as_f64().unwrap();
    let span = (arrived - due).num_milliseconds() as f64 / 1000.0;
    assert!(
        (0.0..=span).contains(&late),
        "late {late}, at most {span}: {frame}"
    );
    // Settled: no longer pending; the timeline says when it was due.
    eventually_ok("the send is settled", || async {
        let l = hub
            .get_as(&admin, "/api/notifications/scheduled/", 200)
            .await;
        if l["count"] == 0 {
            Ok(())
        } else {
            Err(format!("{l}"))
        }
    })
    .await;
    let id = frame["id"].as_i64().unwrap();
    let timeline = hub
        .get_as(&ada, &format!("/api/notifications/{id}/timeline/"), 200)
        .await;
    let due = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "scheduled_send_due")
        .cloned()
        .unwrap_or_else(|| panic!("{timeline}"));
    assert_eq!(due["scheduled_send_id"], stored["id"]);
    assert_eq!(inbox(&hub, &ada, "reminder").await.len(), 1);
}

async fn a_cancelled_send_never_arrives(backend: Backend) {
    let hub = scheduling_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let body = |title: &str, delay: Duration| {
        send_body(
            &[ada.id.0],
            json!({"notification_type": "reminder", "title": title, "delay": secs(delay)}),
        )
    };
    let (_, cancelled, _) = post_send(&hub, &admin, body("Cancelled", ahead()), None).await;
    let (_, later, _) = post_send(&hub, &admin, body("Later", ahead() * 2), None).await;
    let path = format!("/api/notifications/scheduled/{}/", cancelled["id"]);
    let token = hub.token(&admin);
    let del = |path: String| {
        let (hub, token) = (&hub, token.clone());
        async move {
            hub.call(reqwest::Method::DELETE, &path, Some(&token), None)
                .await
                .0
        }
    };
    assert_eq!(del(path.clone()).await, 204);
    assert_eq!(del(path.clone()).await, 409, "cancelled already");
    assert_eq!(
        del("/api/notifications/scheduled/999999/".into()).await,
        404
    );
    assert_eq!(del("/api/notifications/scheduled/abc/".into()).await, 404);
    // A user who is not an admin sees none of them and cancels none.
    let (status, _) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/notifications/scheduled/{}/", later["id"]),
            Some(&hub.token(&ada)),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        hub.get_as(&ada, "/api/notifications/scheduled/", 200).await["count"],
        0
    );
    // The later one arrives; the cancelled one, due before it, never did.
    let arrived = eventually_ok("the later send arrives", || async {
        let list = inbox(&hub, &ada, "reminder").await;
        if list.is_empty() {
            Err("nothing yet".to_owned())
        } else {
            Ok(list)
        }
    })
    .await;
    let titles: Vec<&str> = arrived
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Later"]);
}

async fn a_schedule_is_checked_and_limited(backend: Backend) {
    let hub = scheduling_hub(&backend, |c| {
        c.schedule_max_pending = 2;
        c.schedule_max_ahead = Duration::from_secs(3600);
    })
    .await;
    let admin = hub.user("boss", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let with = |extra: Value| {
        let mut b = send_body(&[ada.id.0], json!({"notification_type": "reminder"}));
        if let (Some(b), Value::Object(extra)) = (b.as_object_mut(), extra) {
            b.extend(extra);
        }
        b
    };
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    for (extra, why) in [
        (json!({"send_at": past}), "passed"),
        (json!({"send_at": far}), "at most"),
        (json!({"send_at": "tomorrow"}), "RFC 3339"),
        (json!({"delay": "soon"}), "duration"),
        (json!({"delay": "3h"}), "at most"),
        (json!({"delay": "1m", "send_at": far}), "not both"),
    ] {
        let (status, answer, _) = post_send(&hub, &admin, with(extra.clone()), None).await;
        assert_eq!(status, 400, "{extra}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(why),
            "{extra}: {answer}"
        );
    }
    // The same Idempotency-Key answers the same send, once.
    let body = with(json!({"delay": "30m", "title": "Once"}));
    let (status, first, _) = post_send(&hub, &admin, body.clone(), Some("sched-1")).await;
    assert_eq!(status, 202, "{first}");
    let (status, again, headers) = post_send(&hub, &admin, body, Some("sched-1")).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "{again}");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    // The cap: two pending per caller here.
    let (status, _, _) = post_send(&hub, &admin, with(json!({"delay": "30m"})), None).await;
    assert_eq!(status, 202);
    let (status, answer, _) = post_send(&hub, &admin, with(json!({"delay": "30m"})), None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        hub.get_as(&admin, "/api/notifications/scheduled/", 200)
            .await["count"],
        2
    );
    // Not over the socket.
    let mut ws = hub.connect(&admin).await;
    ws.send_json(json!({"type": "send_notification", "user_ids": [ada.id.0], "title": "t", "message": "m", "delay": "1m"}))
        .await;
    let error = ws.next_of("error").await;
    assert_eq!(error["code"], "bad_request", "{error}");
}

/// Recipients are resolved when the send fires: a role's users as they are then; a user
/// deactivated meanwhile gets nothing.
async fn recipients_are_resolved_when_the_send_fires(backend: Backend) {
    let hub = scheduling_hub(&backend, |_| {}).await;
    let admin = hub.user("boss", Role::Admin).await;
    let ada = hub.user("ada", Role::Developer).await;
    let bob = hub.user("bob", Role::Developer).await;
    let (status, stored, _) = post_send(
        &hub,
        &admin,
        json!({"role": "developer", "notification_type": "reminder", "title": "Retro", "message": "Room 4", "delay": secs(ahead())}),
        None,
    )
    .await;
    assert_eq!(status, 202, "{stored}");
    assert_eq!(stored["role"], "developer");
    hub.call(
        reqwest::Method::PATCH,
        &format!("/api/users/{}/", bob.id.0),
        Some(&hub.token(&admin)),
        Some(json!({"is_active": false})),
    )
    .await;
    let cleo = hub.user("cleo", Role::Developer).await;
    eventually_ok("the send fires", || async {
        let list = inbox(&hub, &cleo, "reminder").await;
        if list.len() == 1 {
            Ok(())
        } else {
            Err(format!("{list:?}"))
        }
    })
    .await;
    assert_eq!(inbox(&hub, &ada, "reminder").await.len(), 1);
    let bobs = crate::harness::db_number(
        &hub.db,
        &format!(
            "SELECT COUNT(*) FROM notifications WHERE user_id = {}",
            bob.id.0
        ),
    )
    .await;
    assert_eq!(
        bobs, 0,
        "a user deactivated before the send fired gets nothing"
    );
}

/// `kill -9` while a send waits, and the hub down past its time: it fires once when the hub
/// is back, and says how late.
async fn kill_9_and_an_outage_fire_the_send_late_and_once(backend: Backend) {
    let mut cluster =
        crate::nodes::Cluster::start(&backend, 1, &["--escalation-poll-ms", "100"]).await;
    let admin = cluster.user("boss", Role::Admin).await;
    let ada = cluster.user("ada", Role::Developer).await;
    let asked = tokio::time::Instant::now();
    let stored = cluster
        .post(
            0,
            &admin,
            "/api/notifications/send/",
            send_body(
                &[ada.id.0],
                json!({"notification_type": "reminder", "title": "Late", "delay": secs(ahead())}),
            ),
            202,
        )
        .await;
    cluster.nodes[0].kill().await;
    // Down past the due time (the answer's `send_at` is to the second; the delay is exact).
    tokio::time::sleep_until(asked + ahead() + Duration::from_millis(1500)).await;
    cluster.nodes[0].restart().await;
    let list = eventually_ok("the send fires after the restart", || async {
        let (_, page) = cluster
            .call(
                0,
                reqwest::Method::GET,
                &ada,
                "/api/notifications/?notification_type=reminder",
                None,
            )
            .await;
        let list = page["results"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            Err(format!("{page}"))
        } else {
            Ok(list)
        }
    })
    .await;
    assert_eq!(list.len(), 1, "{list:?}");
    let late = list[0]["data"]["scheduled_send"]["late_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        late >= 1.0,
        "fired {late} s late: {stored} {:?}",
        list[0]["data"]
    );
    let db = crate::harness::TestDb::existing(cluster.db_url());
    eventually_ok("the send is recorded fired, late", || async {
        let fired = crate::harness::db_number(&db, "SELECT COUNT(*) FROM scheduled_sends WHERE status = 'FIRED' AND notified = 1 AND detail LIKE '%after its time%'").await;
        if fired == 1 { Ok(()) } else { Err("not yet".to_owned()) }
    })
    .await;
    let (_, page) = cluster
        .call(
            0,
            reqwest::Method::GET,
            &ada,
            "/api/notifications/?notification_type=reminder",
            None,
        )
        .await;
    assert_eq!(page["count"], 1, "once: {page}");
}

/// Two nodes on one PostgreSQL database: each of several sends due at once fires once.
async fn two_nodes_fire_each_send_once() {
    let backend = Backend::postgres();
    let cluster = crate::nodes::Cluster::start(&backend, 2, &["--escalation-poll-ms", "50"]).await;
    let admin = cluster.user("boss", Role::Admin).await;
    let ada = cluster.user("ada", Role::Developer).await;
    let send_at =
        (chrono::Utc::now() + chrono::Duration::milliseconds(scaled_ms(2000) as i64)).to_rfc3339();
    for i in 0..10 {
        cluster
            .post(
                i % 2,
                &admin,
                "/api/notifications/send/",
                send_body(&[ada.id.0], json!({"notification_type": "reminder", "title": format!("n{i}"), "send_at": send_at})),
                202,
            )
            .await;
    }
    let db = crate::harness::TestDb::existing(cluster.db_url());
    eventually_ok("every send fires", || async {
        let fired = crate::harness::db_number(
            &db,
            "SELECT COUNT(*) FROM scheduled_sends WHERE status = 'FIRED'",
        )
        .await;
        if fired == 10 {
            Ok(())
        } else {
            Err(format!("{fired} fired"))
        }
    })
    .await;
    let (_, page) = cluster
        .call(
            0,
            reqwest::Method::GET,
            &ada,
            "/api/notifications/?notification_type=reminder&page_size=100",
            None,
        )
        .await;
    let mut titles: Vec<String> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    expected.sort();
    assert_eq!(titles, expected, "each once");
}

crate::trials! {
    both: [
        a_send_scheduled_ahead_arrives_then_and_not_before,
        a_cancelled_send_never_arrives,
        a_schedule_is_checked_and_limited,
        recipients_are_resolved_when_the_send_fires,
        kill_9_and_an_outage_fire_the_send_late_and_once,
    ],
    tests: [two_nodes_fire_each_send_once],
    sync: [],
}
