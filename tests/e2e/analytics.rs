//! Delivery analytics (`GET /api/admin/analytics`): the figures are what the test did (sends,
//! socket pushes and acks, reads and how fast, mails sent and refused, an escalation step
//! fired), the filters narrow them, only admins see them, bad input is refused, and they stay
//! the same once the purge (and an erasure) has deleted the rows they were made of.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tickethub_actors::domain::{Role, User};

use crate::fakes::Smtp;
use crate::harness::{db_number, eventually, Backend, TestDb, TestHub};

/// A routing file: a `pager` notification still unread a second after its commit is mailed.
const PAGER_POLICY: &str = r#"
[[escalation]]
name = "pager"
events = ["pager"]
steps = [ { after = "1s", unless = "read", channels = ["email"] } ]
"#;

/// A value bound to a statement run straight on a test database.
#[derive(Clone, Copy)]
pub(crate) enum Bind {
    At(DateTime<Utc>),
    Int(i64),
}

/// Runs `sql` (with `$1`… bound to `binds`) on the test database, past the hub; answers how
/// many rows it changed.
pub(crate) async fn db_exec(db: &TestDb, sql: &str, binds: &[Bind]) -> u64 {
    use sqlx::Connection;
    macro_rules! run {
        ($conn:ty) => {{
            let mut conn = <$conn>::connect(&db.url).await.unwrap();
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match *b {
                    Bind::At(t) => q.bind(t),
                    Bind::Int(i) => q.bind(i),
                };
            }
            let done = q.execute(&mut conn).await.unwrap().rows_affected();
            let _ = conn.close().await;
            done
        }};
    }
    if db.url.starts_with("sqlite") {
        run!(sqlx::SqliteConnection)
    } else {
        run!(sqlx::PgConnection)
    }
}

/// Moves every notification (with its outbox rows, their attempts, and its escalation steps)
/// to `at`, as if it had all happened then, and each notification `id` read `delay` seconds
/// after its commit.
pub(crate) async fn pin_history(db: &TestDb, at: DateTime<Utc>, reads: &[(i64, i64)]) {
    let at = Bind::At(at);
    db_exec(db, "UPDATE notifications SET created_at = $1", &[at]).await;
    db_exec(
        db,
        "UPDATE deliveries SET created_at = $1, updated_at = $1, next_attempt_at = $1, \
         sent_at = CASE WHEN sent_at IS NULL THEN NULL ELSE $1 END",
        &[at],
    )
    .await;
    db_exec(db, "UPDATE delivery_attempts SET at = $1", &[at]).await;
    db_exec(
        db,
        "UPDATE escalations SET created_at = $1, due_at = $1, updated_at = $1",
        &[at],
    )
    .await;
    for (id, delay) in reads {
        let Bind::At(t) = at else { unreachable!() };
        db_exec(
            db,
            "UPDATE notifications SET read_at = $1 WHERE id = $2",
            &[
                Bind::At(t + chrono::Duration::seconds(*delay)),
                Bind::Int(*id),
            ],
        )
        .await;
    }
}

/// The ids of a user's notifications of a type, oldest first.
pub(crate) async fn ids_of(hub: &TestHub, user: &User, kind: &str) -> Vec<i64> {
    let page = hub
        .get_as(
            user,
            &format!("/api/notifications/?notification_type={kind}&page_size=100"),
            200,
        )
        .await;
    let mut ids: Vec<i64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// `…Z`, as a query value.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the scene below did.
struct Scene {
    hub: TestHub,
    _smtp: Smtp,
    _routing: tempfile::NamedTempFile,
    admin: User,
    ann: User,
    cid: User,
}

/// Ann (a socket open), Bob and Cid (whose mail server refuses them) are each sent two `outage`
/// notifications with an email; Ann acknowledges hers on her socket and reads both (after a
/// minute and after two hours), Bob reads one (after five minutes). Bob is paged once and does
/// not read it: the escalation step mails him a second later. Everything settles, then all of
/// it is moved to `at` (one hour).
async fn scene(
    backend: &Backend,
    at: DateTime<Utc>,
    tweak: impl FnOnce(&mut tickethub::ServeConfig),
) -> Scene {
    let smtp = Smtp::start().await;
    let routing = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(routing.path(), PAGER_POLICY).unwrap();
    let (url, path) = (smtp.url(), routing.path().to_owned());
    let hub = TestHub::start_with(backend, |c| {
        crate::delivery::quick(c);
        c.channels.email.smtp_url = Some(url);
        c.routing = Some(path);
        c.escalation_poll_ms = 100;
        tweak(c);
    })
    .await;
    let admin = hub.user_with("root", Role::Admin, true).await;
    let ann = hub.user("ann", Role::Client).await;
    let bob = hub.user("bob", Role::Client).await;
    let cid = hub.user("cid", Role::Client).await;
    hub.store
        .update_profile(
            cid.id,
            tickethub_actors::ports::ProfileChanges {
                addresses: vec![(
                    tickethub_actors::routing::Channel::Email,
                    Some("cid@invalid.test".into()),
                )],
                // Set as an admin would: verified.
                vouched: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    hub.send(
        &admin,
        &[&bob],
        json!({"notification_type": "pager", "title": "Wake up"}),
    )
    .await;
    let mut ws = hub.connect(&ann).await;
    for i in 1..=2 {
        hub.send(
            &admin,
            &[&ann, &bob, &cid],
            json!({"notification_type": "outage", "title": format!("Outage {i}"), "channels": ["email"]}),
        )
        .await;
    }
    let pushed = ws.notifications(2).await;
    ws.send_json(json!({"type": "ack", "seq": pushed[1]["seq"]}))
        .await;
    let (anns, bobs) = (
        ids_of(&hub, &ann, "outage").await,
        ids_of(&hub, &bob, "outage").await,
    );
    for (who, id) in [(&ann, anns[0]), (&ann, anns[1]), (&bob, bobs[0])] {
        hub.post_as(
            who,
            &format!("/api/notifications/{id}/mark_as_read/"),
            json!({}),
            200,
        )
        .await;
    }
    eventually("ann's acknowledgement is recorded", || async {
        hub.store
            .notification_cursor(ann.id)
            .await
            .unwrap()
            .acked_seq
            == 2
    })
    .await;
    // What a socket was written is recorded by the run, at the latest when it closes.
    drop(ws);
    eventually("ann's socket records what it was sent", || async {
        hub.store
            .notification_cursor(ann.id)
            .await
            .unwrap()
            .sent_seq
            == 2
    })
    .await;
    eventually(
        "the step fires and every mail is sent or refused",
        || async {
            db_number(
                &hub.db,
                "SELECT COUNT(*) FROM escalations WHERE status = 'FIRED'",
            )
            .await
                == 1
                && db_number(&hub.db, "SELECT COUNT(*) FROM deliveries").await == 7
                && db_number(
                    &hub.db,
                    "SELECT COUNT(*) FROM deliveries WHERE status IN ('SENT', 'FAILED')",
                )
                .await
                    == 7
        },
    )
    .await;
    pin_history(
        &hub.db,
        at,
        &[(anns[0], 60), (anns[1], 7_200), (bobs[0], 300)],
    )
    .await;
    Scene {
        hub,
        _smtp: smtp,
        _routing: routing,
        admin,
        ann,
        cid,
    }
}

/// The figures the scene makes, per (type, channel), in one bucket.
fn expected() -> BTreeMap<(&'static str, &'static str), Value> {
    let row = |committed,
               pushed,
               delivered,
               failed,
               read,
               within: [i64; 3],
               p50: Value,
               p90: Value,
               esc: f64| {
        json!({
            "committed": committed, "pushed": pushed, "delivered": delivered, "failed": failed,
            "read": read, "read_5m": within[0], "read_1h": within[1], "read_1d": within[2],
            "time_to_read_p50_s": p50, "time_to_read_p90_s": p90,
            "escalations_per_100": esc, "push_suppressed": 0, "batched": 0, "digested": 0,
        })
    };
    BTreeMap::from([
        // Six notifications; Ann's two were written to her socket and acknowledged; three
        // read after 60 s, 300 s and 7200 s.
        (
            ("outage", "websocket"),
            row(6, 2, 2, 0, 3, [2, 2, 3], json!(300.0), json!(7200.0), 0.0),
        ),
        // Six mails, each tried once: Cid's two refused for good.
        (
            ("outage", "email"),
            row(6, 6, 4, 2, 3, [2, 2, 3], json!(300.0), json!(7200.0), 0.0),
        ),
        // One page, unread, escalated once: one step per notification.
        (
            ("pager", "websocket"),
            row(1, 0, 0, 0, 0, [0, 0, 0], Value::Null, Value::Null, 100.0),
        ),
        // The step's mail.
        (
            ("pager", "email"),
            row(1, 1, 1, 0, 0, [0, 0, 0], Value::Null, Value::Null, 0.0),
        ),
    ])
}

/// The rows of an answer, by (type, channel), without their bucket and the approximation flag.
fn figures(answer: &Value) -> BTreeMap<(String, String), Value> {
    answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {answer}"))
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let key = (
                r["type"].as_str().unwrap().to_owned(),
                r["channel"].as_str().unwrap().to_owned(),
            );
            let o = r.as_object_mut().unwrap();
            for k in ["bucket", "type", "channel", "time_to_read_approximate"] {
                o.remove(k);
            }
            (key, r)
        })
        .collect()
}

fn as_expected(found: &BTreeMap<(String, String), Value>, keys: &[(&str, &str)]) {
    let want = expected();
    let want: BTreeMap<(String, String), Value> = keys
        .iter()
        .map(|k| ((k.0.to_owned(), k.1.to_owned()), want[k].clone()))
        .collect();
    assert_eq!(found, &want);
}

const ALL: [(&str, &str); 4] = [
    ("outage", "websocket"),
    ("outage", "email"),
    ("pager", "websocket"),
    ("pager", "email"),
];

async fn figures_are_what_happened_and_filters_narrow_them(backend: Backend) {
    let now = Utc::now();
    let hour = tickethub_actors::analytics::Bucket::Hour.floor(now);
    let s = scene(&backend, hour, |_| {}).await;
    let hub = &s.hub;
    let read_before = hub
        .metrics()
        .await
        .total("tickethub_notifications_read_total");
    assert!(read_before >= 3.0, "three reads counted: {read_before}");

    // The default: the last seven days, by day.
    let answer = hub.get_as(&s.admin, "/api/admin/analytics", 200).await;
    assert_eq!(answer["bucket"], "day", "{answer}");
    let day = tickethub_actors::analytics::Bucket::Day.floor(hour);
    for row in answer["rows"].as_array().unwrap() {
        assert_eq!(row["bucket"], iso(day), "{row}");
        assert_eq!(row["time_to_read_approximate"], false, "{row}");
    }
    as_expected(&figures(&answer), &ALL);
    // The in-app row comes first in its bucket and type.
    let order: Vec<(&str, &str)> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["type"].as_str().unwrap(), r["channel"].as_str().unwrap()))
        .collect();
    assert_eq!(order, ALL);

    // By hour, over an explicit range.
    let path = format!(
        "/api/admin/analytics?bucket=hour&from={}&to={}",
        iso(hour - chrono::Duration::hours(3)),
        iso(hour + chrono::Duration::minutes(30)),
    );
    let answer = hub.get_as(&s.admin, &path, 200).await;
    assert_eq!(answer["bucket"], "hour");
    assert_eq!(answer["from"], iso(hour - chrono::Duration::hours(3)));
    assert_eq!(
        answer["to"],
        iso(hour + chrono::Duration::hours(1)),
        "widened to whole hours"
    );
    for row in answer["rows"].as_array().unwrap() {
        assert_eq!(row["bucket"], iso(hour), "{row}");
    }
    as_expected(&figures(&answer), &ALL);

    // Filters narrow the rows.
    let admin = &s.admin;
    let get = |query: &str| {
        let path = format!("/api/admin/analytics?{query}");
        async move { figures(&hub.get_as(admin, &path, 200).await) }
    };
    as_expected(&get("type=outage").await, &ALL[..2]);
    as_expected(&get("channel=email").await, &[ALL[1], ALL[3]]);
    as_expected(&get("channel=websocket&type=pager").await, &[ALL[2]]);
    assert!(get("channel=sms").await.is_empty());
    assert!(get("type=nothing-of-this-type").await.is_empty());
    let later = format!(
        "bucket=hour&from={}&to={}",
        iso(hour + chrono::Duration::hours(1)),
        iso(hour + chrono::Duration::hours(2))
    );
    assert!(get(&later).await.is_empty(), "nothing was committed then");

    // Marking a read notification read again counts no second read, and keeps its read time.
    let read = ids_of(hub, &s.ann, "outage").await[0];
    hub.post_as(
        &s.ann,
        &format!("/api/notifications/{read}/mark_as_read/"),
        json!({}),
        200,
    )
    .await;
    as_expected(&get("type=outage&channel=websocket").await, &ALL[..1]);

    // Admins only; bad input is refused with the reason.
    let (status, body) = hub
        .get("/api/admin/analytics", Some(&hub.token(&s.ann)))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = hub.get("/api/admin/analytics", None).await;
    assert_eq!(status, 401);
    for (query, says) in [
        ("bucket=week", "bucket"),
        ("bucket=", "bucket"),
        ("to=", "to"),
        ("from=", "from"),
        ("from=yesterday", "from"),
        ("to=2024-13-01T00:00:00Z", "to"),
        ("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "from"),
        ("from=2020-01-01T00:00:00Z&to=2024-01-01T00:00:00Z", "from"),
        ("type=two%20words", "type"),
        ("channel=e%3Bmail", "channel"),
    ] {
        let (status, body) = hub
            .get(
                &format!("/api/admin/analytics?{query}"),
                Some(&hub.token(&s.admin)),
            )
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.starts_with(says)),
            "{query}: {body}"
        );
    }
}

async fn figures_outlive_the_purge_and_an_erasure(backend: Backend) {
    // Everything read, finished or fired a day ago goes; what is unread stays.
    let old =
        tickethub_actors::analytics::Bucket::Hour.floor(Utc::now() - chrono::Duration::days(3));
    let s = scene(&backend, old, |c| {
        c.retention = Duration::from_secs(86_400);
        c.retention_unread = None;
        c.retention_interval = Duration::from_secs(3_600);
    })
    .await;
    let hub = &s.hub;
    let path = format!(
        "/api/admin/analytics?bucket=hour&from={}&to={}",
        iso(old - chrono::Duration::hours(1)),
        iso(old + chrono::Duration::hours(1)),
    );
    let before = hub.get_as(&s.admin, &path, 200).await;
    as_expected(&figures(&before), &ALL);

    let swept = sweep(hub).await;
    assert_eq!(swept.get("read_notifications"), Some(&3), "{swept:?}");
    assert_eq!(swept.get("finished_deliveries"), Some(&4), "{swept:?}");
    assert_eq!(swept.get("escalations"), Some(&1), "{swept:?}");
    // The rows are gone; the unread notifications stay.
    for (sql, left) in [
        (
            "SELECT COUNT(*) FROM notifications WHERE read_at IS NOT NULL",
            0,
        ),
        ("SELECT COUNT(*) FROM notifications", 4),
        ("SELECT COUNT(*) FROM deliveries", 0),
        ("SELECT COUNT(*) FROM escalations", 0),
    ] {
        assert_eq!(db_number(&hub.db, sql).await, left, "{sql}");
    }
    assert!(db_number(&hub.db, "SELECT COUNT(*) FROM analytics_rollups").await > 0);
    // The figures are the same, rolled up and live together; the percentiles of rows with
    // purged reads say they come from the histogram (here they fall on its bounds).
    let after = hub.get_as(&s.admin, &path, 200).await;
    assert_eq!(figures(&after), figures(&before));
    assert_eq!(after["rows"].as_array().unwrap().len(), 4, "{after}");
    for row in after["rows"].as_array().unwrap() {
        let rolled = row["read"].as_i64().unwrap() > 0;
        assert_eq!(row["time_to_read_approximate"], rolled, "{row}");
    }

    // Another sweep finds nothing more, and counts nothing twice.
    let again = sweep(hub).await;
    assert!(
        !again.contains_key("read_notifications") && !again.contains_key("finished_deliveries"),
        "{again:?}"
    );
    assert_eq!(
        figures(&hub.get_as(&s.admin, &path, 200).await),
        figures(&before)
    );

    // Erasing Cid takes his inbox away, not its figures.
    let (status, body) = hub
        .call(
            reqwest::Method::DELETE,
            &format!("/api/users/{}/?erase=true", s.cid.id.0),
            Some(&hub.token(&s.admin)),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        db_number(&hub.db, "SELECT COUNT(*) FROM notifications").await,
        2
    );
    assert_eq!(
        figures(&hub.get_as(&s.admin, &path, 200).await),
        figures(&before)
    );
}

/// Runs a sweep of the purge actor; answers what it removed, per table.
async fn sweep(hub: &TestHub) -> BTreeMap<&'static str, u64> {
    let before = hub.purge_snapshot().await;
    let after = hub.sweep().await;
    after
        .removed
        .into_iter()
        .map(|(table, n)| (table, n - before.removed.get(table).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

crate::trials! {
    both: [
        figures_are_what_happened_and_filters_narrow_them,
        figures_outlive_the_purge_and_an_erasure,
    ],
    tests: [],
    sync: [],
}
