//! Seed 001's JavaScript `NotificationService`, unchanged, against the hub in Node.

use std::process::Stdio;
use std::time::Duration;

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
    /// The next event the driver prints; the class's own log lines are skipped.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
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
            let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
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

fn node_available() -> bool {
    let found = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        if std::env::var("TICKETHUB_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("node is not installed but TICKETHUB_REQUIRE_SERVICES=1");
        }
        eprintln!("notice: node is not installed; skipping the seed 001 client test");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_notification_service_works_unchanged() {
    if !node_available() {
        return;
    }
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("john_admin", Role::Admin, true).await;
    let client = hub.user("john_client", Role::Client).await;
    let project = hub.project("WEB", &[&admin, &client]).await;

    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed001/driver.js");
    let mut child = tokio::process::Command::new("node")
        .args([
            "--experimental-websocket",
            "--no-warnings",
            driver,
            &hub.url("/api"),
            &hub.ws_url("/ws/notifications/"),
            &hub.token(&admin),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut node = Node {
        stdin: child.stdin.take().unwrap(),
        lines: BufReader::new(child.stdout.take().unwrap()).lines(),
        _child: child,
    };
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
    hub.post_as(
        &admin,
        "/api/notifications/send/",
        json!({"user_ids": [admin.id.0], "title": "x", "message": "y"}),
        201,
    )
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
