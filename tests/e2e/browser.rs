//! The pages the hub serves, in a real headless Chromium: `tests/browser/demo.mjs` drives the
//! demo client at `/` and `tests/browser/operator.mjs` the operator page at `/admin/`.
//!
//! They need `node`, `/usr/bin/chromium` and `node_modules/playwright-core` (`npm ci`). Without
//! them the browser tests print a notice and pass, unless `TICKETHUB_REQUIRE_SERVICES=1`, where
//! they fail. Screenshots land in `target/test-artifacts/`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tickethub_actors::domain::Role;

use crate::harness::{Backend, TestHub};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether node, Chromium and playwright-core are all here; panics when they are required.
fn browser_available() -> bool {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        missing.push("node");
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push(CHROMIUM);
    }
    if !Path::new(ROOT)
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("node_modules/playwright-core (run `npm ci`)");
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("TICKETHUB_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("browser tests cannot run without {what}, and TICKETHUB_REQUIRE_SERVICES=1");
    }
    eprintln!("notice: no {what}; skipping a browser test");
    false
}

/// Runs `node tests/browser/<script> <base-url> <args…>` and fails with its output unless it
/// exits 0.
async fn run_script(script: &str, hub: &TestHub, args: &[String]) {
    let path = Path::new(ROOT).join("tests/browser").join(script);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&path)
        .arg(hub.url(""))
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("node starts");
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish in 240 s"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}");
}

/// `role=username:password` for a harness user.
fn credentials(role: &str, username: &str) -> String {
    format!("{role}={username}:{username}-password")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_with_their_types() {
    let hub = TestHub::start(&Backend::Sqlite).await;
    for (path, kind, needle) in [
        ("/", "text/html", "/assets/demo.js"),
        ("/admin/", "text/html", "/assets/admin.js"),
        ("/assets/app.css", "text/css", ".topbar"),
        (
            "/assets/common.js",
            "text/javascript",
            "export class Session",
        ),
        ("/assets/demo.js", "text/javascript", "tickethub.v1"),
        ("/assets/admin.js", "text/javascript", "/api/admin/actors"),
        ("/assets/icon.svg", "image/svg+xml", "<svg"),
    ] {
        let res = hub.http.get(hub.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert!(res.text().await.unwrap().contains(needle), "{path}");
    }
    let res = hub.http.get(hub.url("/admin")).send().await.unwrap();
    assert_eq!(res.url().path(), "/admin/", "/admin redirects to /admin/");
    let (status, _) = hub.get("/assets/missing.js", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_shows_a_ticket_lifecycle_in_real_time() {
    if !browser_available() {
        return;
    }
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    let developer = hub.user("dev", Role::Developer).await;
    hub.project("WEB", &[&admin, &client, &developer]).await;
    run_script(
        "demo.mjs",
        &hub,
        &[
            credentials("client", &client.username),
            credentials("admin", &admin.username),
            credentials("developer", &developer.username),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_page_shows_the_live_supervision_tree() {
    if !browser_available() {
        return;
    }
    let hub = TestHub::start(&Backend::Sqlite).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    hub.project("WEB", &[&admin, &client]).await;
    run_script(
        "operator.mjs",
        &hub,
        &[
            credentials("admin", &admin.username),
            credentials("client", &client.username),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_shows_the_board_presence_and_typing() {
    if !browser_available() {
        return;
    }
    let hub = TestHub::start_with(&Backend::Sqlite, |c| c.presence_grace_ms = 500).await;
    let admin = hub.user_with("ada", Role::Admin, true).await;
    let client = hub.user("carl", Role::Client).await;
    let developer = hub.user("dev", Role::Developer).await;
    let project = hub.project("WEB", &[&client, &developer]).await;
    hub.post_as(
        &client,
        "/api/tickets/",
        serde_json::json!({"project": project.id.0, "title": "Checkout is slow", "priority": "MEDIUM", "category": "BUG"}),
        201,
    )
    .await;
    run_script(
        "rooms.mjs",
        &hub,
        &[
            credentials("client", &client.username),
            credentials("developer", &developer.username),
            credentials("admin", &admin.username),
        ],
    )
    .await;
}
