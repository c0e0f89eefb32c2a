//! Seed 001's JavaScript `NotificationService`, unchanged, against the hub in Node.

use std::process::Stdio;

use serde_json::{json, Value};
use tickethub_actors::domain::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::harness::{Backend, TestHub};

struct Node {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: tokio::process::Child,
}

impl Node {
    /// Runs a driver script in Node with WebSocket support.
    fn start(driver: &str, args: &[&str]) -> Node {
        let mut child = tokio::process::Command::new("node")
            .args(["--experimental-websocket", "--no-warnings", driver])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        Node {
            stdin: child.stdin.take().unwrap(),
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// The next event the driver prints; the class's own log lines are skipped.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let line = tokio::time::timeout(crate::harness::patience(), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{name}` event in time"))
                .unwrap()
                .expect("node exited");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                assert_ne!(v["event"], "error", "{v}");
                if v["event"] == name {
                    return v["payload"].clone();
                }
            }
        }
    }

    /// Waits for a line containing `text` (the class logs its connection).
    async fn log(&mut self, text: &str) {
        loop {
            let line = tokio::time::timeout(crate::harness::patience(), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no log line with `{text}` in time"))
                .unwrap()
                .expect("node exited");
            if line.contains(text) {
                return;
            }
        }
    }

    async fn send(&mut self, cmd: &str) {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
    }
}

async fn seed_001_notification_service_works_unchanged() {
    crate::harness::require_node();
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("john_admin", Role::Admin, true).await;
    let client = hub.user("john_client", Role::Client).await;
    let project = hub.project("WEB", &[&admin, &client]).await;

    let mut node = Node::start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed001/driver.js"),
        &[
            &hub.url("/api"),
            &hub.ws_url("/ws/notifications/"),
            &hub.token(&admin),
        ],
    );
    node.log("Notification service connected").await;
    node.log(&format!("User ID: {}", admin.id.0)).await;

    hub.post_as(
        &client,
        "/api/tickets/",
        json!({"project": project.id.0, "title": "Homepage not loading", "priority": "HIGH", "category": "BUG"}),
        201,
    )
    .await;
    let n = node.event("notification").await;
    assert_eq!(n["notification_type"], "ticket_created");
    assert_eq!(
        n["message"],
        "New High priority ticket created: Homepage not loading"
    );
    assert_eq!(n["ticket"]["title"], "Homepage not loading");
    assert_eq!(n["ticket"]["priority_display"], "High");
    assert_eq!(n["ticket"]["created_by"], "john_client display");
    assert_eq!(n["ticket"]["project_name"], "WEB project");

    node.send("count").await;
    assert_eq!(
        node.event("count").await,
        json!({"count": 1, "by_type": {"ticket_created": 1}})
    );
    node.send(r#"list {"is_read":"false"}"#).await;
    let list = node.event("list").await;
    assert_eq!(list["count"], 1);
    let id = list["results"][0]["id"].as_i64().unwrap();
    assert_eq!(id, n["id"].as_i64().unwrap());
    node.send(&format!("read {id}")).await;
    let read = node.event("read").await;
    assert_eq!(read["message"], "Notification marked as read");
    assert_eq!(read["notification"]["is_read"], true);
    hub.send(&admin, &[&admin], json!({"title": "x", "message": "y"}))
        .await;
    assert_eq!(node.event("notification").await["title"], "x");
    node.send("readall").await;
    assert_eq!(
        node.event("readall").await,
        json!({"message": "1 notification(s) marked as read", "count": 1})
    );
    node.send("count").await;
    assert_eq!(node.event("count").await["count"], 0);
    node.send("exit").await;
}

async fn seed_004_frontend_example_works_unchanged() {
    crate::harness::require_node();
    // Seed 004's frontend connects with no dialect of its own: the hub is set to speak it.
    let hub = TestHub::start_with(&Backend::Sqlite, |c| {
        c.ws_dialect = tickethub::ws::dialect::Dialect::Seed004
    })
    .await;
    let root = hub.user_with("root", Role::Admin, true).await;
    let mut node = Node::start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed004/driver.js"),
        &[&format!("ws://{}", hub.addr), &hub.token(&root)],
    );
    assert_eq!(
        node.event("log").await,
        json!(["Connected to notification service"])
    );
    assert_eq!(
        node.event("log").await,
        json!(["Connection established:", "Connected successfully as root"])
    );

    let (status, user) = hub
        .post(
            "/api/auth/register/",
            None,
            json!({"username": "john", "password": "long enough", "email": "john@example.com", "display_name": "John Doe"}),
        )
        .await;
    assert_eq!(status, 201);
    let log = node.event("log").await;
    assert_eq!(log[0], "New notification received:");
    let shown = node.event("notification").await;
    assert_eq!(shown, log[1]);
    assert_eq!(shown["type"], "user_registration");
    assert_eq!(shown["title"], "New User Registered");
    assert_eq!(shown["time_ago"], "Just now");
    assert_eq!(shown["metadata"]["user_id"], user["id"]);
    assert_eq!(shown["metadata"]["user_full_name"], "John Doe");

    let id = shown["id"].as_i64().unwrap();
    hub.post_as(
        &root,
        &format!("/api/notifications/{id}/mark-as-read/"),
        json!({}),
        200,
    )
    .await;
    assert_eq!(
        node.event("log").await,
        json!(["Notification updated:", {"type": "notification_updated", "id": id, "is_read": true}])
    );
    drop(node.stdin);
}

crate::trials! {
    both: [],
    tests: [
        seed_001_notification_service_works_unchanged,
        seed_004_frontend_example_works_unchanged,
    ],
    sync: [],
}
