//! Operators' view from outside: the supervision tree over REST and in the CLI, metrics, and
//! logs that never carry a secret.

use serde_json::{json, Value};
use tickethub_actors::routing::Channel;
use tickethub_actors::user::UserMsg;
use tokio::io::AsyncBufReadExt;

use crate::fakes::Smtp;
use crate::harness::{
    cli, cli_ok, eventually, patience, tickethub_command, Backend, Crew, TestHub, Ws,
};

async fn tree(hub: &TestHub, admin: &tickethub_actors::domain::User, query: &str) -> Value {
    hub.get_as(admin, &format!("/api/admin/actors{query}"), 200)
        .await
}

fn child<'a>(node: &'a Value, name: &str) -> &'a Value {
    node["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} under {}", node["name"]))
}

fn names(node: &Value) -> Vec<String> {
    node["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_tree_shows_users_tickets_and_channels_as_they_come_and_go() {
    let smtp = Smtp::start().await;
    smtp.set_down(true).await;
    let url = smtp.url();
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.channels.email.smtp_url = Some(url);
        c.delivery_backoff_ms = 50;
        c.delivery_backoff_max_ms = 100;
        c.delivery_poll_ms = 50;
        c.circuit_threshold = 1;
        c.circuit_cooldown_ms = 60_000;
        c.delivery_timeout = 1;
    })
    .await;
    let c = crate::tickets::cast(&hub).await;
    let mut a1 = hub.connect(&c.c1).await;
    let _a2 = hub.connect(&c.c1).await;
    let _b = hub.connect(&c.d1).await;
    let crew = Crew {
        creator: &c.c1,
        admin: &c.a1,
        devs: &[],
    };
    let t = hub
        .ticket_in(
            "OPEN",
            &crew,
            json!({"project": c.project, "title": "Visible"}),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    a1.notifications(1).await;

    // Non-admins may not look.
    hub.get_as(&c.d1, "/api/admin/actors", 403).await;
    let (status, _) = hub.get("/api/admin/actors", None).await;
    assert_eq!(status, 401);

    eventually("the email circuit opens", || async {
        hub.hub
            .channel_status(Channel::Email)
            .await
            .unwrap()
            .circuit
            == "open"
    })
    .await;
    let root = tree(&hub, &c.a1, "").await;
    assert_eq!(root["kind"], "root");
    assert_eq!(root["totals"]["users"], 2);
    assert_eq!(root["totals"]["sockets"], 3);
    // The total is the hub's, not the page's: one user a page still counts every socket.
    let page = tree(&hub, &c.a1, "?limit=1").await;
    assert_eq!(
        child(&page, "users")["children"].as_array().unwrap().len(),
        1
    );
    assert_eq!(page["totals"]["sockets"], 3);
    let users = child(&root, "users");
    assert_eq!(users["kind"], "directory");
    let c1 = child(users, &format!("user:{}", c.c1.id));
    assert_eq!(c1["username"], "c1");
    assert_eq!(c1["sockets"]["count"], 2);
    assert_eq!(c1["status"], "running");
    let tickets = child(&root, "tickets");
    let ticket = child(tickets, &format!("ticket:{id}"));
    assert_eq!(ticket["key"], "WEB-1");
    assert_eq!(ticket["ticket_status"], "OPEN");
    let email = child(child(&root, "delivery"), "channel:email");
    assert_eq!(email["circuit"], "open");
    assert!(email["outbox_depth"].as_i64().unwrap() >= 1, "{email}");

    // Filters and pages.
    let only = tree(&hub, &c.a1, "?q=d1").await;
    assert_eq!(names(child(&only, "users")), [format!("user:{}", c.d1.id)]);
    let paged = tree(&hub, &c.a1, "?limit=1").await;
    assert_eq!(child(&paged, "users")["page"]["total"], 2);
    assert_eq!(names(child(&paged, "users")).len(), 1);

    // The CLI prints the same tree.
    let token = hub.token(&c.a1);
    let text = cli_ok(&["actors", "--url", &hub.url(""), "--token", &token]).await;
    assert!(text.starts_with("hub (root, running)"), "{text}");
    assert!(
        text.contains(&format!("user:{} (user, running)  c1  2 sockets", c.c1.id)),
        "{text}"
    );
    assert!(
        text.contains("channel:email (channel, running)  circuit open"),
        "{text}"
    );
    let out = cli_ok(&[
        "actors",
        "--url",
        &hub.url(""),
        "--username",
        "a1",
        "--password",
        "a1-password",
        "--json",
    ])
    .await;
    let doc: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(doc["totals"]["sockets"], 3);
    let out = cli(&[
        "actors",
        "--url",
        &hub.url(""),
        "--token",
        &hub.token(&c.d1),
    ])
    .await;
    assert!(!out.ok);
    assert!(out.stderr.starts_with("403"), "{}", out.stderr);

    // An injected failure shows up as a failure and a restart count; closed sockets disappear.
    hub.hub
        .user(c.d1.id)
        .unwrap()
        .send_message(UserMsg::InjectFault)
        .unwrap();
    eventually("the failure is counted", || async {
        let root = tree(&hub, &c.a1, "").await;
        child(&root, "users")["failures"] == 1
    })
    .await;
    let root = tree(&hub, &c.a1, "").await;
    assert!(child(&root, "users")["last_failure"]
        .as_str()
        .unwrap()
        .contains("injected fault"));
    let _again = hub.connect(&c.d1).await;
    let root = tree(&hub, &c.a1, "").await;
    assert_eq!(
        child(child(&root, "users"), &format!("user:{}", c.d1.id))["restarts"],
        1
    );
    drop(a1);
    drop(_a2);
    eventually("c1 leaves the tree", || async {
        let root = tree(&hub, &c.a1, "").await;
        !names(child(&root, "users")).contains(&format!("user:{}", c.c1.id))
    })
    .await;
    hub.hub
        .channel(Channel::Email)
        .unwrap()
        .send_message(tickethub_actors::delivery::ChannelMsg::InjectFault)
        .unwrap();
    eventually("the channel restart is counted", || async {
        let root = tree(&hub, &c.a1, "").await;
        child(child(&root, "delivery"), "channel:email")["restarts"] == 1
    })
    .await;
}

async fn metrics_move_as_traffic_flows() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    let c = crate::tickets::cast(&hub).await;
    let scrape = || hub.metrics();
    let before = scrape().await;
    let mut ws = hub.connect(&c.a1).await;
    crate::tickets::create_ticket(&hub, &c.c1, c.project, "Measured").await;
    ws.notifications(1).await;
    ws.roundtrip().await;
    let after = scrape().await;
    for name in [
        "tickethub_notifications_committed_total",
        "tickethub_notifications_delivered_total",
        "tickethub_frames_out_total",
        "tickethub_frames_in_total",
        "tickethub_connections_total",
        "tickethub_replays_total",
        "tickethub_http_requests_total",
        "tickethub_delivery_latency_seconds_count",
    ] {
        assert!(
            after.total(name) > before.total(name),
            "{name} did not move:\n{after}"
        );
    }
    assert!(
        after.0.contains(
            "tickethub_http_requests_total{method=\"POST\",route=\"/api/tickets/\",status=\"201\"}"
        ),
        "{after}"
    );
    assert!(
        after
            .0
            .contains("tickethub_outbox_depth{channel=\"email\"}"),
        "{after}"
    );
    assert!(
        after
            .0
            .contains("# TYPE tickethub_delivery_latency_seconds histogram"),
        "{after}"
    );
    assert!(after.total("tickethub_connections_open") >= 1.0);
    // What the commits wrote to SQLite's log, as the checkpointer next finds it.
    let logged = before.total("tickethub_sqlite_wal_written_bytes_total");
    eventually("the log's written bytes are counted", || async {
        scrape()
            .await
            .total("tickethub_sqlite_wal_written_bytes_total")
            > logged
    })
    .await;
    // The raw query string never becomes a label: the socket's request is counted by its
    // route, and its token appears nowhere.
    let token = hub.token(&c.d1);
    let mut ws = Ws::connect(&hub.ws_url(&format!("/ws/notifications/?token={token}"))).await;
    ws.established().await;
    let text = scrape().await;
    assert!(
        text.0.contains("route=\"/ws/notifications/\""),
        "the socket's request was not counted:\n{text}"
    );
    assert!(!text.0.contains("token="), "{text}");
    assert!(!text.0.contains(&token), "{text}");
}

async fn logs_never_carry_tokens_or_passwords() {
    // This test's own client needs rustls' provider, which no hub in this process installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("logs.db").display());
    let mut child = tokio::process::Command::from(tickethub_command())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--demo",
            "--log-format",
            "json",
            "--database-url",
            &db,
        ])
        .args([
            "--mail-outbox-dir",
            dir.path().join("mail").to_str().unwrap(),
        ])
        .env("RUST_LOG", "debug")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The logs are read as they come: a hub whose stderr pipe fills up (debug logs of every
    // migration, say) would block on its next line and never answer.
    let logs = {
        let mut stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut text = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut text).await;
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(patience(), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let tokens: Value = client
        .post(format!("http://{addr}/api/auth/login/"))
        .json(&json!({"username": "admin", "password": "admin-demo"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access"].as_str().unwrap().to_owned();
    let refused = client
        .post(format!("http://{addr}/api/auth/login/"))
        .json(&json!({"username": "admin", "password": "wrong-secret-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mut ws = Ws::connect(&format!("ws://{addr}/ws/notifications/?token={access}")).await;
    ws.established().await;
    let me = client
        .get(format!("http://{addr}/api/users/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    drop(ws);
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    child.wait().await.unwrap();
    let logs = logs.await.unwrap();
    assert!(
        logs.lines().count() > 5,
        "too few log lines to judge:\n{logs}"
    );
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "not JSON lines:\n{logs}"
    );
    // The requests carrying the secrets were handled and logged (by their route), so their
    // absence below means something.
    for route in ["/api/auth/login/", "/api/users/me/", "/ws/notifications/"] {
        assert!(
            logs.contains(route),
            "no log line names {route}; the check below would prove nothing:\n{logs}"
        );
    }
    for secret in [
        access.as_str(),
        "admin-demo",
        "wrong-secret-password",
        tokens["refresh"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs:\n{logs}");
    }
    let signature = access.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}

async fn a_child_failing_in_a_loop_is_restarted_with_backoff_and_readyz_says_so() {
    use tickethub_actors::domain::Role;
    use tickethub_actors::hub::RootChild;
    let hub = TestHub::start(&Backend::Sqlite).await;
    let alice = hub.user("alice", Role::Client).await;
    let (status, ready) = hub.get("/readyz", None).await;
    assert_eq!((status, ready["actors"].as_str()), (200, Some("ok")));
    // The first failures are restarted at once, the next ones after a wait that doubles; the
    // root never stops, and /readyz is 503 while a child waits for its restart.
    let mut saw_restarting = false;
    for round in 1..=4u64 {
        hub.hub.inject_fault(RootChild::Users);
        eventually("the root counts the failure", || async {
            hub.hub.root_info().await.1 == round
        })
        .await;
        let (status, ready) = hub.get("/readyz", None).await;
        if ready["actors"] == "restarting" {
            assert_eq!(status, 503, "{ready}");
            saw_restarting = true;
        }
        eventually("the child is back", || async {
            hub.get("/readyz", None).await.0 == 200
        })
        .await;
    }
    assert!(saw_restarting, "a backed-off restart is visible on /readyz");
    // The delivery supervisor is a child like the others.
    hub.hub.inject_fault(RootChild::Delivery);
    eventually("the delivery supervisor is back", || async {
        hub.hub.root_info().await.1 == 5 && hub.get("/readyz", None).await.0 == 200
    })
    .await;
    // And the tree serves as before.
    let mut ws = hub.connect(&alice).await;
    ws.roundtrip().await;
}

crate::trials! {
    both: [],
    tests: [
        the_tree_shows_users_tickets_and_channels_as_they_come_and_go,
        metrics_move_as_traffic_flows,
        logs_never_carry_tokens_or_passwords,
        a_child_failing_in_a_loop_is_restarted_with_backoff_and_readyz_says_so,
    ],
    sync: [],
}
